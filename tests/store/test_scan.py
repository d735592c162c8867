import json
import os
import shutil

import numpy as np
import pytest
import zarr

from napari_asymseg.errors import ScanError
from napari_asymseg.store import arrays
from napari_asymseg.store.lock import LOCK_FILE
from napari_asymseg.store.scan import Scan


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("multiscale", [False, True])
def test_round_trip(tmp_path, zarr_format, multiscale):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(10, 140, 150)).astype(np.float32)
    gt = (image > 2).astype(np.uint8)
    ann = np.zeros(image.shape, np.uint8)
    ann[3] = gt[3] + 1
    Scan.create(
        tmp_path / "s.zarr",
        image,
        spacing=(4.0, 0.5, 0.6),
        annotations=ann,
        ground_truth=gt,
        classes=("tumour",),
        zarr_format=zarr_format,
        multiscale=multiscale,
    )
    scan = Scan.open(tmp_path / "s.zarr")
    assert scan.zarr_format == zarr_format
    assert scan.shape == image.shape
    assert scan.spacing == (4.0, 0.5, 0.6)
    assert scan.classes == ("tumour",)
    assert scan.num_classes == 2
    np.testing.assert_array_equal(scan.image[...], image)
    np.testing.assert_array_equal(scan.read_annotations(), ann)
    np.testing.assert_array_equal(scan.ground_truth[...], gt)
    assert scan.is_multiscale == multiscale
    if multiscale:
        levels = scan.image_levels
        assert len(levels) >= 2
        assert levels[1].shape[1] == image.shape[1] // 2
        # thick slices are not halved while the in-plane voxel is still finer than them
        assert levels[1].shape[0] == image.shape[0]
        meta = dict(scan.group["image"].attrs)
        version = meta["ome"]["version"] if "ome" in meta else meta["multiscales"][0]["version"]
        assert version == ("0.5" if zarr_format == 3 else "0.4")


def test_affine_orientation_and_spacing(tmp_path, volume):
    affine = np.array([[0, 0, -0.7, 10], [0, 0.7, 0, -5], [3.0, 0, 0, 2], [0, 0, 0, 1]])
    scan = Scan.create(tmp_path / "a.zarr", volume, affine=affine)
    np.testing.assert_allclose(scan.affine, affine)
    assert scan.spacing == pytest.approx((3.0, 0.7, 0.7))
    assert scan.orientation == "SAL"
    with pytest.raises(ScanError, match="disagrees with the affine"):
        Scan.create(tmp_path / "b.zarr", volume, affine=affine, spacing=(1, 1, 1))


