"""Training data from a scan: normalisation, a validation split, and patch sampling.

Sparse annotations are the norm: a few slices or regions are labelled and the rest is ``0``
(not annotated), which becomes ``ignore_index = -1`` for the loss. Validation uses annotated
voxels the model never trains on: whole annotated slices (or slabs of dense annotations) are
held out, so the metrics measure generalisation to unseen slices. With few painted lesion
slices nothing is held out (:data:`MIN_FG_GROUPS_TO_VALIDATE`): one of two lesion slices is
half the lesion evidence.

The unpainted voxels teach too (``data.unpainted``): each patch labels a share of them with a
random forest's classes (:mod:`napari_asymseg.train.forest`) or as background, so the network
sees the anatomy that nobody painted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_asymseg.config import DataConfig
from napari_asymseg.errors import ScanError
from napari_asymseg.store import annotations as codes
from napari_asymseg.store.annotations import IGNORE  # also imported from here by others
from napari_asymseg.store.scan import Scan, read


def intensity_stats(image: Any) -> tuple[float, float]:
    """Mean and std of a scan's intensities, from every second voxel along each axis.

    A strided read is cheap on a large zarr scan and gives training (whole scan in memory)
    and prediction (slab by slab) exactly the same statistics.
    """
    sample = np.asarray(image[::2, ::2, ::2], dtype=np.float32)
    return float(sample.mean()), float(sample.std())


def normalise(image: Any, cfg: DataConfig, stats: tuple[float, float] | None = None) -> np.ndarray:
    """Float32 intensities: z-score (with the scan's ``stats``), or a CT window to [-1, 1]."""
    image = np.asarray(image, dtype=np.float32)
    if cfg.normalisation == "window":
        lo, hi = cfg.window
        return np.clip((image - lo) / max(hi - lo, 1e-6) * 2 - 1, -1, 1).astype(np.float32)
    if cfg.normalisation != "zscore":
        raise ScanError(f"unknown normalisation {cfg.normalisation!r}: use zscore or window")
    mean, std = stats if stats is not None else intensity_stats(image)
    return ((image - mean) / max(std, 1e-6)).astype(np.float32)


def annotations_to_target(annotations: np.ndarray) -> np.ndarray:
    """Annotation codes -> class indices with ``IGNORE`` where not annotated (the codec's
    :func:`~napari_asymseg.store.annotations.to_target`)."""
    return codes.to_target(annotations)


def annotation_stats(annotations: Any, classes: tuple[str, ...]) -> dict[str, Any]:
    """Annotated voxels per class name, foreground fraction and imbalance (background voxels
    per foreground voxel; None without foreground), as the dock shows them."""
    n = codes.counts(annotations, len(classes))
    annotated, foreground = n["annotated"], n["foreground"]
    return {
        "annotated": annotated,
        "background": n["background"],
        "per_class": {name: n["per_class"][k] for k, name in enumerate(classes, start=1)},
        "fg_fraction": foreground / annotated if annotated else 0.0,
        "imbalance": n["background"] / foreground if foreground else None,
    }


def annotation_hash(annotations: np.ndarray) -> str:
    """Short content hash of the annotations, stored with every checkpoint and bundle."""
    return hashlib.sha256(np.ascontiguousarray(annotations).tobytes()).hexdigest()[:16]


MIN_FG_GROUPS_TO_VALIDATE = 3
"""Hold slices out for validation only when this many separate runs of lesion slices are
painted, so that training keeps at least two: with two, holding one out halves what the
network learns from (brain1: unpainted
sensitivity 0.29 with one held out, 0.72 without, docs/training.md)."""

WEAK = 1000
"""Offset of the unpainted voxels' labels in the sampler's combined target."""


def split_validation(
    target: np.ndarray, val_fraction: float, seed: int, group_depth: int = 8
) -> tuple[np.ndarray, np.ndarray | None]:
    """Hold out whole annotated slices (or slabs of ``group_depth`` slices) for validation.

    Returns ``(train, val)`` targets of the scan's shape; ``val`` is None when there is too
    little annotation to hold any foreground out (fewer than
    :data:`MIN_FG_GROUPS_TO_VALIDATE` runs of foreground slices). Both keep foreground
    whenever the annotation allows it, since a validation set without foreground measures
    nothing.
    """
    annotated = np.flatnonzero((target >= 0).any(axis=(1, 2)))
    has_fg = np.asarray((target >= 1).any(axis=(1, 2)))
    groups: list[list[int]] = []
    for z in annotated:
        if groups and z == groups[-1][-1] + 1 and len(groups[-1]) < group_depth:
            groups[-1].append(int(z))
        else:
            groups.append([int(z)])
    fg_groups = [g for g in groups if has_fg[g].any()]
    if len(fg_groups) < MIN_FG_GROUPS_TO_VALIDATE or val_fraction <= 0:
        return target, None
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(val_fraction * len(groups))))
    n_val_fg = min(len(fg_groups) - 1, max(1, int(round(val_fraction * len(fg_groups)))))
    order = rng.permutation(len(fg_groups))
    val_groups = [fg_groups[i] for i in order[:n_val_fg]]
    others = [g for g in groups if g not in val_groups and g not in fg_groups]
    for i in rng.permutation(len(others))[: max(0, n_val - n_val_fg)]:
        val_groups.append(others[i])
    val_slices = sorted(z for g in val_groups for z in g)
    train, val = target.copy(), np.full_like(target, IGNORE)
    val[val_slices] = target[val_slices]
    train[val_slices] = IGNORE
    return train, val


