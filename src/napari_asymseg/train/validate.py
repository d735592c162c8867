"""train.validate."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

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
from napari_asymseg.model.networks import NetworkPlan
from napari_asymseg.review.calibration import (
    fit_calibration,
    foreground_margin,
)
from napari_asymseg.train.data import ScanData
from napari_asymseg.train.events import EpochEnd


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
    data: ScanData,
    plan: NetworkPlan,
    cfg: Config,
    device,
    amp_dtype,
    loss_fn,
    step: int,
    epoch: int,
    train_losses: list[float],
    train_margins: list[np.ndarray],
) -> EpochEnd:
    """Predict the slab around the held-out slices and score the held-out voxels."""
    tm = np.concatenate(train_margins) if train_margins else np.zeros(0, np.float32)
    train_loss = float(np.mean(train_losses)) if train_losses else float("nan")
    nan = float("nan")
    if data.val is None:
        return EpochEnd(
            step,
            epoch,
            train_loss,
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            float(tm.mean()) if tm.size else nan,
            nan,
            histogram(tm),
            [],
        )
    zs = np.flatnonzero((data.val >= 0).any(axis=(1, 2)))
    half = plan.patch_size[0] // 2
    z0, z1 = max(0, int(zs[0]) - half), min(data.image.shape[0], int(zs[-1]) + half + 1)
    logits = sliding_logits(model, data.image[z0:z1], plan, cfg, device, amp_dtype)
    target = torch.from_numpy(data.val[z0:z1].astype(np.int64))[None]
    with torch.no_grad():
        val_loss = float(loss_fn(logits, target))
    pred = logits.argmax(1)
    scores = class_scores(pred, target, data.num_classes)
    mean = mean_scores(scores)
    vm = foreground_margins(logits, target)
    prob = 1 - torch.softmax(logits, 1)[0, 0]
    annotated = target[0] >= 0
    fit = fit_calibration(
        foreground_margin(logits[0], 0)[annotated].numpy(), (target[0] >= 1)[annotated].numpy()
    )
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
        train_margin=float(tm.mean()) if tm.size else nan,
        val_margin=float(vm.mean()) if vm.size else nan,
        train_hist=histogram(tm),
        val_hist=histogram(vm),
        per_class={
            c: {"dsc": s.dsc, "sensitivity": s.sensitivity, "precision": s.precision}
            for c, s in scores.items()
        },
        preview=prob.numpy().astype(np.float16),
        preview_z0=z0,
        calibration={"scale": fit.scale, "bias": fit.bias} if fit else None,
    )


def sliding_logits(
    model,
    image: np.ndarray,
    plan: NetworkPlan,
    cfg: Config,
    device,
    amp_dtype,
    *,
    spread: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits ``[1, C, *image.shape]`` (float32, on the CPU) by MONAI's sliding window.

    With test-time flips and a ``spread`` list, the standard deviation over the flips of the
    foreground margin (``[*image.shape]``) is appended to it, for the risk map.
    """
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(device)
    pad = [max(0, p - n) for p, n in zip(plan.patch_size, image.shape, strict=True)]
    model.eval()
    flips: list[tuple[int, ...]] = [()] + ([(3,), (4,), (3, 4)] if cfg.predict.tta else [])
    total = None
    m_sum: torch.Tensor | None = None
    m_sq: torch.Tensor | None = None
    with (
        torch.no_grad(),
        torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ),
    ):
        for dims in flips:
            xi = torch.flip(x, dims) if dims else x
            out = sliding_window_inference(
                xi,
                roi_size=plan.patch_size,
                sw_batch_size=cfg.predict.sw_batch_size,
                predictor=model,
                overlap=cfg.predict.overlap,
                mode="gaussian",
                padding_mode="replicate" if any(pad) else "constant",
            )
            assert isinstance(out, torch.Tensor)  # the model returns one tensor
            out = torch.flip(out, dims) if dims else out
            total = out.float() if total is None else total + out.float()
            if spread is not None and len(flips) > 1:
                m = foreground_margin(out[0], 0).cpu()
                m_sum = m if m_sum is None else m_sum + m
                m_sq = m * m if m_sq is None else m_sq + m * m
    assert total is not None
    if m_sum is not None and m_sq is not None and spread is not None:
        n = len(flips)
        spread.append(((m_sq / n - (m_sum / n) ** 2).clamp(min=0) * n / (n - 1)).sqrt())
    return (total / len(flips)).cpu()
