"""What every segmentation loss shares: target conversion, ignore masking, shape checks.

The loss classes build on :class:`_SegLoss` (:mod:`.losses` for the cross-entropy family,
:mod:`.overlap_losses` for Dice-like ones); the conventions are in :mod:`.losses`.
"""

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def target_to_onehot(
    target: torch.Tensor, num_classes: int, ignore_index: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn either target kind into ``(y, valid)``.

    Returns
    -------
    y : torch.Tensor
        float32 ``[B, C, *S]``, zero on ignored voxels.
    valid : torch.Tensor
        float32 ``[B, 1, *S]``: 1 where the voxel counts in N, 0 where it is ignored.
    """
    if target.is_floating_point():
        if target.ndim < 3 or target.shape[1] != num_classes:
            raise ValueError(
                f"soft target must be [B, {num_classes}, *S], got {tuple(target.shape)}"
            )
        y = target.float()
        # a probability is never negative, so a negative entry can only be an ignore marker
        valid = (y >= 0).all(dim=1, keepdim=True)
        return torch.where(valid, y, 0.0), valid.float()
    if target.dtype == torch.bool or target.is_complex():
        raise ValueError(f"index target must have an integer dtype, got {target.dtype}")
    valid = target != ignore_index
    idx = torch.where(valid, target, 0).long()
    y = torch.zeros(
        (target.shape[0], num_classes, *target.shape[1:]), device=target.device
    ).scatter_(1, idx.unsqueeze(1), 1.0)
    valid = valid.unsqueeze(1).float()
    return y * valid, valid


def _numbers(value: Any, cast: Callable[[Any], Any], what: str) -> list | None:
    """Sequence, None, or a comma-separated string (what a GUI text field or CLI gives)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value.strip()) if v]
    try:
        return [cast(v) for v in value]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a list of numbers, got {value!r}") from err


def _class_view(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """``[C]`` -> ``[1, C, 1, ...]`` so it broadcasts against ``[B, C, *S]``."""
    return v.view(1, -1, *([1] * (ndim - 2)))


class _SegLoss(nn.Module):
    """Shared plumbing: shape checks, float32, target conversion, masking of ignored logits."""

    def __init__(self, ignore_index: int = -1) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim < 3 or logits.shape[1] < 2:
            raise ValueError(f"logits must be [B, C>=2, *S], got {tuple(logits.shape)}")
        if not target.is_floating_point() and target.ndim == logits.ndim and target.shape[1] == 1:
            target = target[:, 0]  # MONAI-style [B, 1, *S] indices
        y, valid = target_to_onehot(target, logits.shape[1], self.ignore_index)
        if y.shape != logits.shape:
            raise ValueError(f"target {tuple(target.shape)} does not match {tuple(logits.shape)}")
        z = torch.where(valid.bool(), logits.float(), 0.0)
        return self._loss(z, y, valid)

    def _loss(self, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
