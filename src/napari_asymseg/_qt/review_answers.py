"""What one review answer writes into the annotations layer, and taking it back.

An answer writes its region through napari's history (Ctrl+Z in the layer undoes it too) and
remembers, per voxel, the code it wrote and the code that was there. **Undo answer** puts back
only the voxels that still hold what the answer wrote: a voxel the user painted since is the
user's newer word and is kept, never reset to what was there before the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_asymseg.review import queue as rq
from napari_asymseg.store.provenance import REVIEWED


@dataclass(frozen=True)
class Written:
    """One answer's write: the item, its voxels (z, y, x), their codes before and after."""

    item_id: int
    indices: tuple[np.ndarray, ...]
    before: np.ndarray
    codes: np.ndarray


def write_answer(layer, item: rq.Item, verdict: str, results, autosave=None) -> Written:
    """Write ``verdict`` on ``item`` into the labels ``layer`` (undoably); what was written.

    ``results`` holds the stored ``prediction`` and ``risk``. Through ``autosave`` (the dock's
    :class:`~napari_asymseg._qt.autosave.AnnotationAutosave`) the voxels are stored recorded as
    a review answer before they are set in the layer; a store that refuses raises before the
    layer changes."""
    prediction, risk = results["prediction"], results["risk"]
    indices, codes = rq.answer_writes(item, verdict, prediction, layer.data, risk)
    before = np.array(layer.data[indices], copy=True)
    codes = np.asarray(codes, np.uint8)
    if indices[0].size and autosave is not None:
        autosave.write_tool(indices, codes, REVIEWED)  # one data_setitem: one Ctrl+Z
    elif indices[0].size:
        layer.data_setitem(indices, codes)  # through napari's history: Ctrl+Z undoes it
    return Written(item.id, indices, before, codes)


def take_back(layer, written: Written) -> int:
    """Put back the codes from before the answer on the voxels that still hold the answer's;
    returns how many voxels were kept because they were painted since."""
    if not written.indices[0].size:
        return 0
    now = np.asarray(layer.data[written.indices])
    still = now == written.codes
    if still.any():
        layer.data_setitem(tuple(i[still] for i in written.indices), written.before[still])
    # a voxel back at its old code (Ctrl+Z in the layer) was not painted since: not counted
    return int((~still & (now != written.before)).sum())
