"""How many voxels a new model's training patch may hold on this device: its memory.

The patch holds about 64 mm of anatomy along each axis (:func:`~napari_asymseg.model.networks.
plan_network`, from the spacing), shrunk to at most :data:`CANDIDATES` ``[0]`` voxels on every
device, and to a smaller candidate only where the device's memory cannot hold a training step
of that patch: its estimated memory (:func:`training_bytes`) must fit in :data:`MEMORY_SHARE`
of the device's free memory (CUDA: ``torch.cuda.mem_get_info``; the CPU: ``MemAvailable``), as
nnU-Net plans its patch by GPU memory.

The largest patch is not larger on a faster device. Measured on the real scans
(docs/benchmarks.md, issue 22): the 64³ patch that CUDA runs planned before trained much worse
models on the 1 mm Colin27 scan than the 40³ one the CPU plans (unpainted DSC 0.20 and 0.29
against 0.50 and 0.46, seeds 0 and 1, 360 steps each); a faster device spends its speed on
steps instead (:mod:`~napari_asymseg.train.budget`). A run with ``data.patch_size`` or
``data.patch_voxels`` set plans nothing; the run's config then holds the voxels chosen, so a
resume and the quality estimate's folds train the same patch.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from napari_asymseg.config import Config
from napari_asymseg.model.networks import NetworkPlan, plan_network

CANDIDATES = (2**16, 2**15, 2**14, 2**13)
"""The patch voxels tried, largest first (40³, 32³, 25³ and 20³ on a 1 mm scan)."""
MEMORY_SHARE = 0.5
"""Of the device's free memory, the share a training step may take (the rest: the caching
allocator's slack, cuDNN's workspaces, the viewer)."""
BYTES_PER_CHANNEL_VOXEL = 72.0
"""Training memory per feature-map voxel, fp32: activations kept for the backward pass and the
gradients in flight. Measured on the CPU (peak RSS of a step of the default network: 1.3-1.5
KiB per patch voxel and batch item at 32³-64³, bf16 autocast 0.9 KiB)."""


def training_bytes(plan: NetworkPlan, filters: tuple[int, ...], batch: int, amp: bool) -> float:
    """The estimated memory of one training step of the DynUNet-like network of ``plan``."""
    voxels, scale, channel_voxels = math.prod(plan.patch_size), 1, 0.0
    for channels, stride in zip(filters, plan.strides, strict=False):
        scale *= math.prod(stride)
        channel_voxels += channels * voxels / scale
    return BYTES_PER_CHANNEL_VOXEL * channel_voxels * batch * (0.65 if amp else 1.0)


def free_memory(device: torch.device) -> float:
    """Bytes the device has free (CUDA), or the memory the system has available (CPU)."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return math.inf  # unknown: the largest candidate


def plan_voxels(cfg: Config, spacing, shape, device: torch.device, amp: bool) -> int:
    """The most voxels a new model's patch may hold on ``device`` (the rule above)."""
    free = free_memory(device)
    for voxels in CANDIDATES:
        plan = plan_network(spacing, shape, len(cfg.model.filters), max_voxels=voxels)
        need = training_bytes(plan, cfg.model.filters, cfg.train.batch_size, amp)
        if need <= MEMORY_SHARE * free:
            return voxels
    return CANDIDATES[-1]  # less still: the out-of-memory fallback takes over (halve the batch)