def test_results_are_replaced_atomically(scan):
    pred = np.zeros(scan.shape, np.uint8)
    pred[5, 8:12, 6:10] = 1
    scan.write_result("prediction", pred)
    scan.write_result("probability", pred.astype(np.float32) * 0.9)
    pred2 = np.ones(scan.shape, np.uint8)
    scan.write_result("prediction", pred2)
    reopened = Scan.open(scan.path)
    np.testing.assert_array_equal(reopened.result("prediction")[...], pred2)
    assert sorted(reopened.results()) == ["prediction", "probability"]
    leftovers = [p.name for p in (scan.path / "results").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_failed_write_keeps_previous_content(scan, monkeypatch):
    before = scan.read_annotations()

    def broken(group, key, data, chunks):
        arr = group.create_array(key, shape=data.shape, dtype=data.dtype, chunks=chunks)
        arr[:2] = data[:2]  # part of the new content reaches the disk, then the write fails
        raise OSError("disk full")

    monkeypatch.setattr(arrays, "write_array", broken)
    with pytest.raises(OSError):
        scan.write_annotations(np.ones(scan.shape, np.uint8))
    monkeypatch.undo()
    np.testing.assert_array_equal(Scan.open(scan.path).read_annotations(), before)
    assert not [p for p in scan.path.iterdir() if p.name.startswith(".tmp-")]


def test_crash_between_renames_is_rolled_back(scan):
    """A crash after the old array was moved aside but before the new one was moved in."""
    before = scan.read_annotations()
    target = scan.path / "annotations"
    os.rename(target, scan.path / ".old-annotations-0123abcd")
    shutil.copytree(
        scan.path / ".old-annotations-0123abcd", scan.path / ".tmp-annotations-89abcdef"
    )
    reopened = Scan.open(scan.path)
    np.testing.assert_array_equal(reopened.read_annotations(), before)
    # no leftover of the swap; the lock file (who writes the scan) stays, by design: deleting
    # it on release would let two writers lock two different files
    hidden = sorted(p.name for p in scan.path.iterdir() if p.name.startswith("."))
    assert hidden == [LOCK_FILE]


def test_crash_after_swap_keeps_new_and_drops_old(scan):
    shutil.copytree(scan.path / "annotations", scan.path / ".old-annotations-0123abcd")
    scan.annotations[0] = 1
    Scan.open(scan.path)
    assert not (scan.path / ".old-annotations-0123abcd").exists()
    assert Scan.open(scan.path).annotation_counts()[1] > 0


def test_region_write_updates_only_the_region(scan):
    block = np.full((1, *scan.shape[1:]), 1, np.uint8)
    scan.write_annotations(block, region=(slice(0, 1),))
    ann = Scan.open(scan.path).read_annotations()
    assert (ann[0] == 1).all()
    assert ann[5, 9, 7] == 2
    with pytest.raises(ScanError, match="values must lie in 0..2"):
        scan.write_annotations(np.full((1, *scan.shape[1:]), 7), region=(slice(0, 1),))


def test_annotation_counts(scan):
    counts = scan.annotation_counts()
    assert counts[2] == 16
    assert counts[1] == scan.shape[1] * scan.shape[2] - 16
    assert sum(counts.values()) == int(np.prod(scan.shape))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros((4, 5), np.float32), "3D volume.*2D array.*stack the slices"),
        (np.zeros((2, 4, 5, 6), np.float32), "3D volume.*4D array.*channel"),
        (np.full((3, 4, 5), np.nan, np.float32), "60 NaN/Inf"),
        (np.array([[[np.inf]]], np.float64), "1 NaN/Inf"),
        (np.zeros((3, 4, 5), dtype="U1"), "not a number type"),
        (np.zeros((0, 4, 5), np.float32), "empty"),
    ],
)
def test_bad_images_are_refused(tmp_path, data, match):
    with pytest.raises(ScanError, match=match) as info:
        Scan.create(tmp_path / "bad.zarr", data)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad.zarr").exists()


def test_bad_annotations_are_refused(tmp_path, volume):
    with pytest.raises(ScanError, match="does not match the image"):
        Scan.create(tmp_path / "x.zarr", volume, annotations=np.zeros((1, 2, 3), np.uint8))
    with pytest.raises(ScanError, match="values must lie in 0..2"):
        Scan.create(tmp_path / "x.zarr", volume, annotations=np.full(volume.shape, 9, np.uint8))
    assert not (tmp_path / "x.zarr").exists()


def test_existing_scan_is_not_overwritten_by_default(scan, volume):
    with pytest.raises(ScanError, match="already exists.*--overwrite"):
        Scan.create(scan.path, volume)
    assert Scan.open(scan.path).annotation_counts()[2] == 16
    Scan.create(scan.path, volume, overwrite=True)
    assert Scan.open(scan.path).annotation_counts() == {0: volume.size}


def test_open_errors_name_the_problem(tmp_path, scan):
    with pytest.raises(ScanError, match="no scan at .*asymseg import"):
        Scan.open(tmp_path / "missing.zarr")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(ScanError, match="not an asymseg scan"):
        Scan.open(tmp_path / "plain.zarr")
    (scan.path / "zarr.json").write_text("{ this is not json")
    with pytest.raises(ScanError, match="not a readable zarr group"):
        Scan.open(scan.path)


def test_open_reports_missing_parts(tmp_path, volume):
    path = tmp_path / "s.zarr"
    Scan.create(path, volume)
    shutil.rmtree(path / "annotations")
    with pytest.raises(ScanError, match="no 'annotations' array"):
        Scan.open(path)
    Scan.create(path, volume, overwrite=True)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["asymseg"]["version"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ScanError, match="newer napari-asymseg"):
        Scan.open(path)


def test_foreign_ome_zarr_is_not_a_scan(tmp_path, volume):
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image

    root = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=3)
    write_image(volume, root, scale_factors=[], fmt=FormatV05(), axes="zyx")
    with pytest.raises(ScanError, match="OME-Zarr image but not an asymseg scan.*import"):
        Scan.open(tmp_path / "img.ome.zarr")


def test_read_only_open_does_not_write(scan):
    ro = Scan.open(scan.path, mode="r")
    with pytest.raises(Exception):  # noqa: B017 - zarr's read-only error type varies by version
        ro.annotations[0] = 1
    assert Scan.open(scan.path).annotation_counts()[2] == 16
