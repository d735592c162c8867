"""The quality figure on constructed scans whose answer is known: the prediction against the
painted shape carried to the unpainted slices (evaluate/figure.py)."""

import math

import numpy as np
import pytest

from napari_asymseg.errors import ScanError
from napari_asymseg.evaluate.figure import MARGIN, ends, figure, likelihood
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED, code_of_class

LESION = code_of_class(1)


def ball(shape=(30, 48, 48), centre=(15, 24, 24), radius=9.0, spacing=(1.0, 1.0, 1.0)):
    zz, yy, xx = np.indices(shape)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip((zz, yy, xx), centre, spacing, strict=True))
    return d2 <= radius**2


def painted(truth, lesion_slices, empty=()):
    ann = np.full(truth.shape, NOT_ANNOTATED, np.uint8)
    for z in lesion_slices:
        ann[z] = np.where(truth[z], LESION, BACKGROUND)
    for z in empty:
        ann[z] = BACKGROUND
    return ann


def true_dsc(pred, truth, ann):
    u = ann == NOT_ANNOTATED
    p, t = pred & u, truth & u
    return 2 * (p & t).sum() / (p.sum() + t.sum())


def test_a_right_prediction_scores_high_and_its_interval_holds_the_truth():
    truth = ball()
    ann = painted(truth, (11, 19), (2,))
    f = figure(ann, truth.astype(np.uint8))
    # the ends are the ball through both painted outlines; between them the fill misses
    # the ball's bulge, and the outline is exact where the reference allows a voxel either
    # way: a perfect prediction is rated about 0.8, its interval reaching 1
    assert f.known and f.dsc > 0.75 and f.low <= 1.0 <= f.high
    assert f.precision > 0.8 and f.far_voxels == 0


def test_a_model_that_misses_the_unpainted_lesion_scores_zero_whatever_it_believes():
    truth = ball()
    ann = painted(truth, (11, 19), (2,))
    only_painted = np.zeros(truth.shape, np.uint8)  # what it was taught, nothing more
    for z in (11, 19):
        only_painted[z] = truth[z]
    f = figure(ann, only_painted)
    assert f.dsc == 0.0 and f.sensitivity == 0.0
    assert true_dsc(only_painted > 0, truth, ann) == 0.0


def test_false_positives_far_from_the_paint_lower_it_and_are_named():
    truth = ball()
    ann = painted(truth, (11, 19), (2,))
    pred = truth.copy()
    pred[24:29, 2:10, 2:10] = True  # an island far from every painted lesion
    right, wrong = figure(ann, truth.astype(np.uint8)), figure(ann, pred.astype(np.uint8))
    assert wrong.dsc < right.dsc and wrong.precision < right.precision
    assert wrong.far_voxels == 5 * 8 * 8 and "far from every painted lesion" in wrong.note
    # it tracks the truth: the island costs both about the same
    drop = true_dsc(truth, truth, ann) - true_dsc(pred, truth, ann)
    assert abs((right.dsc - wrong.dsc) - drop) < MARGIN


def test_one_painted_lesion_slice_is_enough_for_a_figure():
    # the commonest start: one slice painted; the lesion goes on beyond it both ways
    truth = ball()
    ann = painted(truth, (15,), (2,))
    found, missed = truth.astype(np.uint8), painted(truth, (15,)) == LESION
    good, bad = figure(ann, found), figure(ann, missed.astype(np.uint8))
    assert good.known and good.dsc > 0.6 and good.low <= 1.0 <= good.high
    assert bad.dsc == 0.0 and bad.high <= MARGIN


def test_thick_slices_a_small_lesion_still_reaches_the_next_slice():
    # 6.5 mm slices, a lesion 6 mm in radius: the next slice's slab begins 3.25 mm away
    spacing = (6.5, 0.8, 0.8)
    truth = ball((9, 40, 40), (4, 20, 20), 8.0, spacing)
    ann = painted(truth, (4,), (0,))
    reach = ends(ann, spacing, np.zeros(truth.shape, bool), 1.0)
    assert reach[3].any() and reach[5].any() and not reach[2].any()
    f = figure(ann, truth.astype(np.uint8), spacing)
    assert f.dsc > 0.6 and f.high > 0.8


def test_the_fill_between_carries_the_lesion_no_end_is_added_there():
    truth = ball()
    ann = painted(truth, (11, 19))
    covered = np.zeros(truth.shape, bool)
    covered[12:19] = truth[12:19]
    reach = ends(ann, (1.0, 1.0, 1.0), covered, 1.0)
    assert not reach[12:19].any() and reach[10].any() and reach[20].any()


def test_the_reference_outline_is_uncertain_by_a_voxel():
    ref = np.zeros((3, 20, 20), bool)
    ref[1, 5:15, 5:15] = True
    box, q = likelihood(ref, (2.0, 0.5, 0.5))
    full = np.zeros(ref.shape, np.float32)
    full[box] = q
    assert full[1, 10, 10] > 0.98  # deep inside
    assert full[1, 5, 10] == pytest.approx(0.62, abs=0.01)  # just inside the outline
    assert full[1, 4, 10] == pytest.approx(0.38, abs=0.01)  # just outside
    assert full[0].max() < 1e-6 and full[1, 0, 0] < 0.01  # another slice; far away


def test_strokes_inside_a_lesion_are_not_its_outline():
    truth = ball()
    ann = painted(truth, (15,), (2,))
    ann[11][truth[11]] = LESION  # lesion strokes on slice 11, no background around them
    f = figure(ann, truth.astype(np.uint8))
    assert not f.known and "slice(s) 11" in f.note and "paint background around" in f.note


def test_painted_along_another_axis_it_is_the_same_figure():
    truth = ball()
    ann = painted(truth, (11, 19), (2,))
    pred = truth.copy()
    pred[20:24] = False  # misses the upper end
    along_z = figure(ann, pred.astype(np.uint8))
    along_y = figure(ann.transpose(1, 0, 2), pred.transpose(1, 0, 2).astype(np.uint8))
    assert along_y.dsc == pytest.approx(along_z.dsc)


def test_what_it_cannot_judge_it_says_instead_of_a_number():
    truth = ball()
    nothing = figure(painted(truth, (), (2, 3)), truth.astype(np.uint8))
    assert not nothing.known and math.isnan(nothing.dsc) and "paint the lesion" in nothing.note
    assert "unknown" in nothing.line()
    everywhere = painted(truth, range(truth.shape[0]))
    assert not figure(everywhere, truth.astype(np.uint8)).known
    with pytest.raises(ScanError, match="predict this scan again"):
        figure(painted(truth, (15,)), np.zeros((3, 3, 3), np.uint8))
