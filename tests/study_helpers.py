"""A small study for the tests of prediction and review across scans: three scans of 16x32x32
(brain1 and brain2 painted, brain3 not), and a tiny model trained in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.store.annotations import BACKGROUND, code_of_class
from napari_asymseg.store.scan import Scan
from napari_asymseg.study.study import Study

SHAPE = (16, 32, 32)
NAMES = ("brain1", "brain2", "brain3")


def small_study(folder: Path) -> Study:
    """brain1 and brain2 painted on a few slices, brain3 not painted at all."""
    sources = folder / "sources"
    for k, name in enumerate(NAMES):
        tiny_scan(sources / f"{name}.zarr", annotate=k < 2, seed=k, shape=SHAPE)
    study = Study.init(folder / "study")
    study.add([sources / f"{n}.zarr" for n in NAMES])
    return study


def tiny_model(folder: Path, scan: Scan | Path) -> Path:
    """A model trained for a few steps: enough to predict, not to predict well."""
    from napari_asymseg.train.loop import fit

    for _ in fit(scan, tiny_config(steps=4, val_every=4), folder):
        pass
    return folder


def fake_results(scan: Scan, miss_voxels: int, alarm_voxels: int = 0) -> None:
    """Stored results with known review items: a painted lesion on slice 1, a suspected miss
    of ``miss_voxels`` voxels at risk 0.5 on slice 6 (an answer corrects half of them) and,
    if asked, a doubtful false alarm of ``alarm_voxels`` voxels (probability 0.6) on slice
    10 (as tests/review/test_queue.py builds them)."""
    ann = np.zeros(scan.shape, np.uint8)
    ann[1] = BACKGROUND
    ann[1, 4:8, 4:8] = code_of_class(1)
    scan.write_annotations(ann)
    pred = np.zeros(scan.shape, np.uint8)
    prob = np.zeros(scan.shape, np.float32)
    pred[1, 4:8, 4:8], prob[1, 4:8, 4:8] = 1, 0.95
    if alarm_voxels:
        pred[10, 20:30].flat[:alarm_voxels] = 1
        prob[10, 20:30].flat[:alarm_voxels] = 0.6
    risk = np.zeros(scan.shape, np.float32)
    risk[6, 10:30].flat[:miss_voxels] = 0.5
    scan.write_result("prediction", pred)
    scan.write_result("probability", prob)
    scan.write_result("risk", risk)
