"""The shape between painted slices teaches the unpainted voxels (data.unpainted shape)."""

import numpy as np

from napari_asymseg.store.annotations import IGNORE
from napari_asymseg.train.shape_teacher import BAND, shape_labels


def _ball(shape=(9, 32, 32), r=8.0):
    zz, yy, xx = np.indices(shape)
    return (zz - 4) ** 2 * 4 + (yy - 16) ** 2 + (xx - 16) ** 2 <= r * r


def test_between_painted_slices_the_shape_is_lesion_and_the_rest_the_forests():
    truth = _ball()
    train = np.full(truth.shape, IGNORE, np.int16)
    for z in (2, 6):  # the lesion painted on two slices, the rest of them background
        train[z] = truth[z].astype(np.int16)
    forest = np.zeros(truth.shape, np.int16)
    forest[:, 0:3, 0:3] = 1  # the forest's false lesion in a corner, on every slice
    forest[4, 14:18, 14:18] = 0  # and a hole in the lesion
    out = shape_labels(forest, train)
    for z in (3, 4, 5):  # between: the shape is lesion (the hole filled), the rest the forest's
        assert out[z, 16, 16] == 1 and out[z, 0, 0] == forest[z, 0, 0] == 1
    for z in (0, 1, 7, 8):  # beyond the painted slices: the forest's labels, as they were
        assert np.array_equal(out[z], forest[z])
    assert np.array_equal(out[2], forest[2]) and np.array_equal(out[6], forest[6])  # painted


def test_near_the_shape_the_forest_decides_and_unlabelled_stays_unlabelled_there():
    truth = _ball()
    train = np.full(truth.shape, IGNORE, np.int16)
    for z in (2, 6):
        train[z] = truth[z].astype(np.int16)
    forest = np.full(truth.shape, IGNORE, np.int16)  # a slice the forest did not label
    out = shape_labels(forest, train)
    inside = out[4] == 1
    assert inside.any()
    ring = (out[4] == IGNORE) & ~inside  # within BAND voxels of the shape: left to the image
    assert ring.any() and BAND > 0
    assert (out[4] == 0).any()  # far from it: background


def test_one_painted_lesion_slice_leaves_the_forest_alone():
    truth = _ball()
    train = np.full(truth.shape, IGNORE, np.int16)
    train[4] = truth[4].astype(np.int16)
    forest = np.random.default_rng(0).integers(0, 2, truth.shape).astype(np.int16)
    assert shape_labels(forest, train) is forest
