"""Where and in which precision a run computes: device choice (CUDA, MPS, CPU), autocast
(bf16 on CPUs that compute it natively), and giving freed memory back (CUDA cache, glibc)."""

from __future__ import annotations

import functools
import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from napari_asymseg.errors import ScanError


# ------------------------------------------------------------------------------------ device
def select_device(name: str = "auto") -> torch.device:
    """CUDA when present, then Apple MPS, then the CPU; or exactly what is asked."""
    if name != "auto":
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ScanError(f"device {name!r} asked for, but CUDA is not available: use cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None = full precision).

    ``auto`` uses bf16 on CUDA GPUs that support it (no loss scaling needed), else fp16; on
    the CPU it uses bf16 where the processor computes it natively (AVX512-BF16 or AMX; measured
    on 2 Zen 4 cores: training steps 2.5x faster than fp32, ``benchmarks/training_throughput.py``,
    whole-scan prediction 2.0x, ``benchmarks/prediction.py``, validation DSC unchanged,
    ``benchmarks/bf16_quality.py``), and full precision elsewhere, where emulated bf16 is slower
    than fp32.
    """
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    raise ScanError(f"unknown amp {amp!r}: use auto, off, bf16 or fp16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 instructions (x86 AVX512-BF16 or AMX-BF16; Linux flags).

    ``ASYMSEG_CPU_BF16=0`` or ``1`` overrides the detection.
    """
    forced = os.environ.get("ASYMSEG_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def memory_format(device: torch.device, amp_dtype: torch.dtype | None) -> torch.memory_format:
    """``channels_last_3d`` for fp32 training on a CPU whose widest vectors are AVX2, else the
    default layout.

    Measured on 2 Zen 4 cores limited to AVX2 (``benchmarks/cpu_variants.py``): a training
    step of the default network 1.19x faster in channels-last (0.346 vs 0.413 s at 40³); with
    AVX-512 it was 4% slower in fp32 and equal in bf16, so only there. ``ASYMSEG_CHANNELS_LAST=0``
    or ``1`` overrides the choice.
    """
    forced = os.environ.get("ASYMSEG_CHANNELS_LAST")
    if forced in ("0", "1"):
        wanted = forced == "1"
    else:
        wanted = (
            device.type == "cpu"
            and amp_dtype is None
            and torch.backends.cpu.get_cpu_capability() == "AVX2"
        )
    return torch.channels_last_3d if wanted else torch.contiguous_format


def release(device: torch.device) -> None:
    """Give the memory of dropped models back to the GPU driver (CUDA only).

    On the CPU, dropping the last reference frees the memory already; a full ``gc.collect()``
    would hold the GIL for hundreds of milliseconds and stall napari's event loop.
    """
    if device.type == "cuda":
        gc.collect()  # reference cycles can keep CUDA tensors alive
        torch.cuda.empty_cache()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c") if sys.platform == "linux" else None
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # another libc than glibc: nothing to do
        return None


def release_freed_memory() -> None:
    """Give the memory that freed slabs leave in glibc's heap back to the system (Linux).

    Prediction allocates and frees slabs of a few MiB again and again; glibc serves them from
    its heap and keeps what they leave resident. Trimming after each written piece keeps the
    process at what it holds (``benchmarks/prediction_memory.py``: the peak above the baseline
    on a 512³ scan falls from 530 MiB without it). It changes no allocator setting.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
