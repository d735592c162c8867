"""Segmentation metrics on annotated voxels, and the logit-shift diagnostic of Li et al.

Metrics are computed from confusion counts over the voxels that carry a label (target >= 0).
MONAI's metrics assume dense one-hot masks; sparse annotations need the unannotated voxels
left out, which is a mask on the counts, so the counts are computed here directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads THRESHOLD without it
    import torch


@dataclass(frozen=True)
class ClassScores:
    """Scores of one foreground class; NaN where undefined (no such voxels)."""

    dsc: float
    sensitivity: float
    precision: float
    fbeta: float
    tp: int
    fp: int
    fn: int


def _div(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def class_scores(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    num_classes: int,
    *,
    beta: float = 2.0,
) -> dict[int, ClassScores]:
    """DSC, sensitivity (recall), precision and F-beta per foreground class.

    Parameters
    ----------
    pred
        Predicted class indices.
    target
        True class indices, ``-1`` (or any negative value) where not annotated.
    beta
        F-beta weight; beta = 2 favours recall, the quantity overfitting costs (Li et al.).
    """
    p = torch.as_tensor(pred).reshape(-1).long()
    t = torch.as_tensor(target).reshape(-1).long()
    keep = t >= 0
    p, t = p[keep], t[keep]
    out = {}
    b2 = beta * beta
    for c in range(1, num_classes):
        pc, tc = p == c, t == c
        tp = int((pc & tc).sum())
        fp = int((pc & ~tc).sum())
        fn = int((~pc & tc).sum())
        out[c] = ClassScores(
            dsc=_div(2 * tp, 2 * tp + fp + fn),
            sensitivity=_div(tp, tp + fn),
            precision=_div(tp, tp + fp),
            fbeta=_div((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp),
            tp=tp,
            fp=fp,
            fn=fn,
        )
    return out


def mean_scores(scores: dict[int, ClassScores]) -> dict[str, float]:
    """Mean over foreground classes of each score (NaNs ignored)."""
    keys = ("dsc", "sensitivity", "precision", "fbeta")
    result = {}
    for key in keys:
        values = [getattr(s, key) for s in scores.values() if not np.isnan(getattr(s, key))]
        result[key] = float(np.mean(values)) if values else float("nan")
    return result


def foreground_margins(
    logits: torch.Tensor, target: torch.Tensor, limit: int = 20_000
) -> np.ndarray:
    """The margin ``z_c - z_0`` on voxels of foreground class c (Li et al., Fig. 2).

    Positive margins are correct; unseen foreground drifting towards 0 (the decision boundary)
    is the overfitting signature. At most ``limit`` values are kept (an even subsample).
    """
    c = target.clamp(min=0)
    fg = target >= 1
    if not bool(fg.any()):
        return np.zeros(0, dtype=np.float32)
    z_true = logits.float().gather(1, c.unsqueeze(1)).squeeze(1)
    margins = (z_true - logits[:, 0].float())[fg].detach().cpu().numpy()
    if margins.size > limit:
        margins = margins[np.linspace(0, margins.size - 1, limit).astype(np.int64)]
    return margins.astype(np.float32)


def logit_shift(train_margins: np.ndarray, val_margins: np.ndarray) -> float:
    """Δ = mean margin on held-out foreground - mean margin on training foreground.

    Both means are signed: a foreground voxel on the background side of the decision boundary
    has a negative margin. Negative Δ: the held-out foreground sits closer to the boundary, or
    further across it, than the training foreground (Li et al.'s logit shift). The magnitudes
    of the means must not be compared: a held-out mean of -0.7 against a training mean of
    +0.1 is unseen foreground on the wrong side, not further from the boundary.
    """
    if train_margins.size == 0 or val_margins.size == 0:
        return float("nan")
    return float(val_margins.mean() - train_margins.mean())


def histogram(values: np.ndarray, bins: int = 40, lim: float = 20.0) -> list[int]:
    """Counts in ``bins`` equal bins over [-lim, lim] (values outside are clipped in)."""
    if values.size == 0:
        return [0] * bins
    counts, _ = np.histogram(np.clip(values, -lim, lim), bins=bins, range=(-lim, lim))
    return [int(c) for c in counts]


# ----------------------------------------------------------------------------- evaluation
def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision, step-wise, ties grouped)."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(positives, bool).ravel()
    total = int(y.sum())
    if total == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    # evaluate at the last index of each group of tied scores
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp_at, n_at = tp[last], last + 1
    precision = tp_at / n_at
    recall_gain = np.diff(np.r_[0, tp_at]) / total
    return float(np.sum(precision * recall_gain))
