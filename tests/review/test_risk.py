"""The false-negative risk map and the under-segmentation flags."""

import math

import numpy as np
import pytest
import torch

from napari_asymseg.errors import ScanError
from napari_asymseg.evaluate.metrics import average_precision
from napari_asymseg.review import state
from napari_asymseg.review.calibration import (
    Calibration,
    calibration_from_history,
    fit_calibration,
    foreground_margin,
)
from napari_asymseg.review.flags import Flag, find_flags, flag_scan
from napari_asymseg.review.items import LESION, MISS, NOT_LESION, Item
from napari_asymseg.review.risk_map import model_risk, risk_map, with_annotations
from napari_asymseg.store.scan import Scan


# ------------------------------------------------------------------------------ calibration
def test_platt_fit_recovers_known_parameters():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 3, 200_000)
    y = rng.random(m.size) < 1 / (1 + np.exp(-(0.5 * m - 1.0)))
    fit = fit_calibration(m, y)
    assert fit is not None and fit.source == "validation"
    assert fit.scale == pytest.approx(0.5, abs=0.02)
    assert fit.bias == pytest.approx(-1.0, abs=0.05)


def test_platt_fit_needs_both_classes():
    assert fit_calibration(np.arange(10.0), np.zeros(10)) is None
    assert fit_calibration(np.zeros(0), np.zeros(0)) is None


def test_calibration_from_history_prefers_the_fit_then_the_logit_shift():
    rows = [
        {"step": 10, "calibration": {"scale": 2.0, "bias": 0.5}, "logit_shift": -1.0},
        {"step": 20, "calibration": None, "logit_shift": -1.5},
    ]
    assert calibration_from_history(rows, 10) == Calibration(2.0, 0.5, "validation")
    # no fit: the held-out foreground is 1.5 closer to the boundary, so the bias moves it back
    assert calibration_from_history(rows, 20) == Calibration(1.0, 1.5, "logit_shift")
    assert calibration_from_history([{"step": 5, "logit_shift": 0.7}], 5) == Calibration()
    assert calibration_from_history([], -1) == Calibration()


# ------------------------------------------------------------------------------ risk map
def test_foreground_margin_is_the_log_odds_of_any_foreground():
    z = torch.tensor([[0.0, 1.0], [2.0, -1.0], [1.0, 3.0]])  # C=3 classes, 2 voxels
    m = foreground_margin(z, 0)
    expected = torch.logsumexp(z[1:], 0) - z[0]
    assert torch.allclose(m, expected)
    binary = torch.tensor([[0.5], [2.0]])
    assert foreground_margin(binary, 0).item() == pytest.approx(1.5)


def test_model_risk_is_zero_on_predicted_foreground_and_grows_with_spread():
    margin = np.array([-4.0, -1.0, 0.5, 2.0], np.float32)
    predicted = (margin > 0).astype(np.uint8)
    r = model_risk(margin, predicted, Calibration())
    assert r[2] == 0 and r[3] == 0
    assert r[0] == pytest.approx(1 / (1 + math.exp(4)), rel=1e-5)
    assert r[0] < r[1]
    wider = model_risk(margin, predicted, Calibration(), spread=np.ones(4), kappa=1.0)
    assert (wider[:2] > r[:2]).all()
    shifted = model_risk(margin, predicted, Calibration(1.0, 1.0))
    assert shifted[0] == pytest.approx(1 / (1 + math.exp(3)), rel=1e-5)


def test_risk_is_exact_on_annotations():
    r = np.full((1, 1, 4), 0.4, np.float32)
    ann = np.array([[[0, 1, 2, 2]]], np.uint8)  # none, background, fg, fg
    pred = np.array([[[0, 0, 0, 1]]], np.uint8)
    out = with_annotations(r, ann, pred)
    assert out.tolist() == [[[pytest.approx(0.4), 0.0, 1.0, 0.0]]]


def test_risk_map_shares_a_known_miss_with_its_neighbours():
    shape = (9, 9, 9)
    margin = np.full(shape, -10.0, np.float32)  # the model is sure: background everywhere
    pred = np.zeros(shape, np.uint8)
    pred[0, 0, 0] = 1
    ann = np.zeros(shape, np.uint8)
    ann[4, 4, 4] = 2  # an annotated lesion voxel the model misses
    r = risk_map(margin, pred, Calibration(), annotations=ann, sigma_mm=1.0)
    assert r[4, 4, 4] == 1.0  # exact
    # neighbours are suspicious: 0.242 * 0.399**2 of a 1-voxel miss at one sigma
    assert r[4, 4, 5] == pytest.approx(0.0386, abs=2e-3) and r[3, 4, 4] > 0.03
    assert r[4, 4, 8] < 1e-3  # far away is not
    assert r[0, 0, 0] == 0  # predicted foreground is never a false negative
    plain = risk_map(margin, pred, Calibration(), annotations=ann, sigma_mm=0)
    assert plain[4, 4, 5] < 1e-3


# ------------------------------------------------------------------------------ flags
def _two_blobs():
    r = np.zeros((10, 20, 20), np.float32)
    r[2:4, 2:5, 2:5] = 0.5  # 18 voxels, expected 9
    r[6:9, 10:15, 10:15] = 0.9  # 75 voxels, expected 67.5
    r[8, 0, 0] = 0.95  # 1 voxel: expected 0.95 < min_expected
    return r


