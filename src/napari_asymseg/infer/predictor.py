"""One model ready to predict one scan: :class:`Predictor` turns the streamed sliding window
into the stored results (labels, foreground probability, risk map) of any slice range, in
pieces of whole chunks. Every prediction path calls :meth:`Predictor.results`: the
single-process :func:`napari_asymseg.infer.predict.predict` once for the scan, the dask path
(:mod:`napari_asymseg.infer.scaleout`) once per block."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_asymseg.config import Config, check_config
from napari_asymseg.errors import ScanError
from napari_asymseg.infer.sliding import SlidingWindow, chunk_ranges, smoothing_radius
from napari_asymseg.model.checkpoint import model_from_checkpoint
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.review.calibration import (
    calibration_from_history,
    foreground_margin,
)
from napari_asymseg.review.risk_map import KAPPA, SIGMA_MM, risk_map
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.data import intensity_stats, normalise
from napari_asymseg.train.device import autocast_dtype, select_device

# ------------------------------------------------------------------------------------ prediction
RESULT_DTYPES = {"prediction": np.uint8, "probability": np.float16, "risk": np.float16}


@dataclass
class Predictor:
    """A model ready to predict one scan: the network, its window stream and the risk's
    calibration. The single-process :func:`predict` and the dask path
    (:mod:`napari_asymseg.infer.scaleout`) compute every slice with :meth:`results`."""

    window: SlidingWindow
    cfg: Config
    stats: tuple[float, float]
    calibration: Any
    spacing: tuple[float, float, float]

    @classmethod
    def load(
        cls,
        ckpt: dict[str, Any],
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
        stats: tuple[float, float],
        config: Config | None = None,
    ) -> Predictor:
        net, train_cfg, plan = model_from_checkpoint(ckpt)
        cfg = config or on_this_machine(train_cfg)
        check_config(cfg)
        device = select_device(cfg.train.device)
        net.to(device).eval()
        window = SlidingWindow(
            net,
            plan.patch_size,
            shape,
            int(ckpt["num_classes"]),
            overlap=cfg.predict.overlap,
            batch=cfg.predict.sw_batch_size,
            device=device,
            amp_dtype=autocast_dtype(device, cfg.train.amp),
            flips=cfg.predict.tta,
        )
        calibration = calibration_from_history(ckpt.get("history", []), ckpt.get("best_step", -1))
        return cls(window, cfg, stats, calibration, spacing)

    @classmethod
    def for_scan(
        cls, scan: Scan, model: str | os.PathLike, config: Config | None = None
    ) -> Predictor:
        """The predictor of a model (folder, checkpoint or bundle) for ``scan``; a clear
        error when the model was trained for other classes."""
        ckpt = load_checkpoint(model)
        num_classes = int(ckpt["num_classes"])
        if num_classes != scan.num_classes:
            raise ScanError(
                f"the model predicts {num_classes - 1} class(es) but {scan.path.name} has "
                f"{scan.num_classes - 1}: use a model trained for these classes"
            )
        stats = intensity_stats(scan.image)
        return cls.load(ckpt, scan.shape, scan.spacing, stats, config)

    @property
    def radius(self) -> int:
        """Slices on each side that the risk map's smoothing needs."""
        return smoothing_radius(SIGMA_MM, self.spacing[0])

    def results(
        self,
        read_image: Callable[[int, int], np.ndarray],
        read_annotations: Callable[[int, int], np.ndarray],
        z0: int,
        z1: int,
        step: int,
    ) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
        """Prediction, foreground probability and risk of slices ``z0:z1``, in pieces cut at
        the multiples of ``step`` (the results' chunk depth: each piece fills whole chunks).

        ``read_image(a, b)`` gives raw image slices, ``read_annotations(a, b)`` annotations.
        The window rows and the risk's smoothing see exactly the slices they would see on the
        whole volume, so pieces computed apart equal one run over the scan.
        """
        depth, r = self.window.shape[0], self.radius
        c0, c1 = max(0, z0 - r), min(depth, z1 + r)
        data = self.cfg.data

        def read(a: int, b: int) -> np.ndarray:
            return normalise(read_image(a, b), data, stats=self.stats)

        _, ny, nx = self.window.shape
        held = _Held(2 * r + step + self.window.patch[0] + 1, (ny, nx), c0)
        pieces = chunk_ranges(z0, z1, step)
        e0, e1 = next(pieces)
        for slab in self.window.stream(read, c0, c1):
            held.add(slab.scores)
            while e1 > 0 and slab.z1 >= min(depth, e1 + r):
                a, b = max(0, e0 - r), min(depth, e1 + r)
                keep = slice(e0 - a, e1 - a)
                margin, labels = _margin_labels(held.get(a, b))
                risk = self._risk(margin, labels, read_annotations(a, b), keep)
                yield (
                    e0,
                    e1,
                    {
                        "prediction": labels[keep],
                        "probability": _probability(held.get(e0, e1)),
                        "risk": risk,
                    },
                )
                del margin, labels
                held.drop_below(e1 - r)  # what no later piece's smoothing reads
                e0, e1 = next(pieces, (0, 0))

    def _risk(
        self, margin: np.ndarray, labels: np.ndarray, annotations: np.ndarray, keep: slice
    ) -> np.ndarray:
        """The risk map of the slices ``keep`` of a block, in bands of rows (each with the
        smoothing's context: the same numbers as the whole plane, a fraction of the memory)."""
        # no flip spread: its weight KAPPA is 0 (it only lowered the AUPRC, risk_quality.py)
        assert KAPPA == 0, "the streamed prediction does not compute the flip spread"
        _, ny, nx = margin.shape
        ry = smoothing_radius(SIGMA_MM, self.spacing[1])
        out = np.empty((keep.stop - keep.start, ny, nx), np.float16)
        for y0 in range(0, ny, RISK_BAND):
            y1 = min(ny, y0 + RISK_BAND)
            a, b = max(0, y0 - ry), min(ny, y1 + ry)
            band = risk_map(
                margin[:, a:b],
                labels[:, a:b],
                self.calibration,
                annotations=annotations[:, a:b],
                spacing=self.spacing,
            )
            out[:, y0:y1] = band[keep, y0 - a : y1 - a]
        return out


