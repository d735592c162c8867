"""What :func:`napari_asymseg.train.loop.fit` yields: Started, StepEnd per step, EpochEnd per
validation, a Notice when the run changes course, then Finished."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NAN = float("nan")


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
    """A validation: one point on every curve (NaN where there was nothing to measure, e.g.
    the held-out scores of a run without held-out slices)."""

    step: int
    epoch: int
    train_loss: float = NAN
    val_loss: float = NAN
    dsc: float = NAN
    sensitivity: float = NAN
    precision: float = NAN
    fbeta: float = NAN
    logit_shift: float = NAN
    train_margin: float = NAN
    val_margin: float = NAN
    train_hist: list[int] = field(default_factory=list)
    val_hist: list[int] = field(default_factory=list)
    best: bool = False
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)
    preview: np.ndarray | None = field(default=None, compare=False, repr=False)
    """Foreground probability of the validated slab, for a live overlay."""
    preview_z0: int = 0
    calibration: dict[str, float] | None = None
    """Platt fit of P(foreground | margin) on the held-out voxels (for the risk map)."""

    def line(self) -> str:
        """What the CLI and the dock say of it: ``step 40: val DSC 0.812, sensitivity 0.790,
        precision 0.835, logit shift +0.12  (best)``; with nothing held out (every score NaN)
        the training loss alone, never a row of NaNs."""
        if self.dsc != self.dsc:
            return f"step {self.step}: training loss {self.train_loss:.4f} (nothing held out)"
        shift = (
            f", logit shift {self.logit_shift:+.2f}" if self.logit_shift == self.logit_shift else ""
        )
        return (
            f"step {self.step}: val DSC {self.dsc:.3f}, sensitivity {self.sensitivity:.3f}, "
            f"precision {self.precision:.3f}{shift}" + ("  (best)" if self.best else "")
        )


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the run (e.g. a memory fallback)."""

    message: str
    warn: bool = True
    """A change of course the user must see (the dock pops it up); False: news for the
    status line only (a plan that keeps to its budget)."""


@dataclass(frozen=True)
class Finished:
    model_dir: str
    best_step: int
    best_dsc: float
    steps_done: int
    stopped_early: bool
    seconds: float
    baseline_dsc: float = NAN  # the model current at the start, on the same held-out slices
