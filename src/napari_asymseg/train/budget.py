"""A training run sized by time: the minutes a user gives, turned into steps on this device.

With ``train.minutes`` > 0 a run trains to its first validation (``val_every`` steps) at the
configured pace, times those steps and that validation, then sets its steps and its
validation interval so that the whole run (the steps, and :data:`VALIDATIONS` validations in
all) fits in the minutes counted from its start. A GPU gets many more steps than a CPU in the
same minutes; the rule is the same. The learning-rate schedule follows the new total (it is
read at every step, :func:`~napari_asymseg.train.step._lr_at`). The plan is made once: the run's
config then says ``minutes = 0`` and the planned steps, so its checkpoint, a resume and the
quality estimate's folds train exactly those steps.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

from napari_asymseg.train.events import Notice

VALIDATIONS = 18
"""Validations in a planned run (one point per validation on each curve)."""
MIN_STEPS = 100
"""Fewer steps do not train a model worth predicting with, whatever the budget."""
MAX_FACTOR = 50
"""A plan never asks for more than this many times the configured steps."""


def plan_steps(
    budget_s: float, elapsed_s: float, step_s: float, val_s: float, done: int, base_steps: int
) -> tuple[int, int]:
    """(total steps, validate every) that fill ``budget_s``.

    ``elapsed_s`` have passed and ``done`` steps are trained; a step takes ``step_s`` and a
    validation ``val_s``. The remaining validations are paid first, the rest of the time buys
    steps. At least :data:`MIN_STEPS` (and one more than done), at most
    ``MAX_FACTOR * base_steps``.
    """
    remaining = budget_s - elapsed_s - (VALIDATIONS - 1) * val_s
    steps = done + int(max(0.0, remaining) / max(step_s, 1e-6))
    steps = min(max(steps, MIN_STEPS, done + 1), MAX_FACTOR * base_steps)
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
        minutes = run.cfg.train.minutes
        return cls(minutes * 60.0, run.t0) if minutes > 0 else None

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
        minutes = train.minutes
        steps, every = plan_steps(self.budget_s, elapsed, step_s, val_s, run.step, train.steps)
        train.steps, train.val_every, train.minutes = steps, every, 0.0
        # what the checkpoints say from now on: a resume trains these steps, no new plan
        saved = run.meta["config"]
        saved["train"] = {**saved["train"], "steps": steps, "val_every": every, "minutes": 0.0}
        end = elapsed + (steps - run.step) * step_s + (VALIDATIONS - 1) * val_s
        over = " (more than the budget: fewer would not train a model)"
        over = over if end > 1.05 * self.budget_s else ""
        return Notice(
            f"{minutes:g}-minute budget: {steps} steps at {step_s:.2f} s each, a validation "
            f"every {every} ({val_s:.1f} s each); done in about {end / 60:.1f} min{over}"
        )
