import numpy as np
import pytest

from napari_asymseg.config import DataConfig
from napari_asymseg.samples.sample_data import committed_sample
from napari_asymseg.store import annotations as codes
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.data import (
    IGNORE,
    PatchSampler,
    ScanData,
    annotation_stats,
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
    assert IGNORE == codes.IGNORE == annotations_to_target(np.array([codes.NOT_ANNOTATED]))[0]


def test_annotation_stats():
    data = np.zeros((2, 3, 4), np.uint8)
    data[0] = 1
    data[0, 0, :2] = 2
    stats = annotation_stats(data, ("lesion",))
    assert stats["annotated"] == 12 and stats["per_class"] == {"lesion": 2}
    assert stats["imbalance"] == 5.0
    assert stats["fg_fraction"] == pytest.approx(2 / 12)


def test_annotation_stats_list_unpainted_classes_and_no_foreground():
    data = np.full((1, 2, 3), codes.BACKGROUND, np.uint8)
    data[0, 0, 0] = codes.code_of_class(2)
    stats = annotation_stats(data, ("liver", "lesion"))
    assert stats["per_class"] == {"liver": 0, "lesion": 1} and stats["background"] == 5
    stats = annotation_stats(np.zeros((2, 2, 2), np.uint8), ("lesion",))
    assert stats["annotated"] == 0 and stats["fg_fraction"] == 0.0 and stats["imbalance"] is None


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


def _lesion_far_from_background():
    """A lesion of 2 voxels painted on slice 4, a background slice painted at 36."""
    image = np.zeros((40, 32, 32), np.float32)
    target = np.full(image.shape, IGNORE, np.int16)
    target[36] = 0
    target[4, 16, 16:18] = 1
    return ScanData(image, target, None, 2, (1.0, 1.0, 1.0), "test")


@pytest.mark.parametrize("every", [True, False])
def test_every_batch_holds_a_lesion_patch_when_asked(every):
    # p_fg 0: only the guarantee puts the lesion in a patch (a batch without lesion gives
    # Dice nothing to score; nnU-Net forces one foreground patch per batch for this reason)
    cfg = DataConfig(p_fg=0.0, p_anywhere=0.0, augment=False, fg_every_batch=every)
    sampler = PatchSampler(_lesion_far_from_background(), (8, 16, 16), cfg, seed=0)
    with_lesion = []
    for _ in range(10):
        _, y = sampler.sample(2)
        with_lesion.append([bool((y[i] == 1).any()) for i in range(2)])
    if every:
        assert all(any(batch) for batch in with_lesion)
        assert not any(batch[0] for batch in with_lesion)  # only the forced patch
    else:
        assert not any(any(batch) for batch in with_lesion)


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


@pytest.mark.parametrize(
    ("painted", "message"),
    [
        ({}, "has no annotations"),
        ({"background": True}, "no foreground annotated"),
        ({"lesion": True}, "no background annotated: paint background \\(label 1\\)"),
    ],
)
def test_scan_data_refuses_what_cannot_train(tmp_path, volume, painted, message):
    from napari_asymseg.errors import ScanError

    ann = np.zeros(volume.shape, np.uint8)
    if painted.get("background"):
        ann[3] = codes.BACKGROUND
    if painted.get("lesion"):
        ann[3, 2:4, 2:4] = codes.code_of_class(1)
    scan = Scan.create(tmp_path / "s.zarr", volume, spacing=(1.0, 1.0, 1.0), annotations=ann)
    with pytest.raises(ScanError, match=message):
        ScanData.from_scan(scan, DataConfig())


def test_split_keeps_two_runs_of_lesion_slices_for_training():
    target = np.full((20, 8, 8), IGNORE, np.int16)
    for z in (4, 12):  # two painted lesion slices: holding one out would halve the lesion
        target[z] = 0
        target[z, 2:4, 2:4] = 1
    target[17] = 0
    train, val = split_validation(target, 0.25, seed=0)
    assert val is None and train is target


def _painted(tmp_path, unpainted, share):
    from engine_helpers import tiny_scan

    scan = tiny_scan(tmp_path / f"{unpainted}-{share}.zarr")
    cfg = DataConfig(unpainted=unpainted, unpainted_share=share, augment=False, val_fraction=0)
    data = ScanData.from_scan(scan, cfg)
    return data, PatchSampler(data, (16, 40, 40), cfg, seed=0), scan.read_annotations()


@pytest.mark.parametrize("unpainted", ["forest", "background"])
def test_unpainted_voxels_teach_a_share_of_their_labels(tmp_path, unpainted):
    data, sampler, ann = _painted(tmp_path, unpainted, 0.5)
    unpainted_voxels = ann == codes.NOT_ANNOTATED
    assert (data.unpainted[~unpainted_voxels] == IGNORE).all()  # painted: their own class
    if unpainted == "background":
        assert (data.unpainted[unpainted_voxels] == 0).all()
    _, y = sampler.sample(1)  # the patch is the whole scan
    y = y[0].numpy()
    np.testing.assert_array_equal(y[~unpainted_voxels], data.train[~unpainted_voxels])
    taken = y[unpainted_voxels] >= 0
    assert 0.4 < taken.mean() < 0.6  # about half of the unpainted voxels carry a label
    np.testing.assert_array_equal(
        y[unpainted_voxels][taken], data.unpainted[unpainted_voxels][taken]
    )


def test_unpainted_share_zero_and_ignore_leave_them_unlabelled(tmp_path):
    for unpainted, share in (("forest", 0.0), ("ignore", 0.5)):
        data, sampler, ann = _painted(tmp_path, unpainted, share)
        _, y = sampler.sample(1)
        assert (y[0].numpy()[ann == codes.NOT_ANNOTATED] == IGNORE).all()
    assert data.unpainted is None
