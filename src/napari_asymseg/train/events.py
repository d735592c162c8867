"""train.events."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# ------------------------------------------------------------------------------------ events
@dataclass(frozen=True)
class Started:
    device: str
    amp: str
    parameters: int
    patch_size: tuple[int, int, int]
    steps: int
    start_step: int
    train_voxels: int
    val_voxels: int


@dataclass(frozen=True)
class StepEnd:
    step: int
    steps: int
    loss: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class EpochEnd:
    """A validation: one point on every curve."""

    step: int
    epoch: int
    train_loss: float
    val_loss: float
    dsc: float
    sensitivity: float
    precision: float
    fbeta: float
    logit_shift: float
    train_margin: float
    val_margin: float
    train_hist: list[int] = field(default_factory=list)
    val_hist: list[int] = field(default_factory=list)
    best: bool = False
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)
    preview: np.ndarray | None = field(default=None, compare=False, repr=False)
    """Foreground probability of the validated slab, for a live overlay."""
    preview_z0: int = 0
    calibration: dict[str, float] | None = None
    """Platt fit of P(foreground | margin) on the held-out voxels (for the risk map)."""


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the run (e.g. a memory fallback)."""

    message: str


@dataclass(frozen=True)
class Finished:
    model_dir: str
    best_step: int
    best_dsc: float
    steps_done: int
    stopped_early: bool
    seconds: float
