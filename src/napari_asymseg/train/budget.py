"""A planned training run: the minutes a user gives, turned into steps on this device.

A run with ``train.steps = 0`` (the default) is planned: it trains to its first validation
(``val_every`` steps) toward :data:`FLOOR_STEPS`, times those steps and that validation, then
sets its steps and its validation interval so that the whole run (the steps, and
:data:`VALIDATIONS` validations in all) fits in ``train.minutes`` counted from its start, and
never trains fewer than :data:`FLOOR_STEPS`. One rule for every device: on 2 CPU cores the
default 2 minutes buy 500-700 steps, a GPU trains the most (1080) in less, and a slower CPU
trains the floor and says how long it takes. The learning-rate schedule follows the new total
(it is read at every step, :func:`~napari_asymseg.train.step._lr_at`). The plan is made once:
the run's config then says the planned steps, so its checkpoint, a resume and the quality
estimate's folds train exactly those steps. ``train.steps = N`` trains exactly N steps.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

from napari_asymseg.train.events import Notice

VALIDATIONS = 18
"""Validations in a planned run (one point per validation on each curve)."""
FLOOR_STEPS = 360
"""A planned run never trains fewer steps: the run measured on the real scans
(docs/benchmarks.md); fewer trained worse models there (240 steps: brain1 0.56 against 0.65)."""
MAX_FACTOR = 3
"""A plan never asks for more than this many times :data:`FLOOR_STEPS` (1080 steps). Measured
on the real scans (docs/benchmarks.md): 3 times the steps raised brain1 from 0.63 to 0.76 but
lowered Colin27 from 0.48 to 0.43 (its sensitivity fell, the overfitting Li et al. describe);
more was not measured. A GPU that trains them in less than the budget ends early."""


def plan_steps(
    budget_s: float, elapsed_s: float, step_s: float, val_s: float, done: int
) -> tuple[int, int]:
    """(total steps, validate every) that fill ``budget_s``.

    ``elapsed_s`` have passed and ``done`` steps are trained; a step takes ``step_s`` and a
    validation ``val_s``. The remaining validations are paid first, the rest of the time buys
    steps. At least :data:`FLOOR_STEPS` (and one more than done), at most
    ``MAX_FACTOR * FLOOR_STEPS``.
    """
    remaining = budget_s - elapsed_s - (VALIDATIONS - 1) * val_s
    steps = done + int(max(0.0, remaining) / max(step_s, 1e-6))
    steps = min(max(steps, FLOOR_STEPS, done + 1), MAX_FACTOR * FLOOR_STEPS)
    # at most VALIDATIONS in all: the first (done), those at multiples of ``every``, the last
    return steps, max(1, math.ceil(steps / (VALIDATIONS - 2)))


@dataclass
class Clock:
    """Times a run's steps until its first validation, then plans it (:meth:`after_validation`)."""

    budget_s: float
    start: float
    step_seconds: list[float] = field(default_factory=list)

    @classmethod
    def for_run(cls, run) -> Clock | None:
        """The clock of a planned run (``steps`` 0), which then aims at :data:`FLOOR_STEPS`
        until its plan; None for a run of given steps."""
        train = run.cfg.train
        if train.steps > 0:
            return None
        train.steps = FLOOR_STEPS
        if train.minutes <= 0:  # no budget: the floor
            _save_plan(run, FLOOR_STEPS, train.val_every)
            return None
        return cls(train.minutes * 60.0, run.t0)

    def step(self, seconds: float) -> None:
        self.step_seconds.append(seconds)

    def after_validation(self, run, val_s: float) -> Notice:
        """Plan ``run`` (its config changes in place) and say what the budget buys."""
        train = run.cfg.train
        timed = self.step_seconds[1:] or self.step_seconds  # the first step warms up kernels
        step_s = statistics.median(timed) if timed else 1.0
        elapsed = time.perf_counter() - self.start
        if run.world is not None:  # every rank must plan the same run: the ranks' means
            step_s, val_s, elapsed = (run.world.mean(v) for v in (step_s, val_s, elapsed))
        steps, every = plan_steps(self.budget_s, elapsed, step_s, val_s, run.step)
        train.steps, train.val_every = steps, every
        _save_plan(run, steps, every)
        end = elapsed + (steps - run.step) * step_s + (VALIDATIONS - 1) * val_s
        over = ""
        if end > 1.05 * self.budget_s:
            over = " (more than the budget: fewer would not train a model)"
        elif steps >= MAX_FACTOR * FLOOR_STEPS:
            over = " (the most a planned run trains: more fitted the paint too closely)"
        return Notice(
            f"{train.minutes:g}-minute budget: {steps} steps at {step_s:.2f} s each, a validation "
            f"every {every} ({val_s:.1f} s each); done in about {end / 60:.1f} min{over}",
            warn=end > 1.05 * self.budget_s,  # a run longer than the button says
        )


def _save_plan(run, steps: int, every: int) -> None:
    """What the checkpoints say from now on: a resume trains these steps, no new plan."""
    saved = run.meta["config"]
    saved["train"] = {**saved["train"], "steps": steps, "val_every": every}
