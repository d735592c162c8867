"""Training sized by time (train.minutes): the run times its first steps and validation, then
plans its steps; the same rule on every device."""

from __future__ import annotations

import pytest

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.train.budget import MAX_FACTOR, MIN_STEPS, VALIDATIONS, plan_steps
from napari_asymseg.train.estimate import _as_planned
from napari_asymseg.train.events import EpochEnd, Finished, Notice, StepEnd
from napari_asymseg.train.loop import fit


@pytest.mark.parametrize(
    ("budget_s", "elapsed_s", "step_s", "val_s", "done", "base", "steps"),
    [
        # a 2-core CPU: 0.25 s a step, 1 s a validation: 90 s buy about 290 steps
        (90, 6, 0.25, 1.0, 20, 360, 20 + int((90 - 6 - 17) / 0.25)),
        # a GPU 250 times faster: capped at MAX_FACTOR times the configured steps
        (90, 1, 0.001, 0.1, 20, 360, MAX_FACTOR * 360),
        # a budget spent before the first validation: still a model worth the name
        (10, 30, 0.25, 1.0, 20, 360, MIN_STEPS),
    ],
)
def test_plan_steps(budget_s, elapsed_s, step_s, val_s, done, base, steps):
    planned, every = plan_steps(budget_s, elapsed_s, step_s, val_s, done, base)
    assert planned == steps and steps // every + 2 <= VALIDATIONS  # the first and last too


def test_a_run_with_minutes_plans_its_steps_at_the_first_validation(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=30, val_every=5)
    cfg.train.minutes = 0.05  # 3 s: less than 100 steps take here, so the floor decides
    events = list(fit(scan, cfg, tmp_path / "m"))
    first_val = next(i for i, e in enumerate(events) if isinstance(e, EpochEnd))
    note = events[first_val + 1]
    assert isinstance(note, Notice) and note.message.startswith("0.05-minute budget: ")
    done = events[-1]
    assert isinstance(done, Finished) and done.steps_done >= MIN_STEPS
    steps = [e for e in events if isinstance(e, StepEnd)]
    assert steps[0].steps == 30 and steps[-1].steps == done.steps_done  # the new total shown
    saved = load_checkpoint(tmp_path / "m")["config"]["train"]
    assert saved["minutes"] == 0 and saved["steps"] == done.steps_done  # a resume keeps it
    assert cfg.train.minutes == 0.05 and cfg.train.steps == 30  # the caller's config as given
    vals = [e for e in events if isinstance(e, EpochEnd)]
    assert len(vals) <= VALIDATIONS
    # the quality estimate's folds train the planned steps, not a budget each
    folds = _as_planned(cfg, tmp_path / "m")
    assert folds is not None and (folds.train.steps, folds.train.minutes) == (done.steps_done, 0)


def test_the_command_line_takes_minutes():
    from napari_asymseg.cli.main import build_parser

    args = build_parser("train").parse_args(["train", "s.zarr", "--minutes", "2.5"])
    assert getattr(args, "train.minutes") == 2.5
