"""Sliding-window inference streamed along Z, equal to MONAI's on the whole volume.

MONAI's ``sliding_window_inference`` allocates the output and the weight map of the whole
volume (for a 512³ scan and two classes: 512 MiB of input, 1 GiB of logits and 512 MiB of
weights, in float32) before it can return. :class:`SlidingWindow` walks the same windows
(MONAI's grid: ``dense_patch_slices`` with MONAI's scan interval, MONAI's gaussian importance
map, the same replicate padding of axes shorter than the window), one row of windows along Z at
a time, and hands out each slab of slices as soon as no later window covers it. Memory is a
window's depth of full slices, not the volume, and the logits are those of MONAI's function
(``tests/infer/test_sliding.py`` checks that). Why our own: MONAI's function cannot stream, and
cutting the volume into overlapping slabs for it computes the overlap twice (measured:
``benchmarks/prediction.py``).

Two details make the stream cheaper than the whole-volume call:
* with two classes only the logit difference is blended (softmax and argmax of two classes
  depend on nothing else): one channel to accumulate instead of two (``full=True`` blends
  every channel: validation scores its losses on the logits themselves);
* a range of slices (a dask block) is computed from exactly the windows of the whole-volume
  grid that cover it, so blocks computed apart join without seams and equal the whole run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

FLIPS: list[tuple[int, ...]] = [(), (3,), (4,), (3, 4)]
"""The test-time flips of a batch ``[B, C, Z, Y, X]``: none, Y, X, both (in-plane only)."""

ReadImage = Callable[[int, int], np.ndarray]
"""``read(z0, z1)`` -> the normalised float32 slices ``z0:z1`` of the volume, ``[n, Y, X]``."""


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Window starts along one axis, as MONAI's ``dense_patch_slices`` places them."""
    from monai.data.utils import dense_patch_slices

    interval = patch if patch == size else max(1, int(patch * (1 - overlap)))
    return sorted({int(s[0].start) for s in dense_patch_slices((size,), (patch,), (interval,))})


@dataclass
class Slab:
    """Final scores of slices ``z0:z1`` (volume coordinates).

    ``scores`` is the blended logit difference ``[1, n, Y, X]`` for two classes (foreground
    margin), else (or with ``full``) the blended logits ``[C, n, Y, X]``; float32 on the CPU.
    """

    z0: int
    z1: int
    scores: torch.Tensor