@dataclass
class ScanData:
    """A scan prepared for training: normalised image, train/val targets, class count."""

    image: np.ndarray
    train: np.ndarray
    val: np.ndarray | None
    num_classes: int
    spacing: tuple[float, float, float]
    annotations_hash: str
    unpainted: np.ndarray | None = None
    """Labels of the voxels nobody painted (class indices, ``IGNORE`` elsewhere), or None."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """The scan's shape (what the network's patch is planned for)."""
        return tuple(self.image.shape)

    @property
    def train_voxels(self) -> int:
        """Painted voxels the network trains on."""
        return int((self.train >= 0).sum())

    @classmethod
    def from_scan(
        cls, scan: Scan, cfg: DataConfig, seed: int = 0, annotations: np.ndarray | None = None
    ) -> ScanData:
        """Load and check a scan's image and annotations (or ``annotations``) for training.

        Raises
        ------
        ScanError
            When nothing, or no foreground, is annotated.
        """
        if annotations is None:
            annotations = scan.read_annotations()
        counts = codes.counts(annotations)
        if counts["annotated"] == 0:
            raise ScanError(
                f"{scan.path.name} has no annotations: paint a few slices (background and "
                "foreground) before training"
            )
        if counts["foreground"] == 0:
            raise ScanError(
                f"{scan.path.name} has no foreground annotated: paint at least one "
                f"{scan.classes[0]} region before training"
            )
        if counts["background"] == 0:  # a model that never saw background calls all foreground
            raise ScanError(
                f"{scan.path.name} has no background annotated: paint background "
                f"(label {codes.BACKGROUND}) around the {scan.classes[0]} before training"
            )
        target = annotations_to_target(annotations)
        train, val = split_validation(target, cfg.val_fraction, seed)
        image = normalise(read(scan.image), cfg)
        return cls(
            image=image,
            train=train,
            val=val,
            num_classes=scan.num_classes,
            spacing=scan.spacing,
            annotations_hash=annotation_hash(annotations),
            unpainted=unpainted_labels(image, train, annotations, cfg, seed, scan.spacing),
        )


def unpainted_labels(
    image: np.ndarray,
    train: np.ndarray,
    annotations: np.ndarray,
    cfg: DataConfig,
    seed: int,
    spacing: tuple[float, float, float] | None = None,
) -> np.ndarray | None:
    """What the unpainted voxels teach (``cfg.unpainted``): the forest's classes (``shape``:
    overruled between painted lesion slices by the interpolated shape, train/shape_teacher.py),
    background, or nothing (None). Painted voxels, held-out ones included, are ``IGNORE``."""
    if cfg.unpainted == "ignore":
        return None
    unpainted = np.asarray(annotations) == codes.NOT_ANNOTATED
    if cfg.unpainted == "background":
        return np.where(unpainted, 0, IGNORE).astype(np.int16)
    from napari_asymseg.train.forest import forest_labels

    labels = forest_labels(image, train, seed=seed)
    if cfg.unpainted == "shape":
        from napari_asymseg.train.shape_teacher import shape_labels

        labels = shape_labels(labels, train, spacing)
    return np.where(unpainted, labels, IGNORE).astype(np.int16)


class PatchSampler:
    """Draw training patches around annotated voxels, a share ``p_fg`` centred on foreground.

    The scan is held in memory and patches are cut with numpy: on a 2-core machine a
    DataLoader's worker processes would compete with the training step for the same cores.
    """

    def __init__(
        self,
        data: ScanData,
        patch_size: tuple[int, int, int],
        cfg: DataConfig,
        seed: int = 0,
        max_centres: int = 1_000_000,
    ) -> None:
        self.data, self.patch, self.cfg = data, tuple(patch_size), cfg
        self.rng = np.random.default_rng(seed)
        self.fg = self._centres(data.train >= 1, max_centres)
        self.any = self._centres(data.train >= 0, max_centres)
        self.target = data.train  # the painted classes, and the unpainted ones offset by WEAK
        self.weak = data.unpainted is not None
        if data.unpainted is not None:
            self.target = np.where(data.unpainted >= 0, data.unpainted + WEAK, data.train)
        self._augment = _augmentation(seed) if cfg.augment else None

    def _centres(self, mask: np.ndarray, limit: int) -> np.ndarray:
        idx = np.flatnonzero(mask)
        if idx.size > limit:  # a dense annotation of a large scan: a random subset suffices
            idx = self.rng.choice(idx, limit, replace=False)
        return np.stack(np.unravel_index(idx, mask.shape), axis=1) if idx.size else idx

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch ``(x [B, 1, *P] float32, y [B, *P] int64)``."""
        xs, ys = [], []
        fg_drawn = False
        for i in range(batch_size):
            on_fg = self.has_fg and self.rng.random() < self.cfg.p_fg
            if self.cfg.fg_every_batch and i == batch_size - 1 and not fg_drawn:
                on_fg = self.has_fg  # no batch without lesion: Dice needs one to score
            fg_drawn |= on_fg
            x, y = self._patch(on_fg)
            if self._augment is not None and (on_fg or self.rng.random() < self.cfg.asym_augment_p):
                out = self._augment({"image": x[None], "label": y[None]})
                x, y = np.asarray(out["image"])[0], np.asarray(out["label"])[0]
            xs.append(x)
            ys.append(y)
        x_t = torch.from_numpy(np.stack(xs)[:, None].astype(np.float32))
        y_t = torch.from_numpy(np.stack(ys).astype(np.int64))
        return x_t, y_t

    @property
    def has_fg(self) -> bool:
        """Whether any foreground is there to centre a patch on."""
        return len(self.fg) > 0

    def _patch(self, on_fg: bool) -> tuple[np.ndarray, np.ndarray]:
        """One patch: on the painted foreground, on any painted voxel, or (``p_anywhere``)
        anywhere in the scan: the anatomy far from the paint."""
        if on_fg or self.rng.random() >= self.cfg.p_anywhere:
            pool = self.fg if on_fg else self.any
            centre = pool[self.rng.integers(len(pool))]
        else:
            centre = np.array([self.rng.integers(n) for n in self.data.image.shape])
        x, y = crop(self.data.image, self.target, centre, self.patch, self.rng)
        return x, self.weak_labels(y)

    def weak_labels(self, y: np.ndarray) -> np.ndarray:
        """The patch's target: the painted classes, a random ``unpainted_share`` of the
        unpainted voxels' labels (offset by :data:`WEAK`), ``IGNORE`` elsewhere."""
        if not self.weak:
            return y
        weak = y >= WEAK
        taken = weak & (self.rng.random(y.shape) < self.cfg.unpainted_share)
        return np.where(taken, y - WEAK, np.where(weak, IGNORE, y)).astype(y.dtype)


