"""A planned training run: the minutes a user gives are the minutes the user waits.

A run with ``train.steps = 0`` (the default) is planned. The clock starts when the run is
asked for (reading the scan and the forest's weak labels count), and the budget ends when the
quality figure is on screen: it keeps back the time the whole-scan prediction and the figure
will take (:func:`predict_seconds`, one timed forward pass times the windows). The run times
its first :data:`PLAN_AFTER` steps, validates, then sets its steps and its validation interval
so that the rest (the steps, :data:`VALIDATIONS` validations in all, the prediction) ends
within ``train.minutes``. It plans again at every validation with the recent steps' time (a
computer that slows down, another program taking a core, shortens the run), and stops at the
budget whatever the plan said (:meth:`Clock.must_stop`). One rule for every device: on 2 CPU
cores the default 2 minutes buy 500-700 steps, a GPU trains the most (1080) in less. Where the
budget buys fewer than :data:`FLOOR_STEPS`, the run says so at once and still ends on time:
the user asked for minutes, and is told how many a better model would take. The
learning-rate schedule follows the new total (it is read at every step,
:func:`~napari_asymseg.train.step._lr_at`). The run's config then says the steps trained, so
its checkpoint and a resume train exactly those. ``train.steps = N`` trains exactly N steps.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import torch

from napari_asymseg.train.events import Notice

VALIDATIONS = 18
"""Validations in a planned run (one point per validation on each curve)."""
FLOOR_STEPS = 360
"""The steps a planned run aims at until its plan, and the fewest it recommends: the run
measured on the real scans (docs/benchmarks.md); fewer trained worse models there (240 steps:
brain1 0.56 against 0.65). A budget that buys fewer trains fewer and says so."""
MAX_FACTOR = 3
"""A plan never asks for more than this many times :data:`FLOOR_STEPS` (1080 steps). Measured
on the real scans (docs/benchmarks.md): 3 times the steps raised brain1 from 0.63 to 0.76 but
lowered Colin27 from 0.48 to 0.43 (its sensitivity fell, the overfitting Li et al. describe);
more was not measured. A GPU that trains them in less than the budget ends early."""
PLAN_AFTER = 5
"""Steps timed before the first plan (the run's first validation comes then)."""
RECENT = 20
"""Steps whose median time a later plan uses: a slowdown shows within them."""
SHORTER = 0.9
"""A later plan that cuts the steps below this share of the last one is told (a warning)."""


def plan_steps(
    budget_s: float,
    elapsed_s: float,
    step_s: float,
    val_s: float,
    done: int,
    *,
    reserve_s: float = 0.0,
    validations_left: int = VALIDATIONS - 1,
) -> tuple[int, int]:
    """(total steps, validate every) that end within ``budget_s``.

    ``elapsed_s`` have passed and ``done`` steps are trained; a step takes ``step_s``, a
    validation ``val_s``, and what follows the run (the prediction and the figure)
    ``reserve_s``. The remaining validations and the reserve are paid first, the rest of the
    time buys steps: at least one more than done, at most ``MAX_FACTOR * FLOOR_STEPS``.
    """
    remaining = budget_s - elapsed_s - reserve_s - validations_left * val_s
    steps = done + int(max(0.0, remaining) / max(step_s, 1e-6))
    steps = min(max(steps, done + 1), MAX_FACTOR * FLOOR_STEPS)
    # at most VALIDATIONS in all: the first (done), those at multiples of ``every``, the last
    return steps, max(1, math.ceil(steps / (VALIDATIONS - 2)))


@dataclass
class Clock:
    """Times a run's steps, plans it at every validation and stops it at the budget."""

    budget_s: float
    start: float
    step_seconds: list[float] = field(default_factory=list)
    reserve_s: float = 0.0
    val_s: float = 0.0
    validations: int = 0
    planned: int = 0
    """The steps of the last plan (0: not planned yet)."""

    @classmethod
    def for_run(cls, run) -> Clock | None:
        """The clock of a planned run (``steps`` 0), which then aims at :data:`FLOOR_STEPS`
        and validates after :data:`PLAN_AFTER` steps; None for a run of given steps."""
        train = run.cfg.train
        if train.steps > 0:
            return None
        train.steps = FLOOR_STEPS
        if train.minutes <= 0:  # no budget: the floor
            _save_plan(run, FLOOR_STEPS, train.val_every)
            return None
        train.val_every = PLAN_AFTER
        return cls(train.minutes * 60.0, run.t0)

    def step(self, seconds: float) -> None:
        self.step_seconds.append(seconds)

    def _step_s(self) -> float:
        timed = self.step_seconds[1:] or self.step_seconds  # the first step warms up kernels
        return statistics.median(timed[-RECENT:]) if timed else 1.0

    def stop_at_budget(self, run) -> None:
        """End the run after this step (its last validation follows) where one more step, and
        what must follow it, would end after the budget. Under torchrun only the
        validations' plans decide (every rank must agree)."""
        if not self.planned or run.world is not None:
            return
        left = max(0, VALIDATIONS - 1 - self.validations)
        end = time.perf_counter() - self.start + self._step_s() + self.reserve_s
        if end + min(left, 1) * self.val_s > self.budget_s:
            run.cfg.train.steps = run.step
            _save_plan(run, run.step, run.cfg.train.val_every)

    def after_validation(self, run, val_s: float) -> Notice | None:
        """Plan ``run`` again (its config changes in place); what the user should know."""
        train = run.cfg.train
        self.validations += 1
        step_s, elapsed = self._step_s(), time.perf_counter() - self.start
        if not self.planned:
            self.reserve_s = predict_seconds(run)
        if run.world is not None:  # every rank must plan the same run: the ranks' means
            step_s, val_s, elapsed, self.reserve_s = (
                run.world.mean(v) for v in (step_s, val_s, elapsed, self.reserve_s)
            )
        self.val_s = val_s
        left = max(0, VALIDATIONS - 1 - self.validations)
        steps, every = plan_steps(
            self.budget_s, elapsed, step_s, val_s, run.step,
            reserve_s=self.reserve_s, validations_left=left,
        )  # fmt: skip
        first, before = not self.planned, self.planned
        self.planned = steps
        if steps != train.steps:
            train.steps, train.val_every = steps, every if first else train.val_every
            _save_plan(run, steps, train.val_every)
        elif first:
            train.val_every = every
            _save_plan(run, steps, every)
        if first:
            return self._first_notice(run, step_s, val_s, elapsed)
        if steps < SHORTER * before:
            return Notice(
                f"the steps became slower ({step_s:.2f} s each): {steps} steps instead of "
                f"{before}, to end within the {train.minutes:g}-minute budget",
                warn=True,
            )
        return None

    def _first_notice(self, run, step_s: float, val_s: float, elapsed: float) -> Notice:
        train = run.cfg.train
        steps, every = train.steps, train.val_every
        end = elapsed + (steps - run.step) * step_s + (VALIDATIONS - 1) * val_s + self.reserve_s
        head = (
            f"{train.minutes:g}-minute budget: {steps} steps at {step_s:.2f} s each, a "
            f"validation every {every} ({val_s:.1f} s each)"
        )
        if steps < FLOOR_STEPS:
            need = (elapsed + FLOOR_STEPS * step_s + self.reserve_s) / 60
            return Notice(
                f"{head}: fewer than the {FLOOR_STEPS} a good model takes (about {need:.0f} "
                f"min on this computer now); it ends on time: give it more minutes, or close "
                "what else is running",
                warn=True,
            )
        more = " (the most a planned run trains)" if steps >= MAX_FACTOR * FLOOR_STEPS else ""
        return Notice(
            f"{head}; trained, predicted and scored in about {end / 60:.1f} min{more}",
            warn=False,
        )


def predict_seconds(run) -> float:
    """About how long the whole-scan prediction after ``run`` takes: its windows' batches
    times one timed forward pass (the second: the first warms up), with a margin for
    writing the results and the figure."""
    from napari_asymseg.infer.sliding import FLIPS, window_starts

    cfg = run.cfg.predict
    patch, shape = run.plan.patch_size, run.data.shape
    windows = math.prod(
        len(window_starts(max(s, p), p, cfg.overlap)) for s, p in zip(shape, patch, strict=True)
    )
    batches = math.ceil(windows / cfg.sw_batch_size) * (len(FLIPS) if cfg.tta else 1)
    x = torch.zeros((cfg.sw_batch_size, 1, *patch), device=run.device)
    model, seconds = run.model, 0.0
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            torch.autocast(
                run.device.type,
                dtype=run.amp_dtype or torch.float32,
                enabled=run.amp_dtype is not None,
            ),
        ):
            for _ in range(2):
                t0 = time.perf_counter()
                model(x)
                if run.device.type == "cuda":  # the kernels run asynchronously
                    torch.cuda.synchronize(run.device)
                seconds = time.perf_counter() - t0
    finally:
        model.train(was_training)
    return 1.5 * batches * seconds + 1.0


def _save_plan(run, steps: int, every: int) -> None:
    """What the checkpoints say from now on: a resume trains these steps, no new plan."""
    saved = run.meta["config"]
    saved["train"] = {**saved["train"], "steps": steps, "val_every": every}
