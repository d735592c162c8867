import math

import numpy as np
import pytest
import torch

from napari_asymseg.evaluate.metrics import (
    class_scores,
    foreground_margins,
    histogram,
    logit_shift,
    mean_scores,
)


def test_scores_by_hand_ignoring_unannotated():
    pred = np.array([1, 1, 0, 0, 1, 1])
    target = np.array([1, 0, 1, 0, -1, -1])  # the last two are not annotated
    s = class_scores(pred, target, 2)[1]
    assert (s.tp, s.fp, s.fn) == (1, 1, 1)
    assert s.dsc == 0.5 and s.sensitivity == 0.5 and s.precision == 0.5
    assert math.isclose(s.fbeta, 5 * 1 / (5 * 1 + 4 * 1 + 1))
    assert mean_scores({1: s})["dsc"] == 0.5


def test_undefined_scores_are_nan():
    s = class_scores(np.zeros(4), np.zeros(4), 2)[1]
    assert math.isnan(s.dsc) and math.isnan(s.sensitivity) and math.isnan(s.precision)


def test_margins_and_shift():
    logits = torch.tensor([[[2.0, 0.0, 1.0]], [[5.0, 1.0, 0.0]]]).permute(1, 0, 2)  # [1, 2, 3]
    target = torch.tensor([[0, 1, -1]])
    m = foreground_margins(logits, target)
    np.testing.assert_allclose(m, [1.0])  # only the foreground voxel: 1 - 0
    assert logit_shift(np.array([4.0, 6.0]), np.array([1.0, 3.0])) == 2.0 - 5.0
    assert math.isnan(logit_shift(np.zeros(0), np.ones(2)))
    assert sum(histogram(np.array([-100.0, 0.0, 100.0]), bins=4)) == 3


def test_logit_shift_keeps_the_sign_of_the_margins():
    """Held-out lesion on the wrong side of the boundary (mean margin -0.7) against a training
    lesion just on the right side (+0.1): it drifted across the boundary, so Δ is negative.
    Comparing magnitudes (|-0.7| - |0.1| = +0.6) read it as further from the boundary."""
    train, held_out = np.array([0.0, 0.2]), np.array([-0.6, -0.8])
    assert logit_shift(train, held_out) == pytest.approx(-0.8)
    # both on the wrong side, the held-out one deeper: still a drift towards background
    assert logit_shift(np.array([-0.4]), np.array([-1.7])) == pytest.approx(-1.3)
    # held-out lesion surer than the training one: positive
    assert logit_shift(np.array([-1.0]), np.array([0.5])) == pytest.approx(1.5)
