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
    assert len(list(model_root(scan.path).iterdir())) == 1
