"""The false-negative risk map, the heatmap the dock shows (METHODS.md §5).

The risk of a voxel is the probability that it is foreground although the model predicts
background:

* where the user annotated, it is exact: 1 on annotated foreground predicted background (a
  false negative the user already knows about), 0 on every other annotated voxel;
* where the model predicts foreground, it is 0 (that voxel cannot be a false negative);
* elsewhere it is the *calibrated* foreground probability of a margin,
  ``sigmoid(a * (m + kappa * s) + b)``, smoothed over SIGMA_MM millimetres, where
  ``m = logsumexp(z_fg) - z_bg`` is the foreground-vs-background margin, ``s`` its spread
  over test-time flips (0 without flips), and ``(a, b)`` a Platt calibration fitted on the
  held-out annotated slices during training. Li et al. show that unseen foreground sits
  closer to the boundary than the training foreground (the logit shift): the held-out fit
  sees that, and its bias ``b`` moves the boundary back by it. Without a fit the bias is the
  measured logit shift itself.

Flags are built on it in :mod:`napari_asymseg.review.flags`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from napari_asymseg.review.calibration import Calibration
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads THRESHOLD without it
    import torch

KAPPA = 0.0
"""Weight of the flip spread in the optimistic margin (in units of its standard deviation).
Measured: the spread term lowered the AUPRC everywhere (benchmarks/risk_quality.py), so the
flips only average the margin by default."""
THRESHOLD = 0.1
"""Risk at or above which a voxel belongs to a flag (see docs/benchmarks.md for the choice)."""
SIGMA_MM = 3.0
"""Gaussian smoothing of the risk map, in millimetres (the best worst case over the three
datasets of benchmarks/risk_quality.py)."""


def model_risk(
    margin: np.ndarray | torch.Tensor,
    predicted: np.ndarray,
    calibration: Calibration,
    *,
    spread: np.ndarray | torch.Tensor | None = None,
    kappa: float = KAPPA,
) -> np.ndarray:
    """Risk from the model alone (no annotations): 0 where it predicts foreground."""
    import torch

    m = torch.as_tensor(margin).float()
    if spread is not None:
        m = m + kappa * torch.as_tensor(spread).float()
    risk = torch.sigmoid(calibration.scale * m + calibration.bias).numpy()
    risk[np.asarray(predicted) > 0] = 0.0
    return risk.astype(np.float32)


def with_annotations(
    risk: np.ndarray, annotations: np.ndarray, prediction: np.ndarray
) -> np.ndarray:
    """Make the risk exact where the user annotated (1 on known false negatives, else 0)."""
    out = np.array(risk, dtype=np.float32, copy=True)
    ann = np.asarray(annotations)
    annotated = ann != NOT_ANNOTATED
    out[annotated] = 0.0
    out[(ann > BACKGROUND) & (np.asarray(prediction) == 0)] = 1.0
    return out


def smooth(risk: np.ndarray, sigma_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing of the risk, ``sigma_mm`` millimetres along every axis.

    Missed foreground comes in blobs (an under-segmented rim, a missed lesion), and a voxel
    next to known or likely misses is itself likely missed: smoothing shares that evidence.
    """
    if sigma_mm <= 0:
        return np.asarray(risk, np.float32)
    from scipy import ndimage

    sigma = [sigma_mm / float(s) for s in spacing]
    return ndimage.gaussian_filter(np.asarray(risk, np.float32), sigma, mode="nearest")


def risk_map(
    margin: np.ndarray | torch.Tensor,
    prediction: np.ndarray,
    calibration: Calibration,
    *,
    spread: np.ndarray | torch.Tensor | None = None,
    annotations: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    kappa: float = KAPPA,
    sigma_mm: float = SIGMA_MM,
) -> np.ndarray:
    """The heatmap of a block: calibrated probability, exact on annotations, smoothed, then 0
    on predicted foreground.

    The predicted foreground keeps its (high) probability through the smoothing: a voxel at
    the rim of a predicted lesion, where under-segmentation misses voxels, inherits its
    neighbours' evidence instead of their zeros (measured: AUPRC on Colin27 0.017 -> 0.085,
    benchmarks/risk_quality.py). Give the block a margin of about ``3 * sigma_mm`` beyond the
    part you keep, so that the smoothing sees the neighbours.
    """
    pred = np.asarray(prediction)
    risk = model_risk(margin, np.zeros_like(pred), calibration, spread=spread, kappa=kappa)
    if annotations is not None:
        risk = with_annotations(risk, annotations, prediction)
    risk = smooth(risk, sigma_mm, spacing)
    risk[np.asarray(prediction) > 0] = 0.0
    if annotations is not None:
        risk = with_annotations(risk, annotations, prediction)
    return risk
