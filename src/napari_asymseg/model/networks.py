"""Networks: a registry of MONAI 3D U-Nets, planned for the scan's voxel spacing.

Clinical scans are often anisotropic (5 mm slices next to 0.7 mm in-plane). Following nnU-Net
(Isensee et al. 2021), :func:`plan_network` pools an axis only while its voxel size is less
than twice the finest one, and uses in-plane (1x3x3) kernels at those levels, so thick slices
are not blurred away in the first layers; unlike nnU-Net it never pools an axis that is thick
in the scan (2x the finest spacing or more), whose neighbouring slices are seen by 3-wide
kernels at the coarse levels instead. The patch size is chosen to cover a similar physical
extent along every axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import nn

from napari_asymseg.config import ModelConfig


@dataclass(frozen=True)
class NetworkPlan:
    """Kernel sizes and strides per level, and a patch size that the strides divide."""

    patch_size: tuple[int, int, int]
    kernels: tuple[tuple[int, int, int], ...]
    strides: tuple[tuple[int, int, int], ...]


def plan_network(
    spacing: Sequence[float],
    shape: Sequence[int],
    levels: int,
    patch_size: Sequence[int] | None = None,
    *,
    extent_mm: float = 64.0,
    max_voxels: int = 64**3,
) -> NetworkPlan:
    """Plan kernels, strides and the patch size for ``levels`` resolution levels.

    Parameters
    ----------
    spacing
        Voxel size (Z, Y, X) in mm.
    shape
        Scan shape; the patch never exceeds it (rounded up to what the strides divide).
    levels
        Number of resolution levels (len(filters)); there are ``levels - 1`` downsamplings.
    patch_size
        Use this patch instead of planning one (it is rounded up to a multiple of the strides).
    """
    current = [float(s) for s in spacing]
    thick = [s >= 2 * min(current) for s in current]
    kernels, strides = [], []
    size_left = list(patch_size) if patch_size else [max(1, int(extent_mm / s)) for s in spacing]
    for level in range(levels):
        finest = min(current)
        # pool (and use a full 3x3x3 kernel) only along axes not much coarser than the finest
        # ... and never along an axis that is thick in the scan itself: a stride there gives
        # alternate slices different decoder weights, and with a few painted slices the two
        # parities learn different things (every other slice called lesion, docs/training.md)
        pool = [
            c < 2 * finest and size_left[i] >= 8 and not thick[i] for i, c in enumerate(current)
        ]
        kernels.append(tuple(3 if c < 2 * finest else 1 for c in current))
        if level == levels - 1:
            break
        stride = tuple(2 if p else 1 for p in pool)
        strides.append(stride)
        current = [c * s for c, s in zip(current, stride, strict=True)]
        size_left = [max(1, n // s) for n, s in zip(size_left, stride, strict=True)]
    divisor = [1, 1, 1]
    for st in strides:
        divisor = [d * s for d, s in zip(divisor, st, strict=True)]
    if patch_size is None:
        want = [max(1, int(round(extent_mm / s))) for s in spacing]
        while _prod(want) > max_voxels:
            i = max(range(3), key=lambda k: want[k] * spacing[k])
            want[i] = max(divisor[i], int(want[i] * 0.9))
        patch = [min(w, _round_up(n, d)) for w, n, d in zip(want, shape, divisor, strict=True)]
    else:
        patch = list(patch_size)
    patch = [_round_up(max(p, d), d) for p, d in zip(patch, divisor, strict=True)]
    return NetworkPlan(
        patch_size=(patch[0], patch[1], patch[2]),
        kernels=tuple((k[0], k[1], k[2]) for k in kernels),
        strides=((1, 1, 1), *((s[0], s[1], s[2]) for s in strides)),
    )


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _round_up(n: int, d: int) -> int:
    return -(-int(n) // d) * d


def dynunet_args(
    cfg: ModelConfig, plan: NetworkPlan, in_channels: int, out_channels: int, *, res: bool
) -> dict[str, Any]:
    """The keyword arguments of MONAI's ``DynUNet`` for this config and plan (plain JSON).

    Model bundles write them into ``configs/inference.json``, so MONAI's bundle tools can
    build the same network without this plugin.
    """
    return {
        "spatial_dims": 3,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "kernel_size": [list(k) for k in plan.kernels],
        "strides": [list(s) for s in plan.strides],
        "upsample_kernel_size": [list(s) for s in plan.strides[1:]],
        "filters": list(cfg.filters),
        "dropout": cfg.dropout or None,
        "norm_name": ["INSTANCE", {"affine": True}],
        "res_block": res,
    }


def _dynunet(
    cfg: ModelConfig, plan: NetworkPlan, in_channels: int, out_channels: int, *, res: bool
) -> nn.Module:
    from monai.networks.nets import DynUNet

    args = dynunet_args(cfg, plan, in_channels, out_channels, res=res)
    args["norm_name"] = tuple(args["norm_name"])
    return DynUNet(**args)


ModelFactory = Callable[[ModelConfig, NetworkPlan, int, int], nn.Module]

MODELS: dict[str, ModelFactory] = {
    # nnU-Net's architecture as MONAI builds it: plain conv blocks, instance norm, leaky ReLU
    "unet": partial(_dynunet, res=False),
    # the same with residual blocks: a little slower, sometimes steadier on small data
    "resunet": partial(_dynunet, res=True),
}


def build_model(
    cfg: ModelConfig,
    plan: NetworkPlan,
    *,
    in_channels: int = 1,
    out_channels: int = 2,
) -> nn.Module:
    """Instantiate the network named by ``cfg.name``; a clear error for unknown names."""
    if cfg.name not in MODELS:
        raise ValueError(f"unknown model {cfg.name!r}: choose one of {', '.join(MODELS)}")
    if len(cfg.filters) < 3:
        raise ValueError(f"filters needs at least 3 levels, got {len(cfg.filters)}")
    if len(cfg.filters) != len(plan.kernels):
        raise ValueError(
            f"the plan has {len(plan.kernels)} levels but filters has {len(cfg.filters)}"
        )
    return MODELS[cfg.name](cfg, plan, in_channels, out_channels)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
