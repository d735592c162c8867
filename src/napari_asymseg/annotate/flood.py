"""The flood of :mod:`.grow`: which voxels of a crop belong to the lesion seeds' basin.

A seeded watershed (scikit-image) on the crop's edge strength: the gradient magnitude per mm
of each channel (the scaled intensity, and the model's probability where there is one),
summed. The lesion seeds and the "not lesion" seeds flood the crop from their voxels, the
lowest edges first, and meet on the strongest edge between them: the lesion's outline.
docs/methods.md, "Grow from a click", has the measurements that chose it over scikit-image's
random walker and SimpleITK's confidence-connected region growing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

LESION, NOT_LESION = 1, 2
"""The seeds' values; 0 is for the flood to decide."""
BUDGET = 1_000_000
"""Voxels flooded at most: a larger crop is flooded on a coarser grid."""


def flood(data: np.ndarray, seeds: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """The share (float32, the seeds' shape; 0 or 1 unless coarsened) of each voxel that the
    lesion seeds' flood reaches; ``data`` is (Z, Y, X, channels) scaled to 0-1.

    Above :data:`BUDGET` voxels the flood runs on a coarser grid: block means of ``data``,
    every seed marked on the coarse voxel nearest it (not lesion winning), the result
    interpolated back linearly.
    """
    from skimage.segmentation import watershed

    step = coarse_steps(seeds.shape, spacing)
    labels = seeds.astype(np.int32)
    if step != (1, 1, 1):  # the block around each coarse voxel's centre, at i * step
        data = ndi.uniform_filter(data, size=(*step, 1), mode="nearest")
        data = data[:: step[0], :: step[1], :: step[2]]
        labels = _coarse_seeds(seeds, step).astype(np.int32)
    if not (labels == NOT_LESION).any():
        return np.ones(seeds.shape, np.float32)  # nothing bounds the lesion: all of it
    sp = [float(s) * k for s, k in zip(spacing, step, strict=True)]
    edges = np.zeros(labels.shape, np.float32)
    for c in range(data.shape[-1]):
        edges += sum(g**2 for g in np.gradient(data[..., c].astype(np.float32), *sp))
    lesion = (watershed(np.sqrt(edges), labels) == LESION).astype(np.float32)
    if step == (1, 1, 1):
        return lesion
    return _fine(lesion, step, seeds.shape)


def coarse_steps(shape: Sequence[int], spacing: Sequence[float]) -> tuple[int, int, int]:
    """Integer steps per axis that bring ``shape`` within :data:`BUDGET` voxels, coarsening
    the finest axis (in mm) first."""
    step = [1, 1, 1]
    while math.prod(-(-n // s) for n, s in zip(shape, step, strict=True)) > BUDGET:
        axis = min(range(3), key=lambda a: (spacing[a] * step[a], -shape[a]))
        step[axis] += 1
    return (step[0], step[1], step[2])


def _coarse_seeds(seeds: np.ndarray, step: tuple[int, int, int]) -> np.ndarray:
    """The seeds on the coarse grid (coarse voxel ``i`` sits on fine voxel ``i * step``): a
    coarse voxel nearest a not-lesion seed is not lesion, else one nearest a lesion seed is
    lesion."""
    shape = tuple(-(-n // s) for n, s in zip(seeds.shape, step, strict=True))
    out = np.zeros(shape, np.int8)
    for value in (LESION, NOT_LESION):
        where = np.nonzero(seeds == value)
        near = [
            np.minimum(np.rint(w / s).astype(np.intp), n - 1)
            for w, s, n in zip(where, step, shape, strict=True)
        ]
        out[tuple(near)] = value
    return out


def _fine(share: np.ndarray, step: tuple[int, int, int], shape: Sequence[int]) -> np.ndarray:
    """The coarse result interpolated linearly back onto the fine grid."""
    coords = np.ogrid[tuple(slice(0, n) for n in shape)]
    grid = np.broadcast_arrays(*(c / s for c, s in zip(coords, step, strict=True)))
    return ndi.map_coordinates(share, grid, order=1, mode="nearest").astype(np.float32)