class SlidingWindow:
    """MONAI-equal gaussian sliding-window logits of a ``(Z, Y, X)`` volume, streamed along Z.

    Parameters
    ----------
    model
        The network; called on batches ``[B, 1, *patch]`` in eval mode without gradients.
    patch
        The window (the training patch).
    shape
        The volume's shape.
    num_classes
        Output channels of the network.
    overlap, batch
        MONAI's ``overlap`` and ``sw_batch_size``.
    flips
        Test-time augmentation: average each window's logits over its in-plane flips
        (:data:`FLIPS`); or exactly the flips given (``[(3,)]``: one pass on the Y-flipped
        volume).
    full
        Blend every channel, also for two classes.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        patch: Sequence[int],
        shape: Sequence[int],
        num_classes: int,
        *,
        overlap: float = 0.25,
        batch: int = 4,
        device: torch.device | str = "cpu",
        amp_dtype: torch.dtype | None = None,
        flips: bool | Sequence[tuple[int, ...]] = False,
        full: bool = False,
    ) -> None:
        from monai.data.utils import compute_importance_map

        self.model, self.device, self.amp_dtype = model, torch.device(device), amp_dtype
        self.patch = tuple(int(p) for p in patch)
        self.shape = tuple(int(n) for n in shape)
        self.num_classes, self.batch = int(num_classes), max(1, int(batch))
        # axes shorter than the window are padded (replicate) evenly on both sides, as MONAI does
        self.padded = tuple(max(n, p) for n, p in zip(self.shape, self.patch, strict=True))
        self.pad_lo = tuple((q - n) // 2 for q, n in zip(self.padded, self.shape, strict=True))
        self.starts = [
            window_starts(q, p, overlap) for q, p in zip(self.padded, self.patch, strict=True)
        ]
        chosen = FLIPS if flips is True else FLIPS[:1] if flips is False else flips
        self.flips: list[tuple[int, ...]] = [tuple(dims) for dims in chosen]
        self.channels = 1 if self.num_classes == 2 and not full else self.num_classes
        weight = compute_importance_map(self.patch, mode="gaussian", sigma_scale=0.125)
        self.weight = weight.to(self.device, torch.float32)

    # ------------------------------------------------------------------ the stream
    def rows_for(self, z0: int, z1: int) -> list[int]:
        """Starts (padded Z) of the window rows that cover volume slices ``z0:z1``."""
        a, b = z0 + self.pad_lo[0], z1 + self.pad_lo[0]
        pz = self.patch[0]
        return [s for s in self.starts[0] if s < b and s + pz > a]

    def stream(self, read: ReadImage, z0: int = 0, z1: int | None = None) -> Iterator[Slab]:
        """Final slabs covering volume slices ``z0:z1`` in order, each as soon as it is done.

        ``read`` is called only for slices the windows need, each slice once.
        """
        z1 = self.shape[0] if z1 is None else z1
        if not 0 <= z0 < z1 <= self.shape[0]:
            raise ValueError(f"slices {z0}:{z1} are outside the volume of depth {self.shape[0]}")
        rows = self.rows_for(z0, z1)
        pz = self.patch[0]
        lo, hi = z0 + self.pad_lo[0], z1 + self.pad_lo[0]  # the wanted range, padded Z
        _, yp, xp = self.padded
        acc = torch.zeros((self.channels, pz, yp, xp), dtype=torch.float32, device=self.device)
        wsum = torch.zeros((pz, yp, xp), dtype=torch.float32, device=self.device)
        images = _RowImages(read, self.shape, self.padded, self.pad_lo, pz)
        base = rows[0]  # padded Z of acc[:, 0]
        done = lo  # padded Z below which everything wanted has been handed out
        for k, s in enumerate(rows):
            if s != base:  # move the unfinished part of the buffer to its start
                shift = s - base
                keep = pz - shift
                if keep > 0:
                    acc[:, :keep] = acc[:, shift:].clone()
                    wsum[:keep] = wsum[shift:].clone()
                acc[:, max(keep, 0) :] = 0
                wsum[max(keep, 0) :] = 0
                base = s
            self._add_row(images.rows(s, s + pz), acc, wsum)
            final = rows[k + 1] if k + 1 < len(rows) else s + pz
            a, b = max(done, base), min(final, hi)
            if b > a:
                scores = acc[:, a - base : b - base] / wsum[a - base : b - base]
                yield Slab(a - self.pad_lo[0], b - self.pad_lo[0], self._crop(scores))
                done = b

    def whole(self, image: np.ndarray) -> torch.Tensor:
        """Scores ``[C', *shape]`` of a (small) volume held in memory: every slab, joined."""
        slabs = self.stream(lambda a, b: image[a:b])
        return torch.cat([slab.scores for slab in slabs], dim=1)

    def _crop(self, scores: torch.Tensor) -> torch.Tensor:
        """Drop the in-plane padding; float32 on the CPU."""
        (_, y0, x0), (_, ny, nx) = self.pad_lo, self.shape
        return scores[:, :, y0 : y0 + ny, x0 : x0 + nx].to("cpu", torch.float32)

    def _add_row(self, image: torch.Tensor, acc: torch.Tensor, wsum: torch.Tensor) -> None:
        """Run every window of one row (``image``: ``[pz, Yp, Xp]``) into the buffers."""
        _, py, px = self.patch
        corners = [(y, x) for y in self.starts[1] for x in self.starts[2]]
        x_row = image.to(self.device)
        for i in range(0, len(corners), self.batch):
            group = corners[i : i + self.batch]
            windows = torch.stack([x_row[:, y : y + py, x : x + px] for y, x in group])[:, None]
            scores = self._scores(windows) * self.weight
            for (y, x), sc in zip(group, scores, strict=True):
                acc[:, :, y : y + py, x : x + px] += sc
                wsum[:, y : y + py, x : x + px] += self.weight

    def _scores(self, windows: torch.Tensor) -> torch.Tensor:
        """Flip-averaged logits (or their two-class difference) of a batch of windows."""
        total: torch.Tensor | None = None
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type,
                dtype=self.amp_dtype or torch.float32,
                enabled=self.amp_dtype is not None,
            ),
        ):
            for dims in self.flips:
                x = torch.flip(windows, dims) if dims else windows
                out = self.model(x).float()
                out = torch.flip(out, dims) if dims else out
                total = out if total is None else total + out
        assert total is not None
        total = total / len(self.flips)
        if self.channels == 1:
            return total[:, 1:2] - total[:, 0:1]
        return total


