"""Calibration of the model's foreground margin into a probability (Platt scaling).

``m = logsumexp(z_fg) - z_bg`` is the foreground-vs-background margin of the logits. During
training every validation fits ``P(foreground | m) = sigmoid(a * m + b)`` on the held-out
annotated voxels; the risk map uses the fit of the best step. Without a fit, the bias is Li et
al.'s measured logit shift, which moves the decision boundary back by the drift of unseen
foreground.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads THRESHOLD without it
    import torch


# ----------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class Calibration:
    """``P(foreground | margin m) = sigmoid(scale * m + bias)``."""

    scale: float = 1.0
    bias: float = 0.0
    source: str = "none"  # "validation", "logit_shift" or "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_calibration(
    margins: np.ndarray, labels: np.ndarray, *, prior: float = 1e-3, iterations: int = 50
) -> Calibration | None:
    """Platt scaling: the logistic fit of ``labels`` (0/1) on ``margins``, by Newton's method.

    A weak ridge prior keeps the fit finite when the classes separate. Returns None when there
    is nothing to fit (one class only). Two parameters need no library: scikit-learn would add a
    dependency for four lines of algebra.
    """
    m = np.asarray(margins, np.float64).ravel()
    y = np.asarray(labels, np.float64).ravel()
    ok = np.isfinite(m)
    m, y = m[ok], y[ok]
    if m.size == 0 or y.min() == y.max():
        return None
    x = np.stack([m, np.ones_like(m)], axis=1)
    w0 = np.array([1.0, 0.0])  # scale, bias: the prior is the uncalibrated model

    def loss(w: np.ndarray) -> float:
        z = x @ w
        # mean negative log-likelihood, computed stably, plus the ridge prior
        nll = np.mean(np.logaddexp(0.0, z) - y * z)
        return float(nll + 0.5 * prior * np.sum((w - w0) ** 2))

    w, f = w0.copy(), loss(w0)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -40, 40)))
        grad = x.T @ (p - y) / m.size + prior * (w - w0)
        h = (x * (p * (1 - p))[:, None]).T @ x / m.size + prior * np.eye(2)
        step = np.linalg.solve(h, grad)
        t = 1.0  # Newton with backtracking: plain Newton diverges from a poor start
        while t > 1e-4 and loss(w - t * step) > f:
            t *= 0.5
        w = w - t * step
        f_new = loss(w)
        if abs(f - f_new) < 1e-10:
            break
        f = f_new
    scale, bias = float(w[0]), float(w[1])
    if not (math.isfinite(scale) and math.isfinite(bias)) or scale <= 0:
        return None  # an inverted or degenerate fit: do not trust it
    return Calibration(scale, bias, "validation")


def calibration_from_history(history: Sequence[dict[str, Any]], best_step: int) -> Calibration:
    """The calibration of a checkpoint: the fit at its best validation, else its logit shift."""
    rows = [h for h in history if h.get("step") == best_step] or list(history[-1:])
    if not rows:
        return Calibration()
    row = rows[-1]
    fit = row.get("calibration")
    if fit:
        return Calibration(float(fit["scale"]), float(fit["bias"]), "validation")
    shift = row.get("logit_shift")
    if shift is not None and math.isfinite(shift) and shift < 0:
        # held-out foreground sits |shift| closer to the boundary: move the boundary back
        return Calibration(1.0, -float(shift), "logit_shift")
    return Calibration()


# ----------------------------------------------------------------------------- risk map
def foreground_margin(logits: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``logsumexp(z_1..z_K) - z_0``: the log-odds of any foreground against background."""
    import torch

    z = logits.float()
    fg = torch.logsumexp(z.narrow(dim, 1, z.shape[dim] - 1), dim=dim)
    return fg - z.select(dim, 0)
