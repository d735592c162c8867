"""The lesion's shape between painted slices as the network's teacher (``data.unpainted
shape``, opt-in): the forest's labels, plus the interpolated shape of the painted outlines on
the slices between two painted lesion slices (:mod:`napari_asymseg.annotate.interpolate`).

The forest (:mod:`napari_asymseg.train.forest`) labels each unpainted voxel from its intensity
and texture alone; between two painted lesion slices it finds part of the lesion. The fill
between the two painted outlines knows what the forest cannot, that the lesion is one 3D
object whose outline changes smoothly from one painted slice to the next. On every slice the
fill reaches, its shape is labelled lesion; elsewhere on those slices the forest's label stays
(a voxel the forest left unlabelled is background, except within :data:`BAND` voxels of the
shape, where the image decides). Like the forest's, these labels are weak (a share of them is
trained on, ``data.unpainted_share``), and they exist only during training.

Measured on the real-scan protocol (docs/training.md): better than the forest alone on the
Colin27 hippocampus and the synthetic sample, between the painted slices above all, and worse
on brain1 (more false positives beyond the painted slices); so it is not the default. A variant
that also dropped the forest's lesion far from the shape on those slices was worse on two of
the three cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_asymseg.errors import ScanError
from napari_asymseg.store.annotations import IGNORE

BAND = 2
"""Voxels around the interpolated shape (in plane) left unlabelled where the forest labelled
nothing: the image decides the boundary there."""


def shape_labels(
    forest: np.ndarray, train: np.ndarray, spacing: Sequence[float] | None = None
) -> np.ndarray:
    """``forest`` (class indices, ``IGNORE`` unlabelled) with the fill between the painted
    slices of ``train`` labelled lesion (``train``: class indices of the training voxels,
    ``IGNORE`` elsewhere, so held-out slices never shape the teacher). The caller keeps the
    result to the unpainted voxels."""
    from napari_asymseg.annotate.interpolate import fill_between

    codes = np.where(train >= 0, train + 1, 0).astype(np.uint8)  # back to annotation codes
    try:
        fill = fill_between(codes, spacing)
    except ScanError:  # nothing to fill (one painted lesion slice): the forest alone
        return forest
    out = forest.copy()
    lesion = fill.codes >= 2
    index = [slice(None)] * 3
    for z in np.flatnonzero(lesion.any(axis=tuple(a for a in range(3) if a != fill.axis))):
        index[fill.axis] = slice(int(z), int(z) + 1)
        here = tuple(index)
        inside = lesion[here]
        band = ndimage.binary_dilation(inside, iterations=BAND) if BAND else inside
        plane = out[here]
        plane = np.where(inside, fill.codes[here].astype(np.int16) - 1, plane)
        out[here] = np.where(plane == IGNORE, np.where(band, IGNORE, 0), plane)
    return out