def crop(
    image: np.ndarray,
    target: np.ndarray,
    centre: np.ndarray,
    patch: tuple[int, ...],
    rng: np.random.Generator | None = None,
    fill: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a patch containing ``centre`` (jittered by up to a quarter patch), padding at the
    borders: the image with ``fill`` (its minimum by default), the target with ``IGNORE``.
    Works on arrays that read on slicing (memory maps): only the patch is read."""
    starts, pads = [], []
    for c, p, n in zip(centre, patch, image.shape, strict=True):
        jitter = int(rng.integers(-(p // 4), p // 4 + 1)) if rng is not None else 0
        start = int(c) - p // 2 + jitter
        start = min(max(start, 0), max(n - p, 0))
        starts.append(start)
        pads.append(max(0, p - n))
    region = tuple(slice(s, s + p) for s, p in zip(starts, patch, strict=True))
    x, y = np.asarray(image[region]), np.asarray(target[region])
    if any(pads):
        width = [(0, q) for q in pads]
        x = np.pad(x, width, constant_values=float(image.min()) if fill is None else fill)
        y = np.pad(y, width, constant_values=IGNORE)
    return x, y


def _augmentation(seed: int) -> Any:
    from monai.transforms import (
        Compose,
        RandFlipd,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    # in-plane flips only: the slice axis of a clinical scan is not symmetric in spacing
    aug = Compose(
        [
            RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
            RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=2),
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            RandGaussianNoised(keys="image", prob=0.3, std=0.05),
        ]
    )
    aug.set_random_state(seed=seed)
    return aug
