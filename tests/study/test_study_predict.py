"""Prediction over a whole study: every scan predicted, the unannotated one included; a missing
or failing scan skipped with one line, never the rest."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_asymseg.errors import ScanError
from napari_asymseg.infer.predict import PredictionDone, WindowDone
from napari_asymseg.store.scan import Scan
from napari_asymseg.study.predict import ScanSkipped, ScanStarts, predict_study
from study_helpers import NAMES, small_study, tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model trained on a scan like the study's (outside it: any model predicts)."""
    folder = tmp_path_factory.mktemp("model")
    study = small_study(folder / "train")
    return tiny_model(folder / "m", study.scan_path("brain1"))


def run(events):
    """The events of a generator, and what it returned."""
    seen = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as stop:
            return seen, stop.value


def test_every_scan_is_predicted_the_unannotated_one_included(tmp_path, model):
    study = small_study(tmp_path)
    assert not Scan.open(study.scan_path("brain3")).read_annotations().any()
    events, outcomes = run(predict_study(study, model))

    starts = [e for e in events if isinstance(e, ScanStarts)]
    assert [(e.name, e.index, e.total) for e in starts] == [
        (n, k, 3) for k, n in enumerate(NAMES, 1)
    ]
    assert starts[0].line() == "scan 1 of 3: brain1"
    done = [e for e in events if isinstance(e, PredictionDone)]
    assert [e.scan for e in done] == [str(study.scan_path(n)) for n in NAMES]
    assert any(isinstance(e, WindowDone) for e in events)  # the single-scan path's progress
    assert [o.name for o in outcomes] == list(NAMES)
    assert all(o.done is not None and not o.problem for o in outcomes)
    for name in NAMES:
        scan = Scan.open(study.scan_path(name))
        assert set(scan.results()) == {"prediction", "probability", "risk"}
        assert scan.result("prediction").shape == scan.shape
    assert all(s.predicted for s in study.status())
    assert outcomes[2].line().startswith("brain3: ")


def test_a_missing_scan_is_skipped_with_one_line_and_the_others_predicted(tmp_path, model):
    study = small_study(tmp_path)
    shutil.rmtree(study.scan_path("brain2"))
    events, outcomes = run(predict_study(study, model))

    skipped = [e for e in events if isinstance(e, ScanSkipped)]
    assert [e.name for e in skipped] == ["brain2"]
    line = skipped[0].line()
    assert "\n" not in line and line.startswith("brain2 skipped: ")
    assert str(study.scan_path("brain2")) in line and "missing" in line
    assert [(o.name, o.done is None) for o in outcomes] == [
        ("brain1", False),
        ("brain2", True),
        ("brain3", False),
    ]
    for name in ("brain1", "brain3"):
        assert Scan.open(study.scan_path(name)).result("prediction") is not None


def test_a_failing_scan_does_not_stop_the_others(tmp_path, model):
    """A scan with other classes than the model's: refused (ScanError), reported, the rest go on."""
    study = small_study(tmp_path)
    path = study.scan_path("brain1")
    shutil.rmtree(path)  # a scan with two lesion classes where brain1 was
    Scan.create(path, np.zeros((16, 32, 32), np.float32), classes=("a", "b"))
    events, outcomes = run(predict_study(study, model))

    assert [e.name for e in events if isinstance(e, ScanSkipped)] == ["brain1"]
    assert "class" in outcomes[0].problem and outcomes[0].done is None
    assert [o.done is not None for o in outcomes[1:]] == [True, True]


def test_names_choose_scans_and_an_unknown_one_is_refused(tmp_path, model):
    study = small_study(tmp_path)
    _events, outcomes = run(predict_study(study, model, names=["brain3"]))
    assert [o.name for o in outcomes] == ["brain3"]
    assert Scan.open(study.scan_path("brain1")).result("prediction") is None
    with pytest.raises(ScanError, match="no scan brain9"):
        next(predict_study(study, model, names=["brain9"]))


def test_without_a_model_the_study_s_current_one_predicts(tmp_path, model):
    from napari_asymseg.train.runs import current_model, new_model_dir

    study = small_study(tmp_path)
    with pytest.raises(ScanError, match="has no model yet"):
        next(predict_study(study))
    run_folder = new_model_dir(study.path)
    shutil.copytree(model, run_folder)  # a finished run of the study's own
    assert current_model(study.path) == run_folder
    _events, outcomes = run(predict_study(study.path, names=["brain2"]))
    assert outcomes[0].done is not None


def test_a_scheduler_sends_each_scan_through_the_dask_path(tmp_path, model, monkeypatch):
    """The dask path ``asymseg predict --dask`` uses, once per scan, with the address given."""
    from napari_asymseg.infer import scaleout

    calls = []

    def fake_dask(scan, model_path, *, config=None, address=None):
        calls.append((scan.path.name, address))
        done = PredictionDone(str(scan.path), 0.0, 0)
        yield done
        return done

    monkeypatch.setattr(scaleout, "predict_dask", fake_dask)
    study = small_study(tmp_path)
    _events, outcomes = run(predict_study(study, model, scheduler="local"))
    assert calls == [(f"{n}.zarr", "local") for n in NAMES]
    assert all(o.done is not None for o in outcomes)


@pytest.mark.slow  # the client waits out its 10 s connect timeout
def test_a_scheduler_out_of_reach_is_one_error_before_any_scan(tmp_path, model):
    study = small_study(tmp_path)
    with pytest.raises(ScanError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9"):
        next(predict_study(study, model, scheduler="tcp://127.0.0.1:9"))
    assert not any(s.predicted for s in study.status())
