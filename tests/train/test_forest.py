"""The random-forest teacher of the unpainted voxels."""

import numpy as np

from engine_helpers import tiny_scan
from napari_asymseg.store.annotations import IGNORE
from napari_asymseg.train import forest
from napari_asymseg.train.data import annotations_to_target


def _scan_arrays(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    image = np.asarray(scan.image[...], np.float32)
    return image, annotations_to_target(scan.read_annotations()), np.asarray(scan.ground_truth)


def test_forest_labels_the_unpainted_slices_from_the_painted_ones(tmp_path):
    image, target, gt = _scan_arrays(tmp_path)
    labels = forest.forest_labels(image, target, seed=0)
    assert labels.shape == image.shape and labels.dtype == np.int16
    assert set(np.unique(labels)) <= {0, 1}  # every slice of a small scan is labelled
    unpainted = target < 0
    p, t = (labels == 1) & unpainted, (gt == 1) & unpainted
    dsc = 2 * (p & t).sum() / (p.sum() + t.sum())
    assert dsc > 0.6  # bright blobs on noise: the forest finds them where nobody painted


def test_forest_bounds_its_work(tmp_path, monkeypatch):
    image, target, _ = _scan_arrays(tmp_path)
    monkeypatch.setattr(forest, "MAX_SLICES", 4)
    monkeypatch.setattr(forest, "MAX_TRAIN_VOXELS", 500)
    labels = forest.forest_labels(image, target, seed=0)
    labelled = np.flatnonzero((labels != IGNORE).any(axis=(1, 2)))
    assert len(labelled) == 4 and labelled[0] == 0 and labelled[-1] == image.shape[0] - 1
    assert (labels[np.setdiff1d(np.arange(image.shape[0]), labelled)] == IGNORE).all()


def test_slice_features_are_ilastiks_set():
    feats = forest.slice_features(np.random.default_rng(0).normal(size=(20, 24)))
    # intensity, edges and 2 texture features at sigmas 1, 2, 4, 8, 16
    assert feats.shape == (20, 24, 4 * 5) and feats.dtype == np.float32
