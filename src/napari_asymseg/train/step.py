"""One optimisation step (with the configured regularisers), its learning rate, and what the
run does when a step runs out of GPU memory."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from napari_asymseg.config import Config
from napari_asymseg.errors import TrainingError
from napari_asymseg.train.device import release
from napari_asymseg.train.events import Notice


def _lr_at(step: int, steps: int, lr: float) -> float:
    """Short linear warm-up, then cosine decay to 5% of the peak."""
    warm = max(1, min(20, steps // 10))
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def _make_step(model, optimizer, loss_fn, cfg: Config, num_classes: int, device, amp_dtype):
    """One optimisation step with the configured regularisers; returns (loss, logits)."""
    from napari_asymseg.model.sam import sam_step

    rc = cfg.regularizers
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    smoothed = _smoothing(cfg, num_classes)
    total_loss = _total_loss(model, loss_fn, cfg, num_classes, device, amp_dtype)

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        model.train()
        if rc.sam != "off":
            # SAM perturbs the weights around the plain loss; the other regularisers are
            # terms of their own and are not combined with it
            seen: list[torch.Tensor] = []
            target = smoothed(y)

            def plain(logits: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
                seen.append(logits.detach())
                return loss_fn(logits, target)

            loss = sam_step(model, optimizer, x, y, plain, adaptive_weights=rc.sam == "sam_a")
            return float(loss), seen[0]
        optimizer.zero_grad(set_to_none=True)
        loss, logits = total_loss(x, y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return float(loss.detach()), logits.detach()

    return step


def _smoothing(cfg: Config, num_classes: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The training target: the labels, or their smoothed one-hot with label smoothing."""
    from napari_asymseg.model import regularizers as reg

    eps = list(cfg.regularizers.label_smoothing)

    def smoothed(y: torch.Tensor) -> torch.Tensor:
        if not eps:
            return y
        return reg.smooth_labels(y, num_classes, eps if len(eps) > 1 else eps[0])

    return smoothed


def _total_loss(model, loss_fn, cfg: Config, num_classes: int, device, amp_dtype):
    """The loss of a batch with the adversarial and mixup terms; returns (loss, logits)."""
    from napari_asymseg.model import regularizers as reg

    rc = cfg.regularizers
    smoothed = _smoothing(cfg, num_classes)

    def total_loss(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = smoothed(y)
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(x).float()  # the loss in fp32 under autocast
            loss = loss_fn(logits, target)
            if rc.adversarial:
                r = reg.adversarial_perturbation(
                    model, x, y, eps=rc.adversarial_eps, asymmetric=rc.adversarial_asymmetric
                )
                loss = loss + loss_fn(model(x + r).float(), target)
            if rc.mixup:
                xb, yb = reg.mixup_partner(x, y)
                lam = reg.sample_lambda(rc.mixup_alpha)
                xm, ym = reg.mixup(
                    x,
                    y,
                    xb,
                    yb,
                    lam,
                    margin=rc.mixup_margin,
                    asymmetric=rc.mixup_asymmetric,
                    num_classes=num_classes,
                )
                loss = loss + loss_fn(model(xm).float(), ym)
        return loss, logits

    return total_loss


def _fall_back(cfg: Config, device: torch.device, model, optimizer) -> Notice:
    """After running out of GPU memory in a step: halve the batch, or at batch 1 move the run
    to the CPU (``cfg`` is changed in place); :class:`TrainingError` when neither is left."""
    release(device)
    batch = cfg.train.batch_size
    if batch > 1:
        cfg.train.batch_size = batch // 2
        return Notice(
            f"the GPU ran out of memory at batch {batch}: continuing with batch "
            f"{cfg.train.batch_size} (a smaller patch would keep the batch)"
        )
    if device.type != "cpu":
        cfg.train.device = "cpu"
        model.to("cpu")
        for opt in (optimizer, getattr(optimizer, "base_optimizer", None)):
            for state in opt.state.values() if opt is not None else ():
                for key, value in state.items():
                    if isinstance(value, torch.Tensor):
                        state[key] = value.to("cpu")
        return Notice(
            "the GPU ran out of memory even at batch 1: continuing on the CPU (slower); "
            "a smaller patch would fit the GPU"
        )
    raise TrainingError(
        "out of memory at batch 1 on the CPU: choose a smaller patch size or close other programs"
    )
