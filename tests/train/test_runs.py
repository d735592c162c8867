"""Where a scan's models live (no Qt): model folders beside the scan, newest wins, never reused."""

import time

import pytest
import torch

from napari_asymseg.errors import ScanError
from napari_asymseg.model.checkpoint import BEST
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.train.runs import adopt_model, latest_model, model_root, new_model_dir


def test_model_root_is_beside_the_scan(tmp_path):
    assert model_root(tmp_path / "case.zarr") == tmp_path / "case-models"
    assert model_root(str(tmp_path / "case")) == tmp_path / "case-models"


def test_latest_model_is_the_newest_run_with_a_best_checkpoint(tmp_path):
    scan_path = tmp_path / "case.zarr"
    assert latest_model(scan_path) is None  # no model folder yet
    root = model_root(scan_path)
    for name in ("run-20240101-000000", "run-20240102-000000"):
        (root / name).mkdir(parents=True)
        (root / name / BEST).write_bytes(b"")
    (root / "run-20240103-000000").mkdir()  # a run that never saved a best model
    (root / "other-20240104-000000").mkdir()
    (root / "other-20240104-000000" / BEST).write_bytes(b"")
    assert latest_model(scan_path) == root / "run-20240102-000000"


def test_new_model_dir_never_reuses_a_folder(tmp_path):
    scan_path = tmp_path / "case.zarr"
    first = new_model_dir(scan_path)
    assert first.parent == model_root(scan_path) and first.name.startswith("run-")
    assert not first.exists()  # created by the run that uses it
    first.mkdir(parents=True)
    second = new_model_dir(scan_path)  # within the same second: a numbered sibling
    assert second != first and not second.exists()
    second.mkdir()
    assert new_model_dir(scan_path) not in (first, second)


def test_runs_in_the_same_second_are_numbered(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda _fmt: "20240101-120000")
    scan_path = tmp_path / "case.zarr"
    made = []
    for _ in range(3):
        made.append(new_model_dir(scan_path))
        made[-1].mkdir(parents=True)
    assert [p.name for p in made] == [
        "run-20240101-120000",
        "run-20240101-120000-1",
        "run-20240101-120000-2",
    ]


def test_adopt_model_copies_the_checkpoint_into_a_new_run(tmp_path, scan):
    ckpt = {"num_classes": scan.num_classes, "model": {"w": torch.ones(2)}, "config": {}}
    torch.save(ckpt, tmp_path / "model.pt")
    out = adopt_model(scan, tmp_path / "model.pt")
    assert latest_model(scan.path) == out and (out / BEST).is_file()
    back = load_checkpoint(out)  # the safe path, as the dock loads it
    assert back["num_classes"] == scan.num_classes
    torch.testing.assert_close(back["model"]["w"], torch.ones(2))
    # a model for other classes is refused, and no run folder is made for it
    torch.save({**ckpt, "num_classes": scan.num_classes + 1}, tmp_path / "other.pt")
    with pytest.raises(ScanError, match=r"predicts 2 class\(es\) but scan.zarr has 1"):
        adopt_model(scan, tmp_path / "other.pt")
    assert latest_model(scan.path) == out
    assert len(list(model_root(scan.path).glob("run-*"))) == 1
    from napari_asymseg.train.runs import current_model, read_summary

    assert current_model(scan.path) == out  # loaded on purpose: current, and says so
    assert read_summary(out)["kind"] == "loaded"


def _run(scan_path, name, **summary):
    from napari_asymseg.train.runs import write_summary

    folder = model_root(scan_path) / name
    folder.mkdir(parents=True)
    (folder / BEST).write_bytes(b"")
    if summary:
        write_summary(folder, summary)
    return folder


def test_the_current_run_is_the_chosen_one_else_the_newest(tmp_path):
    from napari_asymseg.train.runs import current_model, list_runs, set_current

    scan_path = tmp_path / "case.zarr"
    assert current_model(scan_path) is None
    first = _run(scan_path, "run-20240101-000000", status="finished", kind="new", best_dsc=0.84)
    _run(scan_path, "run-20240102-000000", status="cancelled", steps_done=40)
    third = _run(scan_path, "run-20240103-000000")  # from before run.json: finished
    assert current_model(scan_path) == third  # no choice stored: the newest (older scans)
    set_current(scan_path, first)
    assert current_model(scan_path) == first
    (third / BEST).unlink()
    (model_root(scan_path) / "current.json").unlink()
    assert current_model(scan_path) == first  # the newest not cancelled
    runs = list_runs(scan_path)
    assert [r.number for r in runs] == [1, 2]
    assert runs[0].line() == "run 1 · new · DSC 0.84" and "cancelled at step 40" in runs[1].line()
    with pytest.raises(ScanError, match="not a model of case.zarr"):
        set_current(scan_path, tmp_path)
    set_current(scan_path, first)
    (first / BEST).unlink()  # the chosen run lost its model: a cancelled one is all there is,
    assert current_model(scan_path) is None  # and it is never current unless chosen


