"""A planned run (train.steps 0, the default): it times its first steps and validation, then
plans its steps so that the user's wait (reading, training, prediction, figure) is
train.minutes, plans again at every validation and stops at the budget; the same rule on every
device."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.config import Config
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.train import budget
from napari_asymseg.train.budget import FLOOR_STEPS, MAX_FACTOR, VALIDATIONS, plan_steps
from napari_asymseg.train.events import EpochEnd, Finished, Notice, Started, StepEnd
from napari_asymseg.train.loop import fit
from napari_asymseg.train.state import prepare


def test_the_default_run_is_planned_within_a_budget():
    train = Config().train
    assert train.steps == 0 and train.minutes == 2.0


@pytest.mark.parametrize(
    ("budget_s", "elapsed_s", "step_s", "val_s", "done", "reserve_s", "steps"),
    [
        # 2 CPU cores: 0.25 s a step, 1 s a validation: 90 s buy about 290 steps, fewer than
        # the floor: the budget wins (the run says so)
        (90, 6, 0.25, 1.0, 5, 0, 5 + int((90 - 6 - 17) / 0.25)),
        # the prediction and the figure after the run are paid for first
        (180, 6, 0.25, 1.0, 5, 10, 5 + int((180 - 6 - 10 - 17) / 0.25)),
        # twice as fast: the steps the budget buys, under the cap
        (120, 2, 0.12, 0.5, 5, 3, 5 + int((120 - 2 - 3 - 8.5) / 0.12)),
        # a GPU 25 times faster: the cap, and the run ends before the budget
        (90, 1, 0.01, 0.1, 5, 1, MAX_FACTOR * FLOOR_STEPS),
        # a budget spent before the plan (a busy CPU): one more step, then the end
        (10, 30, 0.25, 1.0, 5, 0, 6),
    ],
)
def test_plan_steps(budget_s, elapsed_s, step_s, val_s, done, reserve_s, steps):
    planned, every = plan_steps(budget_s, elapsed_s, step_s, val_s, done, reserve_s=reserve_s)
    assert planned == steps and steps // every + 2 <= VALIDATIONS  # the first and last too


def test_a_planned_run_plans_its_steps_after_its_first_few(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "FLOOR_STEPS", 30)  # a tiny floor keeps the test short
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=0, val_every=10)
    cfg.train.minutes = 0.05  # 3 s
    events = list(fit(scan, cfg, tmp_path / "m"))
    started = events[0]
    assert isinstance(started, Started) and started.steps == 30  # the floor until the plan
    first_val = next(i for i, e in enumerate(events) if isinstance(e, EpochEnd))
    assert events[first_val].step == budget.PLAN_AFTER  # planned early, not at step 10
    note = events[first_val + 1]
    assert isinstance(note, Notice) and note.message.startswith("0.05-minute budget: ")
    # popped up in the dock only when the budget buys fewer steps than a good model takes
    assert note.warn == ("fewer than the 30" in note.message)
    done = events[-1]
    assert isinstance(done, Finished)
    steps = [e for e in events if isinstance(e, StepEnd)]
    assert steps[0].steps == 30 and steps[-1].steps == done.steps_done  # the new total shown
    # the last checkpoint (what a resume reads; best.pt holds the plan of its own step)
    saved = load_checkpoint(tmp_path / "m" / "checkpoint.pt")["config"]["train"]
    assert saved["steps"] == done.steps_done  # a resume trains these, no new plan
    assert cfg.train.minutes == 0.05 and cfg.train.steps == 0  # the caller's config as given
    assert len([e for e in events if isinstance(e, EpochEnd)]) <= VALIDATIONS
    # a resume trains the planned steps: no new plan
    resumed = prepare(scan, cfg, tmp_path / "m", init=None, resume=True, world=None)
    assert resumed.cfg.train.steps == done.steps_done and resumed.step == done.steps_done


class FakeTime:
    """A clock the test moves: each training step takes what the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def strftime(self, *args):
        import time

        return time.strftime(*args)


def test_a_run_whose_steps_slow_down_still_ends_within_its_budget(tmp_path, monkeypatch):
    """Another program takes the CPU after the plan: the steps become 10 times slower. The
    run plans again at its validations and stops at the budget (counted on a fake clock)."""
    from napari_asymseg.train import loop

    clock = FakeTime()
    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(budget, "time", clock)
    monkeypatch.setattr(budget, "predict_seconds", lambda run: 2.0)
    real_step = loop.train_step

    def timed_step(run):
        event = real_step(run)
        seconds = 0.1 if run.step <= 40 else 1.0  # slower from step 41 on
        clock.now += seconds
        return replace(event, seconds=seconds) if isinstance(event, StepEnd) else event

    monkeypatch.setattr(loop, "train_step", timed_step)
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=0, val_every=10)
    cfg.data.val_fraction = 0.0  # validations take no time on the fake clock
    cfg.train.minutes = 0.5  # 30 s: 0.1 s a step would buy about 280 steps
    events = list(fit(scan, cfg, tmp_path / "m"))
    done = events[-1]
    assert isinstance(done, Finished)
    first_plan = next(e for e in events if isinstance(e, Notice))
    assert "budget: 2" in first_plan.message  # about 280 planned at 0.1 s a step
    warned = [e for e in events if isinstance(e, Notice) and "slower" in e.message]
    assert warned and warned[0].warn
    # the run ends with the prediction's reserve left: within the budget on the fake clock
    assert clock.now - 1000.0 + 2.0 <= 30.0 + 1.0
    assert 40 < done.steps_done < 100


def test_a_budget_buys_more_steps_than_the_floor_on_a_fast_device(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "FLOOR_STEPS", 10)
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=0, val_every=5)
    cfg.train.minutes = 0.2  # 12 s; a tiny step takes 0.02-0.3 s here
    done = [e for e in fit(scan, cfg, tmp_path / "m") if isinstance(e, Finished)][0]
    assert done.steps_done > 10


def test_given_steps_are_trained_exactly_whatever_the_minutes(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=12, val_every=5)
    cfg.train.minutes = 5.0
    events = list(fit(scan, cfg, tmp_path / "m"))
    assert not any(isinstance(e, Notice) and "budget" in e.message for e in events)
    assert events[-1].steps_done == 12


def test_a_planned_run_without_minutes_trains_the_floor(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "FLOOR_STEPS", 8)
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=0, val_every=5)
    cfg.train.minutes = 0.0
    events = list(fit(scan, cfg, tmp_path / "m"))
    assert events[-1].steps_done == 8
    assert load_checkpoint(tmp_path / "m")["config"]["train"]["steps"] == 8


def test_the_command_line_takes_minutes():
    from napari_asymseg.cli.main import build_parser

    args = build_parser("train").parse_args(["train", "s.zarr", "--minutes", "2.5"])
    assert getattr(args, "train.minutes") == 2.5


def test_the_command_line_refuses_steps_and_minutes_together(tmp_path, capsys):
    from napari_asymseg.cli.main import main

    scan = tiny_scan(tmp_path / "s.zarr")
    assert main(["train", str(scan.path), "--steps", "5", "--minutes", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "asymseg: error: --steps trains exactly that many steps and --minutes plans them: "
        "give one of them"
    )
