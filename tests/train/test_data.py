import numpy as np
import pytest

from napari_asymseg.config import DataConfig
from napari_asymseg.samples.sample_data import committed_sample
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.data import (
    IGNORE,
    PatchSampler,
    ScanData,
    annotations_to_target,
    crop,
    normalise,
    split_validation,
)


def sparse_target():
    target = np.full((20, 8, 8), IGNORE, np.int16)
    for z in (2, 6, 10, 14):
        target[z] = 0
        target[z, 2:4, 2:4] = 1
    target[18] = 0  # an annotated slice without foreground
    return target


def test_annotations_to_target():
    np.testing.assert_array_equal(annotations_to_target(np.array([0, 1, 2, 3])), [-1, 0, 1, 2])


def test_split_holds_out_whole_slices_with_foreground():
    target = sparse_target()
    train, val = split_validation(target, 0.25, seed=0)
    assert val is not None
    val_z = np.flatnonzero((val >= 0).any(axis=(1, 2)))
    train_z = np.flatnonzero((train >= 0).any(axis=(1, 2)))
    assert set(val_z).isdisjoint(train_z)
    assert set(val_z) | set(train_z) == {2, 6, 10, 14, 18}
    assert (val >= 1).any() and (train >= 1).any()
    np.testing.assert_array_equal(val[val_z], target[val_z])


def test_split_needs_two_foreground_groups():
    target = np.full((5, 4, 4), IGNORE, np.int16)
    target[2] = 1
    train, val = split_validation(target, 0.25, seed=0)
    assert val is None and train is target


def test_sampler_respects_p_fg():
    scan = Scan.open(committed_sample(), mode="r")
    cfg = DataConfig(p_fg=1.0, augment=False)
    data = ScanData.from_scan(scan, cfg)
    sampler = PatchSampler(data, (8, 32, 32), cfg, seed=0)
    x, y = sampler.sample(8)
    assert x.shape == (8, 1, 8, 32, 32) and y.shape == (8, 8, 32, 32)
    assert all((y[i] >= 1).any() for i in range(8))  # every patch holds foreground
    assert (y == IGNORE).any()  # unannotated voxels stay ignored
    assert not ((data.val >= 0) & (data.train >= 0)).any()


def test_crop_pads_small_volumes():
    image = np.ones((2, 5, 5), np.float32)
    target = np.zeros((2, 5, 5), np.int16)
    x, y = crop(image, target, np.array([1, 2, 2]), (4, 8, 8))
    assert x.shape == (4, 8, 8) and (y[2:] == IGNORE).all() and (y[:2, :5, :5] == 0).all()


def test_normalise_modes():
    image = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    z = normalise(image, DataConfig())
    assert abs(z[::2, ::2, ::2].mean()) < 1e-5
    w = normalise(image, DataConfig(normalisation="window", window=(0, 63)))
    assert w.min() == -1 and w.max() == 1
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(image, DataConfig(normalisation="minmax"))
