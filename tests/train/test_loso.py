"""The quality on the next patient: leave one annotated scan out, score it on its paint."""

import math

import numpy as np
import pytest

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.errors import ScanError
from napari_asymseg.study.study import Study
from napari_asymseg.train import loso
from napari_asymseg.train.estimate import painted_counts
from napari_asymseg.train.events import StepEnd
from napari_asymseg.train.loso import LOSO, ScanLeftOut, leave_one_scan_out, read_study_figure


def _study(tmp_path, annotated=3, unannotated=1):
    for i in range(annotated + unannotated):
        tiny_scan(tmp_path / "src" / f"p{i}.zarr", seed=i, annotate=i < annotated)
    study = Study.init(tmp_path / "study")
    study.add(sorted((tmp_path / "src").iterdir()))
    return study


def _run(gen):
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        return events, stop.value


def test_each_annotated_scan_is_left_out_once_and_the_figure_is_kept(tmp_path):
    study = _study(tmp_path)
    events, figure = _run(leave_one_scan_out(study.path, tiny_config(steps=30, val_every=15)))
    left = [e for e in events if isinstance(e, ScanLeftOut)]
    assert [(e.name, e.index, e.total) for e in left] == [
        ("p0.zarr", 1, 3), ("p1.zarr", 2, 3), ("p2.zarr", 3, 3)
    ]  # the unannotated p3 has nothing to score it on  # fmt: skip
    assert sum(isinstance(e, StepEnd) for e in events) == 3 * 30
    assert figure.scans == 3 and set(figure.per_scan) == {"p0.zarr", "p1.zarr", "p2.zarr"}
    assert 0 <= min(figure.per_scan.values()) <= figure.dsc <= max(figure.per_scan.values())
    assert figure.dsc > 0.3  # the tiny scans' bright lesions are learnable from the others
    assert "leave-one-scan-out over 3 annotated scans" in figure.line()
    stored = read_study_figure(study.models)
    assert (study.models / LOSO).is_file() and stored == figure


def test_the_counts_pool_over_the_painted_voxels_only():
    ann = np.zeros((1, 2, 4), np.uint8)
    ann[0, 0] = [2, 2, 1, 1]  # lesion, lesion, background, background; row 1 unpainted
    pred = np.array([[[1, 0, 1, 0], [1, 1, 1, 1]]])
    np.testing.assert_array_equal(painted_counts(pred, ann), [1, 1, 1])
    assert loso._dsc(1, 1, 1) == 0.5 and math.isnan(loso._dsc(0, 0, 0))


def test_one_annotated_scan_is_refused_with_what_to_do(tmp_path):
    study = _study(tmp_path, annotated=1, unannotated=1)
    with pytest.raises(ScanError, match="needs 2 annotated scans: annotate another scan"):
        _run(leave_one_scan_out(study.path))
    assert read_study_figure(study.models) is None