def test_flags_are_regions_ranked_by_expected_missed_volume():
    flags = find_flags(_two_blobs(), spacing=(2.0, 1.0, 1.0), threshold=0.3)
    assert [f.rank for f in flags] == [1, 2] and [f.id for f in flags] == [1, 2]
    big, small = flags
    assert big.voxels == 75 and big.expected_missed == pytest.approx(67.5)
    assert big.expected_mm3 == pytest.approx(135.0)
    assert big.bbox == (6, 10, 10, 9, 15, 15) and big.contains(big.center)
    assert small.expected_missed == pytest.approx(9.0)
    assert find_flags(_two_blobs(), threshold=0.95) == []  # below min_expected


def test_flags_count_unannotated_risk_and_report_known_misses():
    r = _two_blobs()
    ann = np.zeros(r.shape, np.uint8)
    ann[6:8] = 2  # two of the big region's three slices are annotated lesion...
    pred = np.zeros(r.shape, np.uint8)  # ...that the model misses
    flags = find_flags(r, annotations=ann, prediction=pred, threshold=0.3)
    big = next(f for f in flags if f.bbox[0] == 6)
    assert big.expected_missed == pytest.approx(25 * 0.9)  # only slice 8 counts
    assert big.known_misses == 2 * 25  # the annotated lesion voxels inside the region
    assert big.center[0] == 8  # the place to annotate next


def test_done_flags_stay_done_and_go_last():
    first = find_flags(_two_blobs(), threshold=0.3)
    done = [Flag.from_dict({**first[0].as_dict(), "status": "done"})]
    again = find_flags(_two_blobs(), threshold=0.3, done=done)
    assert [f.done for f in again] == [False, True]
    assert again[1].center == first[0].center and again[0].rank == 1


def test_flags_need_a_3d_risk_map():
    with pytest.raises(ScanError, match="3D"):
        find_flags(np.zeros((4, 4)))


def _answered_miss(flag: Flag, status: str, item_id: int = 7) -> Item:
    return Item(item_id, 1, MISS, flag.center, flag.bbox, flag.voxels, flag.expected_missed,
                flag.max_risk, status=status)  # fmt: skip


def test_flags_keep_no_state_the_queue_answers_them(tmp_path):
    """The flags are the review queue's misses: nothing of theirs is stored, and a miss the
    queue holds answered Lesion (painted) is a done flag."""
    shape = (10, 20, 20)
    scan = Scan.create(tmp_path / "s.zarr", np.zeros(shape, np.float32))
    with pytest.raises(ScanError, match="no risk map"):
        flag_scan(scan)
    scan.write_result("prediction", np.zeros(shape, np.uint8))
    scan.write_result("risk", _two_blobs())
    flags = flag_scan(scan, threshold=0.3)
    assert len(flags) == 2 and not [f for f in flags if f.done]
    assert scan.read_attr("flags") is None and scan.read_attr(state.QUEUE_KEY) is None
    # a read-only scan flags the same: nothing is written
    assert flag_scan(Scan.open(scan.path, mode="r"), threshold=0.3) == flags
    queue = state.Queue((_answered_miss(flags[0], LESION),), "digest")
    state.save_queue(scan, queue)
    again = flag_scan(Scan.open(scan.path), threshold=0.3)
    assert [f.status for f in again] == ["open", "done"]
    assert again[1].center == flags[0].center
    # answered not lesion: its region was painted background, so its flag goes by itself
    state.save_queue(scan, state.Queue((_answered_miss(flags[0], NOT_LESION),), "digest"))
    assert [f.status for f in flag_scan(scan, threshold=0.3)] == ["open", "open"]


def test_done_marks_of_the_old_flags_list_are_kept(tmp_path):
    """Scans flagged before the queue held the flags' state: their done marks still count,
    and an entry that does not parse is skipped."""
    shape = (10, 20, 20)
    scan = Scan.create(tmp_path / "s.zarr", np.zeros(shape, np.float32))
    scan.write_result("prediction", np.zeros(shape, np.uint8))
    scan.write_result("risk", _two_blobs())
    flags = flag_scan(scan, threshold=0.3)
    old = [{**flags[0].as_dict(), "status": "done"}, flags[1].as_dict(), {"id": 9}]
    scan.write_attr(state.LEGACY_FLAGS_KEY, old)
    assert [f.status for f in flag_scan(scan, threshold=0.3)] == ["open", "done"]
    (kept,) = state.painted(scan)
    assert kept.center == flags[0].center and kept.status == LESION and kept.id == 0


# ------------------------------------------------------------------------------ evaluation
def test_average_precision_known_values():
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 0]) == pytest.approx(1.0)
    # hits at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # one tie group holding everything: precision = prevalence
    assert average_precision([0.5] * 4, [1, 0, 0, 0]) == pytest.approx(0.25)
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_the_rim_of_a_predicted_lesion_keeps_its_evidence():
    """Predicted foreground is zeroed after smoothing: the voxels next to a predicted lesion,
    where under-segmentation misses, inherit its high probability."""
    shape = (9, 15, 15)
    margin = np.full(shape, -3.0, np.float32)
    pred = np.zeros(shape, np.uint8)
    margin[3:6, 5:10, 5:10] = 5.0
    pred[3:6, 5:10, 5:10] = 1
    r = risk_map(margin, pred, Calibration(), sigma_mm=1.0)
    assert (r[pred > 0] == 0).all()
    rim, far = r[4, 4, 7], r[4, 0, 0]
    assert rim > 0.25 and far == pytest.approx(1 / (1 + math.exp(3)), rel=0.05) and rim > 5 * far
