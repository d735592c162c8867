"""train.step."""

from __future__ import annotations

import torch

from napari_asymseg.config import Config


def _make_step(model, optimizer, loss_fn, cfg: Config, num_classes: int, device, amp_dtype):
    """One optimisation step with the configured regularisers; returns (loss, logits)."""
    from napari_asymseg.model import regularizers as reg
    from napari_asymseg.model.sam import sam_step

    rc = cfg.regularizers
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    sam = rc.sam != "off"

    def _smoothed(y: torch.Tensor) -> torch.Tensor:
        if not rc.label_smoothing:
            return y
        eps = list(rc.label_smoothing)
        return reg.smooth_labels(y, num_classes, eps if len(eps) > 1 else eps[0])

    def total_loss(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = _smoothed(y)
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

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        model.train()
        if sam:
            # SAM perturbs the weights around the plain loss; the other regularisers are
            # terms of their own and are not combined with it
            seen: list[torch.Tensor] = []
            target = _smoothed(y)

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
