"""The prediction includes the fill between painted slices (infer/with_fill.py)."""

from __future__ import annotations

import numpy as np
from tests.engine_helpers import tiny_config

from napari_asymseg.infer.predict import predict
from napari_asymseg.infer.with_fill import add_fill
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.loop import fit

SHAPE = (9, 20, 20)


def _disc(radius: float) -> np.ndarray:
    yy, xx = np.indices(SHAPE[1:])
    return (yy - 10) ** 2 + (xx - 10) ** 2 <= radius**2


def _painted_pair() -> np.ndarray:
    """A lesion painted on slices 2 and 6 (class 1: code 2), the rest of them background."""
    ann = np.full(SHAPE, NOT_ANNOTATED, np.uint8)
    for z in (2, 6):
        ann[z] = np.where(_disc(4), 2, BACKGROUND)
    return ann


def _results() -> dict[str, np.ndarray]:
    return {
        "prediction": np.zeros(SHAPE, np.uint8),
        "probability": np.full(SHAPE, 0.2, np.float16),
        "risk": np.full(SHAPE, 0.5, np.float16),
    }


def test_the_fill_between_painted_slices_is_lesion_in_the_prediction():
    ann = _painted_pair()
    out = _results()
    out["prediction"][4][_disc(1)] = 1  # the network's own lesion stays
    made = add_fill(out, ann, (1.0, 1.0, 1.0))

    pred = out["prediction"]
    for z in (3, 4, 5):
        assert (pred[z][_disc(3.5)] == 1).all()  # the fill between, lesion
    for z in (3, 5):
        assert (out["risk"][z][_disc(3.5)] == 0).all()  # and no longer at risk
    assert (out["risk"][4][_disc(1)] == np.float16(0.5)).all()  # the network's: as it was
    assert not pred[[0, 1, 2, 6, 7, 8]].any()  # painted slices and beyond: untouched
    assert not pred[:, ~_disc(5)].any()  # nothing outside the painted outlines' fill
    assert made == int(np.count_nonzero(pred)) - int(np.count_nonzero(_disc(1)))


def test_nothing_changes_without_a_painted_pair():
    ann = _painted_pair()
    ann[6] = BACKGROUND  # one painted lesion slice: nothing between
    out = _results()
    assert add_fill(out, ann, (1.0, 1.0, 1.0)) == 0
    assert not out["prediction"].any()
    assert (out["risk"] == np.float16(0.5)).all()


def test_predict_includes_the_fill_and_the_setting_turns_it_off(tmp_path):
    rng = np.random.default_rng(0)
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[[2, 6]] = _disc(4)  # seen on the painted slices only: the network is unsure between
    image = rng.normal(0, 1, SHAPE).astype(np.float32) + 2 * lesion
    scan = Scan.create(tmp_path / "s.zarr", image, annotations=_painted_pair())
    cfg = tiny_config(steps=4, val_every=2)
    cfg.data.patch_size = (8, 16, 16)
    for _ in fit(scan, cfg, tmp_path / "m"):
        pass
    cfg.predict.fill_between = False
    for _ in predict(scan, tmp_path / "m", config=cfg):
        pass
    alone = np.asarray(scan.result("prediction")[...])
    for _ in predict(scan, tmp_path / "m"):  # the model's own config: the fill included
        pass
    with_fill = np.asarray(scan.result("prediction")[...])

    fill = np.zeros(SHAPE, bool)
    fill[3:6][:, _disc(3)] = True  # well inside the fill between slices 2 and 6
    assert (alone[fill] == 0).any(), "the test needs voxels the network alone calls background"
    assert (with_fill[fill] == 1).all()
    changed = with_fill != alone
    assert not changed[[0, 1, 2, 6, 7, 8]].any()
