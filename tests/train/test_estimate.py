"""Cross-validation over the painted slices (opt-in, train.estimate), and what one Train does:
fit, predict, the quality figure."""

import json
import math

import numpy as np

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.evaluate.figure import Figure
from napari_asymseg.infer.predict import PredictionDone
from napari_asymseg.store import annotations as codes
from napari_asymseg.train.estimate import (
    FoldDone,
    QualityEstimate,
    estimate_quality,
    folds_of,
    train_and_estimate,
)
from napari_asymseg.train.events import Finished, StepEnd
from napari_asymseg.train.runs import QUALITY, QUALITY_CV


def _paint(shape, lesion, empty):
    ann = np.zeros(shape, np.uint8)
    for z in lesion:
        ann[z] = codes.BACKGROUND
        ann[z, 2:4, 2:4] = codes.code_of_class(1)
    for z in empty:
        ann[z] = codes.BACKGROUND
    return ann


def test_folds_leave_out_runs_of_lesion_slices():
    # brain1's protocol: lesion on 12 and 16, slice 5 without
    assert folds_of(_paint((25, 8, 8), (12, 16), (5,))) == [[12], [5, 16]]
    # adjacent lesion slices stay together; at most three folds
    folds = folds_of(_paint((40, 8, 8), (3, 4, 10, 20, 30), (35,)))
    assert len(folds) == 3 and [3, 4] in [f[:2] for f in folds]
    assert sorted(z for f in folds for z in f) == [3, 4, 10, 20, 30, 35]
    assert folds_of(_paint((25, 8, 8), (12, 13), (5,))) == []  # one run: nothing to spare


def test_estimate_scores_what_each_fold_did_not_see(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=20)
    cfg.train.estimate = True  # opt-in: the quality figure needs no training
    events = list(train_and_estimate(scan, cfg, tmp_path / "m"))
    done = next(e for e in events if isinstance(e, Finished))
    folds = [e for e in events if isinstance(e, FoldDone)]
    estimate = events[-1]
    assert isinstance(estimate, QualityEstimate)
    assert [f.fold for f in folds] == [1, 2, 3] and estimate.folds == 3
    # the folds train as long as the model: their steps come after the model's
    after = events[events.index(done) :]
    assert sum(isinstance(e, StepEnd) for e in after) == 3 * cfg.train.steps
    assert 0.3 < estimate.dsc <= 1 and 0 < estimate.sensitivity <= 1
    saved = json.loads((tmp_path / "m" / QUALITY_CV).read_text())
    assert saved["dsc"] == estimate.dsc and saved["folds"] == 3
    assert "estimated DSC on unpainted slices" in estimate.line()


def test_estimate_says_what_to_paint_when_it_cannot(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    ann = scan.read_annotations()
    ann[[3, 5, 8, 11, 12]] = codes.NOT_ANNOTATED  # one lesion slice (4) left
    scan.write_annotations(ann)
    events = list(estimate_quality(scan, tiny_config(steps=5), model_dir=tmp_path))
    estimate = events[-1]
    assert math.isnan(estimate.dsc) and estimate.folds == 0
    assert "second slice" in estimate.line()
    assert json.loads((tmp_path / QUALITY_CV).read_text())["dsc"] is None  # JSON has no NaN


def test_train_predicts_and_gives_the_figure_without_more_training(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=6)
    assert not type(cfg.train)().estimate  # cross-validation is opt-in
    gen = train_and_estimate(scan, cfg, tmp_path / "m")
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        returned = stop.value
    done = next(i for i, e in enumerate(events) if isinstance(e, Finished))
    assert not any(isinstance(e, StepEnd) for e in events[done:])  # no fold trains
    predicted = events[-1]
    assert isinstance(predicted, PredictionDone) and isinstance(predicted.figure, Figure)
    assert returned is predicted.figure and predicted.figure.known
    assert scan.result("prediction") is not None  # the scan holds what the figure judged
    saved = json.loads((tmp_path / "m" / QUALITY).read_text())
    assert saved["dsc"] == predicted.figure.dsc and saved["low"] <= saved["dsc"] <= saved["high"]
    assert saved["scan"] == str(scan.path)
