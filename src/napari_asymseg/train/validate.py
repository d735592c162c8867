"""Validation: score the held-out slices with the one sliding window, and the history rows
that the checkpoints keep."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_asymseg.config import Config
from napari_asymseg.evaluate.metrics import (
    class_scores,
    foreground_margins,
    histogram,
    logit_shift,
    mean_scores,
)
from napari_asymseg.infer.sliding import FLIPS, SlidingWindow
from napari_asymseg.model.networks import NetworkPlan
from napari_asymseg.review.calibration import (
    fit_calibration,
    foreground_margin,
)
from napari_asymseg.train.data import ScanData
from napari_asymseg.train.events import NAN, EpochEnd, Notice
from napari_asymseg.train.study_data import StudyData

if TYPE_CHECKING:
    from napari_asymseg.train.state import Run


def _with_best(event: EpochEnd) -> EpochEnd:
    return dataclasses.replace(event, best=True)


def _best_index(history: list[dict[str, Any]]) -> int:
    dscs = [h["dsc"] if not math.isnan(h["dsc"]) else -1 for h in history]
    return int(np.argmax(dscs))


def _history_row(event: EpochEnd) -> dict[str, Any]:
    keys = (
        "step",
        "epoch",
        "train_loss",
        "val_loss",
        "dsc",
        "sensitivity",
        "precision",
        "fbeta",
        "logit_shift",
        "train_margin",
        "val_margin",
        "best",
        "calibration",
    )
    return {k: getattr(event, k) for k in keys}


def _validate(
    model,
    data: ScanData | StudyData,
    plan: NetworkPlan,
    cfg: Config,
    device,
    amp_dtype,
    loss_fn,
    *,
    step: int,
    epoch: int,
    train_losses: list[float],
    train_margins: list[np.ndarray],
) -> EpochEnd:
    """Predict the slab around the held-out slices and score the held-out voxels."""
    tm = np.concatenate(train_margins) if train_margins else np.zeros(0, np.float32)
    train_loss = float(np.mean(train_losses)) if train_losses else NAN
    train_margin = float(tm.mean()) if tm.size else NAN
    if data.val is None:
        return EpochEnd(
            step=step,
            epoch=epoch,
            train_loss=train_loss,
            train_margin=train_margin,
            train_hist=histogram(tm),
        )
    assert isinstance(data, ScanData)  # a study holds nothing out
    z0, z1 = _slab(data.val, plan)
    logits = volume_logits(
        model, data.image[z0:z1], plan, cfg, device, amp_dtype, num_classes=data.num_classes
    )
    target = torch.from_numpy(data.val[z0:z1].astype(np.int64))[None]
    with torch.no_grad():
        val_loss = float(loss_fn(logits, target))
    scores = class_scores(logits.argmax(1), target, data.num_classes)
    mean = mean_scores(scores)
    vm = foreground_margins(logits, target)
    return EpochEnd(
        step=step,
        epoch=epoch,
        train_loss=train_loss,
        val_loss=val_loss,
        dsc=mean["dsc"],
        sensitivity=mean["sensitivity"],
        precision=mean["precision"],
        fbeta=mean["fbeta"],
        logit_shift=logit_shift(tm, vm),
        train_margin=train_margin,
        val_margin=float(vm.mean()) if vm.size else NAN,
        train_hist=histogram(tm),
        val_hist=histogram(vm),
        per_class={
            c: {"dsc": s.dsc, "sensitivity": s.sensitivity, "precision": s.precision}
            for c, s in scores.items()
        },
        preview=(1 - torch.softmax(logits, 1)[0, 0]).numpy().astype(np.float16),
        preview_z0=z0,
        calibration=_calibration(logits, target),
    )


def _calibration(logits: torch.Tensor, target: torch.Tensor) -> dict[str, float] | None:
    """The Platt fit of P(foreground | margin) on the held-out voxels, for the risk map."""
    annotated = target[0] >= 0
    fit = fit_calibration(
        foreground_margin(logits[0], 0)[annotated].numpy(), (target[0] >= 1)[annotated].numpy()
    )
    return {"scale": fit.scale, "bias": fit.bias} if fit else None


def _slab(val: np.ndarray, plan: NetworkPlan) -> tuple[int, int]:
    """The slices to predict: the held-out ones and half a window of context on each side."""
    zs = np.flatnonzero((val >= 0).any(axis=(1, 2)))
    half = plan.patch_size[0] // 2
    return max(0, int(zs[0]) - half), min(val.shape[0], int(zs[-1]) + half + 1)


def volume_logits(
    model,
    image: np.ndarray,
    plan: NetworkPlan,
    cfg: Config,
    device,
    amp_dtype,
    *,
    num_classes: int | None = None,
    spread: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits ``[1, C, *image.shape]`` (float32, on the CPU) of a volume held in memory, by the
    one sliding window (:class:`~napari_asymseg.infer.sliding.SlidingWindow`, every channel).

    ``num_classes`` defaults to the network's ``out_channels``. With test-time flips and a
    ``spread`` list, the standard deviation over the flips of the foreground margin
    (``[*image.shape]``) is appended to it, for the risk map: one pass per flip then, as the
    margin of the flip-mean logits is not the mean of the flips' margins.
    """
    classes = int(num_classes if num_classes is not None else model.out_channels)
    model.eval()

    def window(flips: bool | list[tuple[int, ...]]) -> SlidingWindow:
        return SlidingWindow(
            model,
            plan.patch_size,
            image.shape,
            classes,
            overlap=cfg.predict.overlap,
            batch=cfg.predict.sw_batch_size,
            device=device,
            amp_dtype=amp_dtype,
            flips=flips,
            full=True,
        )

    if spread is None or not cfg.predict.tta:
        return window(cfg.predict.tta).whole(image)[None]
    total = m_sum = m_sq = torch.zeros(())
    for dims in FLIPS:
        logits = window([dims]).whole(image)
        m = foreground_margin(logits, 0)
        total, m_sum, m_sq = total + logits, m_sum + m, m_sq + m * m
    n = len(FLIPS)
    spread.append(((m_sq / n - (m_sum / n) ** 2).clamp(min=0) * n / (n - 1)).sqrt())
    return (total / n)[None]


