"""``asymseg predict STUDY`` and ``asymseg review STUDY``: the whole study from the command line."""

from __future__ import annotations

import json
import shutil

import pytest

from napari_asymseg.cli.main import main
from napari_asymseg.review import queue as rq
from napari_asymseg.store.annotations import BACKGROUND
from napari_asymseg.store.scan import Scan
from study_helpers import NAMES, fake_results, small_study, tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    return tiny_model(folder / "m", small_study(folder / "train").scan_path("brain1"))


def test_predict_study_predicts_every_scan_and_warns_of_a_missing_one(tmp_path, model, capsys):
    study = small_study(tmp_path)
    shutil.rmtree(study.scan_path("brain2"))
    assert main(["predict", str(study.path), "--model", str(model)]) == 0
    out, err = capsys.readouterr()
    assert "scan 1 of 3: brain1" in out and "scan 3 of 3: brain3" in out
    assert out.count("prediction written to") == 2
    assert "2 of 3 scan(s) of study predicted" in out
    (warning,) = [line for line in err.splitlines() if "warning" in line]
    assert warning.startswith("asymseg: warning: brain2 skipped: ") and "missing" in warning
    assert "Traceback" not in err
    for name in ("brain1", "brain3"):
        assert Scan.open(study.scan_path(name)).result("prediction") is not None


def test_predict_study_without_model_uses_the_study_s_current_one(tmp_path, model, capsys):
    from napari_asymseg.train.runs import new_model_dir

    study = small_study(tmp_path)
    assert main(["predict", str(study.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no model yet" in err
    shutil.copytree(model, new_model_dir(study.path))
    assert main(["predict", str(study.path)]) == 0
    assert all(s.predicted for s in study.status())


def test_predict_a_plain_scan_without_model_is_one_line(tmp_path, capsys):
    import numpy as np

    scan = Scan.create(tmp_path / "s.zarr", np.zeros((4, 8, 8), np.float32))
    assert main(["predict", str(scan.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model" in err and "Traceback" not in err


def test_a_failing_scan_ends_in_exit_2_after_the_others(tmp_path, model, capsys):
    import numpy as np

    study = small_study(tmp_path)
    path = study.scan_path("brain1")
    shutil.rmtree(path)
    Scan.create(path, np.zeros((16, 32, 32), np.float32), classes=("a", "b"))
    assert main(["predict", str(study.path), "--model", str(model)]) == 2
    out, err = capsys.readouterr()
    assert "2 of 3 scan(s)" in out
    assert "asymseg: warning: brain1 skipped:" in err
    assert (
        err.strip().splitlines()[-1].startswith("asymseg: error: 1 scan(s) not predicted: brain1")
    )


@pytest.fixture
def reviewed(tmp_path):
    study = small_study(tmp_path)
    fake_results(Scan.open(study.scan_path("brain1")), miss_voxels=36, alarm_voxels=30)
    fake_results(Scan.open(study.scan_path("brain2")), miss_voxels=100, alarm_voxels=8)
    return study


def test_review_study_lists_the_queue_across_scans(reviewed, tmp_path, capsys):
    out_json = tmp_path / "q.json"
    assert main(["review", str(reviewed.path), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "4 open item(s) in 2 of 2 predicted scan(s)" in out
    rows = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert [r.split()[0] for r in rows] == ["brain2", "brain1", "brain1", "brain2"]
    items = json.loads(out_json.read_text())["items"]
    assert [i["scan"] for i in items] == ["brain2", "brain1", "brain1", "brain2"]
    assert [i["gain"] for i in items] == sorted((i["gain"] for i in items), reverse=True)


def test_review_study_answers_into_the_named_scan(reviewed, capsys):
    main(["review", str(reviewed.path)])
    capsys.readouterr()
    alarm = next(
        i
        for i in rq.stored_queue(Scan.open(reviewed.scan_path("brain2"))).open
        if i.kind == rq.FALSE_ALARM
    )
    code = main(["review", str(reviewed.path), "--scan", "brain2", "--reject", str(alarm.id)])
    out = capsys.readouterr().out
    assert code == 0 and f"brain2 item {alarm.id} (false alarm" in out
    brain2 = Scan.open(reviewed.scan_path("brain2"))
    assert brain2.read_annotations()[alarm.center] == BACKGROUND
    assert rq.stored_queue(brain2).item(alarm.id).status == rq.NOT_LESION
    assert "3 open item(s)" in out


def test_review_study_refuses_answers_without_a_scan_or_twice(reviewed, capsys):
    main(["review", str(reviewed.path)])
    capsys.readouterr()
    before = Scan.open(reviewed.scan_path("brain1")).read_annotations()
    assert main(["review", str(reviewed.path), "--accept", "1"]) == 2
    assert "--scan NAME" in capsys.readouterr().err
    assert main(["review", str(reviewed.path), "--scan", "brain9", "--accept", "1"]) == 2
    assert "no scan brain9" in capsys.readouterr().err
    args = ["review", str(reviewed.path), "--scan", "brain1", "--reject", "1", "--reject", "1"]
    assert main(args) == 2
    assert "answered twice" in capsys.readouterr().err
    assert (before == Scan.open(reviewed.scan_path("brain1")).read_annotations()).all()


def test_review_a_plain_scan_refuses_scan_option(tmp_path, capsys):
    import numpy as np

    scan = Scan.create(tmp_path / "s.zarr", np.zeros((4, 8, 8), np.float32))
    assert main(["review", str(scan.path), "--scan", "x"]) == 2
    assert "not a study folder" in capsys.readouterr().err


def test_review_study_with_a_model_predicts_it_first(tmp_path, model, capsys):
    study = small_study(tmp_path)
    assert main(["review", str(study.path), "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert out.count("prediction written to") == len(NAMES)
    assert f"of {len(NAMES)} predicted scan(s)" in out
    for name in NAMES:  # each scan's queue ranked on its new prediction
        scan = Scan.open(study.scan_path(name))
        rq.check_current(scan, rq.stored_queue(scan))


def test_review_study_with_a_scan_lists_its_items(reviewed, capsys):
    assert main(["review", str(reviewed.path), "--scan", "brain1"]) == 0
    rows = [
        line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")
    ]
    assert rows == ["brain1", "brain1"]
