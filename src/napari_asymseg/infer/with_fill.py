"""The prediction includes the fill between painted slices (``predict.fill_between``).

Painted on two slices of a lesion, the network learns what the lesion looks like from those
slices and the forest's weak labels (:mod:`napari_asymseg.train.forest`); between them it can
still miss what the image-blind fill of the two painted outlines gets (the Colin27
hippocampus: DSC 0.65 between the painted slices against the fill's 0.76, docs/training.md).
Li et al. explain why: a network trained on few lesion voxels is confidently wrong on lesion
it has not seen, its foreground logits shifted toward background, so its "surely not" is the
least trustworthy thing it says there. The fill knows what the network cannot: the lesion is
one object whose outline changes smoothly from one painted slice to the next.

So after the sliding window, every unannotated voxel that the fill between the scan's painted
slices (:func:`~napari_asymseg.annotate.interpolate.fill_between`, the dock's Fill button
without accepting it) calls lesion is that lesion in the prediction, whatever the network
says; elsewhere the network decides alone, and a scan without two painted lesion slices (the
next patient) is predicted by the network alone. The voxels this makes lesion get no risk (the
false-negative heatmap marks background that may be lesion). Keeping the fill only where the
network gave it some probability (above 0.001 to 0.05) was measured and dropped: a little
better on brain1 and Colin27, much worse on the synthetic sample, where the network was sure
of background on lesion that the fill had right (docs/training.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_asymseg.annotate.interpolate import fill_box
from napari_asymseg.store.annotations import NOT_ANNOTATED
from napari_asymseg.store.arrays import read


def add_fill(out: dict[str, Any], annotations: np.ndarray, spacing: Sequence[float]) -> int:
    """Make lesion the fill's voxels that the prediction in ``out`` (the results being written:
    ``prediction`` and ``risk`` arrays) calls background; returns how many."""
    found = fill_box(annotations, spacing)
    if found is None:
        return 0
    box, codes = found
    prediction = read(out["prediction"], box)
    take = (codes > NOT_ANNOTATED) & (prediction == 0)
    if not take.any():
        return 0
    # annotation code k + 1 is class k, the prediction's label
    label = (codes.astype(np.int16) - 1).astype(prediction.dtype)
    out["prediction"][box] = np.where(take, label, prediction)
    risk = read(out["risk"], box)
    out["risk"][box] = np.where(take, 0, risk).astype(risk.dtype)
    return int(np.count_nonzero(take))
