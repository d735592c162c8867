"""Suspected false alarms: the predicted regions nobody annotated, as review queue items.

A connected component of the prediction on unannotated voxels, labelled within slabs at most
:data:`SLAB_MM` thick, so that one item can be judged on one screen (one slice of a 6.5 mm MR,
a few of a 1 mm one) and a large component that is part lesion, part not, becomes several
answerable items. Its worth is the expected number of wrongly predicted voxels in it: its size
times its doubt, the probability that it is not lesion (:mod:`napari_asymseg.review.queue`
ranks it against the suspected misses in the same unit).

The doubt is ``1 - p * exp(-d / L)``: ``p`` the region's mean lesion probability, ``d`` the
distance (mm) from its peak to the nearest painted lesion voxel, ``L`` :data:`REACH` times the
painted lesion's equivalent-sphere diameter. A model trained on a few painted slices has seen
the lesion only there: its probability is good evidence near the paint and weaker evidence far
from it, where what it learned meets tissue it was never shown (the fat and orbits of brain1).
A heuristic prior, not a calibrated one: the farther a region, the more it is doubted. Without
painted lesion the doubt is ``1 - p``. Chosen by ``benchmarks/false_alarm_ranking.py``: it puts
more false-positive voxels in the top 5 items than ``1 - p`` on every real case (brain1, Colin27;
docs/benchmarks.md) while staying in voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_asymseg.review.items import FALSE_ALARM, Item
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED

SLAB_MM = 10.0
"""Thickest slab of a false-alarm item, in millimetres (at least one slice)."""
MIN_VOXELS = 1
"""Predicted regions smaller than this are not queued."""
REACH = 2.0
"""How far the model's probability is trusted, in painted-lesion diameters (``L`` above)."""
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
    trust = _trust(np.asarray(annotations) > BACKGROUND, spacing, peaks)
    boxes = ndimage.find_objects(labels)
    items = []
    for k in range(n):
        if sizes[k] < min_voxels or boxes[k] is None:
            continue
        doubt = float(np.clip(1.0 - mean_p[k] * trust[k], 0.0, 1.0))
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


def _trust(painted: np.ndarray, spacing: Sequence[float], peaks) -> np.ndarray:
    """``exp(-d / L)`` at each peak (see the module's docstring); ones without painted lesion."""
    from scipy.spatial import cKDTree

    if not painted.any():
        return np.ones(len(peaks))
    scale = np.asarray(spacing, np.float64)
    volume = float(painted.sum()) * float(np.prod(scale))
    reach = REACH * (6.0 * volume / np.pi) ** (1.0 / 3.0)
    # nearest painted voxel of each peak: a tree of the painted voxels, not a distance
    # transform of the scan (1.4 s on a 1 mm brain, on the thread the viewer shares)
    tree = cKDTree(np.argwhere(painted) * scale)
    dist, _ = tree.query(np.asarray(peaks, np.float64).reshape(-1, 3) * scale)
    return np.exp(-np.asarray(dist, np.float64) / reach)


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