READ_SLICES = 8
"""Slices read (and normalised) at a time."""


class _RowImages:
    """The padded image slices of consecutive window rows, reading each volume slice once."""

    def __init__(
        self,
        read: ReadImage,
        shape: tuple[int, ...],
        padded: tuple[int, ...],
        pad_lo: tuple[int, ...],
        depth: int,
    ) -> None:
        self.read, self.shape, self.padded, self.pad_lo = read, shape, padded, pad_lo
        # one window's depth of slices, refilled in place: no second copy while rows move on
        self.buffer = torch.empty((depth, padded[1], padded[2]), dtype=torch.float32)
        self.z0, self.n = 0, 0  # buffer[:n] holds padded slices z0:z0+n

    def rows(self, a: int, b: int) -> torch.Tensor:
        """Padded slices ``a:b`` (padded Z coordinates; ``a`` never decreases)."""
        keep = min(self.n, max(0, self.z0 + self.n - a)) if self.z0 <= a else 0
        if keep and a > self.z0:
            self.buffer[:keep] = self.buffer[a - self.z0 : a - self.z0 + keep].clone()
        for c0 in range(a + keep, b, READ_SLICES):  # a few slices at a time: small temporaries
            c1 = min(b, c0 + READ_SLICES)
            self.buffer[c0 - a : c1 - a] = self._read_padded(c0, c1)
        self.z0, self.n = a, b - a
        return self.buffer[: b - a]

    def _read_padded(self, a: int, b: int) -> torch.Tensor:
        """Slices ``a:b`` of the padded volume: replicate padding beyond the edges."""
        n, (lz, ly, lx) = self.shape[0], self.pad_lo
        r0, r1 = min(max(a - lz, 0), n - 1), min(max(b - lz, 1), n)
        block = np.asarray(self.read(r0, r1), dtype=np.float32)
        before, after = max(0, r0 - (a - lz)), max(0, (b - lz) - r1)
        (_, ny, nx), (_, qy, qx) = self.shape, self.padded
        width = ((before, after), (ly, qy - ny - ly), (lx, qx - nx - lx))
        if any(w for pair in width for w in pair):
            block = np.pad(block, width, mode="edge")
        return torch.from_numpy(np.ascontiguousarray(block[: b - a]))


def smoothing_radius(sigma_mm: float, spacing_z: float, truncate: float = 4.0) -> int:
    """Slices on each side that scipy's ``gaussian_filter`` reads along Z (its ``truncate``)."""
    if sigma_mm <= 0:
        return 0
    return int(truncate * sigma_mm / float(spacing_z) + 0.5)


def chunk_ranges(start: int, stop: int, step: int) -> Iterator[tuple[int, int]]:
    """``start:stop`` cut at the multiples of ``step``."""
    a = start
    while a < stop:
        b = min(stop, (a // step + 1) * step)
        yield a, b
        a = b