def score_other(run: Run, model: str | os.PathLike) -> float:
    """The DSC of another model (the scan's current one) on this run's held-out slices; NaN
    without held-out slices, or when that model reads the image otherwise (normalisation)."""
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.train.state import network_for

    if run.data.val is None:
        return math.nan
    ckpt = load_checkpoint(model)
    theirs = ckpt.get("config", {}).get("data", {})
    ours = dataclasses.asdict(run.cfg.data)
    if any(theirs.get(k, ours[k]) != ours[k] for k in ("normalisation", "window")):
        return math.nan
    cfg = copy.deepcopy(run.cfg)
    other, plan = network_for(ckpt, cfg, run.data, run.device)
    event = _validate(other.to(run.device), run.data, plan, cfg, run.device, run.amp_dtype,
                      run.loss_fn, step=0, epoch=0, train_losses=[], train_margins=[])  # fmt: skip
    del other
    return float(event.dsc)


def _unlearned(run: Run) -> Notice | None:
    """A Notice when the model ends training still calling most of the painted lesion
    background: its mean foreground margin on the training patches stayed negative over the
    last two validations. Seen on the Colin27 hippocampus for one training seed in four
    (docs/training.md): the prediction is then empty, and it should not be silently so."""
    margins = [h.get("train_margin", math.nan) for h in run.history[-2:]]
    if len(margins) < 2 or not all(math.isfinite(m) and m < 0 for m in margins):
        return None
    return Notice(
        "the model has not learned the painted lesion: at the end of training it still calls "
        f"most of it background (mean margin {margins[-1]:+.2f}). Train again with another "
        f"seed (train.seed, now {run.cfg.train.seed}) or more steps, or paint the lesion on "
        "one more slice"
    )