def test_a_run_becomes_current_only_when_it_is_better_or_nothing_is_current(tmp_path):
    from napari_asymseg.train.runs import list_runs, verdict

    scan_path = tmp_path / "case.zarr"
    _run(scan_path, "run-1", status="finished", kind="new", best_dsc=0.84)
    _run(scan_path, "run-2", status="cancelled", kind="new", steps_done=40, best_dsc=0.71)
    _run(scan_path, "run-3", status="finished", kind="new", best_dsc=0.70, baseline_dsc=0.80)
    _run(scan_path, "run-4", status="finished", kind="new", best_dsc=0.86, baseline_dsc=0.80)
    _run(scan_path, "run-5", status="finished", kind="fine-tune", best_dsc=0.8, baseline_dsc=0.8,
         best_step=0)  # fmt: skip
    _run(scan_path, "run-6", status="finished", kind="new", best_dsc=None, baseline_dsc=None)
    one, cancelled, worse, better, idle, unscored = list_runs(scan_path)
    assert verdict(one, None) == (True, "run 1 is the current model (run 1 · new · DSC 0.84)")
    adopt, line = verdict(cancelled, one)
    assert not adopt and line.startswith("run 2 cancelled at step 40: kept run 1 as current")
    adopt, line = verdict(cancelled, None)  # not finished: kept for the user to choose
    assert not adopt and line.endswith("no model is current; Use makes its model so far current")
    adopt, line = verdict(worse, one)
    assert not adopt and "not better than run 1 (0.80 on the same held-out slices)" in line
    assert verdict(better, one)[0]
    assert not verdict(idle, one)[0]
    assert not verdict(unscored, one)[0]  # nothing to compare on, no sign of new paint


def test_a_killed_run_is_listed_as_unfinished_and_never_made_current(tmp_path):
    from engine_helpers import tiny_config, tiny_scan
    from napari_asymseg.train.loop import fit
    from napari_asymseg.train.runs import (
        RUNNING,
        current_model,
        list_runs,
        read_summary,
        write_summary,
    )

    scan = tiny_scan(tmp_path / "case.zarr")
    out = new_model_dir(scan.path)
    gen = fit(scan, tiny_config(steps=1000, val_every=2), out)
    for event in gen:  # the first validation saved a model: then the process is "killed"
        if type(event).__name__ == "EpochEnd":
            break
    summary = read_summary(out)  # what a kill leaves: no finally runs after this point
    assert summary["status"] == RUNNING and summary["steps_done"] == 2
    gen.close()  # (a cancel: it writes "cancelled"; a kill would not)
    write_summary(out, summary)
    killed = list_runs(scan.path)[0]
    assert killed.line() == "run 1 · new · DSC " + f"{killed.best_dsc:.2f} · unfinished at step 2"
    assert current_model(scan.path) is None  # not a finished model: never current by itself


def test_runs_that_cannot_be_compared_keep_the_current_model_unless_they_saw_new_paint(
    tmp_path,
):
    from napari_asymseg.train.runs import list_runs, verdict

    scan_path = tmp_path / "case.zarr"
    _run(scan_path, "run-1", status="finished", kind="new", annotations_hash="a")
    _run(scan_path, "run-2", status="finished", kind="new", annotations_hash="a")
    _run(scan_path, "run-3", status="finished", kind="new", annotations_hash="b")
    _run(scan_path, "run-4", status="finished", kind="new")  # from before the hash was kept
    one, same, more, unknown = list_runs(scan_path)
    adopt, line = verdict(same, one)
    assert not adopt and line.startswith("run 2 could not be compared with run 1")
    adopt, line = verdict(more, one)
    assert adopt and "learned from annotations run 1 never saw" in line
    assert not verdict(unknown, one)[0]