RISK_BAND = 128
"""Rows per band of the risk map's computation."""


class _Held:
    """Blended scores of finished slices that the risk map's smoothing still reads:
    preallocated and shifted in place as the pieces move on (one channel for two classes)."""

    def __init__(self, capacity: int, plane: tuple[int, int], z0: int) -> None:
        self.capacity, self.plane = capacity, plane
        self.scores: np.ndarray | None = None  # [C', capacity, Y, X], made by the first add
        self.z0, self.n = z0, 0  # scores[:, :n] hold slices z0:z0+n

    def add(self, scores: torch.Tensor) -> None:
        k = scores.shape[1]
        if self.scores is None:
            self.scores = np.empty((scores.shape[0], self.capacity, *self.plane), np.float32)
        if self.n + k > self.scores.shape[1]:  # never with the planned capacity; stay correct
            self.scores = np.concatenate([self.scores[:, : self.n], scores.numpy()], axis=1)
        else:
            self.scores[:, self.n : self.n + k] = scores.numpy()
        self.n += k

    def get(self, a: int, b: int) -> torch.Tensor:
        assert self.scores is not None and self.z0 <= a <= b <= self.z0 + self.n
        return torch.from_numpy(self.scores[:, a - self.z0 : b - self.z0])

    def drop_below(self, z: int) -> None:
        d = min(self.n, max(0, z - self.z0))
        if d and self.scores is not None:
            for i in range(0, self.n - d, d):  # blocks of d never overlap: no temporary copy
                j = min(i + d, self.n - d)
                self.scores[:, i:j] = self.scores[:, i + d : j + d]
            self.z0, self.n = self.z0 + d, self.n - d


def _margin_labels(scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Foreground margin (float32) and labels (uint8) of blended scores (the margin itself
    for two classes, else the logits)."""
    if scores.shape[0] == 1:
        margin = scores[0]
        return margin.numpy(), (margin > 0).numpy().astype(np.uint8)
    return foreground_margin(scores, 0).numpy(), scores.argmax(0).numpy().astype(np.uint8)


def _probability(scores: torch.Tensor) -> np.ndarray:
    """Foreground probability (float16) of blended scores."""
    if scores.shape[0] == 1:
        return torch.sigmoid(scores[0]).numpy().astype(np.float16)
    return (1 - torch.softmax(scores, 0)[0]).numpy().astype(np.float16)


def on_this_machine(train_cfg: Config) -> Config:
    """A model's training config for predicting here: its device was the machine it trained
    on (``cuda`` for a model trained on a GPU), so prediction picks this machine's best."""
    import copy

    cfg = copy.deepcopy(train_cfg)
    cfg.train.device = "auto"
    return cfg
