"""Suspected false alarms: the predicted regions nobody annotated, as review queue items.

A connected component of the prediction on unannotated voxels, labelled within slabs at most
:data:`SLAB_MM` thick, so that one item can be judged on one screen (one slice of a 6.5 mm MR,
a few of a 1 mm one) and a large component that is part lesion, part not, becomes several
answerable items. Its worth is the expected number of wrongly predicted voxels in it: its size
times one minus its mean foreground probability (:mod:`napari_asymseg.review.queue` ranks it
against the suspected misses in the same unit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_asymseg.review.items import FALSE_ALARM, Item
from napari_asymseg.store.annotations import NOT_ANNOTATED

SLAB_MM = 10.0
"""Thickest slab of a false-alarm item, in millimetres (at least one slice)."""
MIN_VOXELS = 1
"""Predicted regions smaller than this are not queued."""
_STRUCTURE = np.ones((3, 3, 3), bool)


def false_alarm_items(
    prediction: np.ndarray,
    probability: np.ndarray,
    annotations: np.ndarray,
    spacing: Sequence[float],
    *,
    slab_mm: float = SLAB_MM,
    min_voxels: int = MIN_VOXELS,
) -> list[Item]:
    """The suspected false alarms: components of the prediction on unannotated voxels, each
    cut into slabs of at most ``slab_mm`` (26-connected within its slab), unranked."""
    from scipy import ndimage

    pred = np.asarray(prediction)
    regions = (pred > 0) & (np.asarray(annotations) == NOT_ANNOTATED)
    labels = slab_labels(regions, _slab_slices(spacing, slab_mm))
    n = int(labels.max())
    if n == 0:
        return []
    ids = np.arange(1, n + 1)
    fg = np.asarray(probability, np.float32)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    mean_p = np.asarray(ndimage.mean(fg, labels, ids), np.float64)
    peaks = ndimage.maximum_position(fg, labels, ids)
    boxes = ndimage.find_objects(labels)
    items = []
    for k in range(n):
        if sizes[k] < min_voxels or boxes[k] is None:
            continue
        doubt = float(np.clip(1.0 - mean_p[k], 0.0, 1.0))
        center = tuple(int(v) for v in peaks[k])
        b = boxes[k]
        items.append(
            Item(
                id=0,
                rank=0,
                kind=FALSE_ALARM,
                center=(center[0], center[1], center[2]),
                bbox=(b[0].start, b[1].start, b[2].start, b[0].stop, b[1].stop, b[2].stop),
                voxels=int(sizes[k]),
                gain=float(sizes[k]) * doubt,
                doubt=doubt,
                label=int(pred[center]),
            )
        )
    return items


def _slab_slices(spacing: Sequence[float], slab_mm: float) -> int:
    return max(1, int(slab_mm // float(spacing[0])))


def slab_labels(mask: np.ndarray, slab: int) -> np.ndarray:
    """26-connected components of ``mask``, each slab of ``slab`` slices labelled on its own."""
    from scipy import ndimage

    labels = np.zeros(mask.shape, np.int32)
    top = 0
    for z0 in range(0, mask.shape[0], slab):
        part, n = ndimage.label(mask[z0 : z0 + slab], structure=_STRUCTURE)
        labels[z0 : z0 + slab] = np.where(part > 0, part + top, 0)
        top += n
    return labels
