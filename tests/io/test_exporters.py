"""Mask export (no Qt): what is exported, the geometry it keeps, and the atomic replace."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from napari_asymseg.errors import ScanError
from napari_asymseg.io import exporters
from napari_asymseg.io.exporters import export_mask, mask_from_scan, read_mask
from napari_asymseg.store import annotations as codes
from napari_asymseg.store.scan import Scan

# (Z, Y, X) index -> RAS mm, permuted and flipped: a NIfTI export must keep it exactly
OBLIQUE = np.array(
    [[0.0, 0.0, -0.9, 5.0], [0.0, 0.8, 0.0, 10.0], [3.0, 0.0, 0.0, 20.0], [0, 0, 0, 1]]
)
FORMATS = [".nii.gz", ".nii", ".tif", ".ome.zarr"]


@pytest.fixture
def oblique_scan(tmp_path, volume, labels) -> Scan:
    ann = np.zeros(volume.shape, np.uint8)
    ann[5] = codes.BACKGROUND
    ann[5, 8:12, 6:10] = codes.code_of_class(1)
    ann[9, 2:5, 2:5] = codes.code_of_class(2)
    return Scan.create(
        tmp_path / "oblique.zarr",
        volume,
        affine=OBLIQUE,
        classes=("a", "b"),
        annotations=ann,
        ground_truth=labels,
    )


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".tmp-", ".old-")))


def test_annotations_export_through_the_codec(oblique_scan):
    mask = mask_from_scan(oblique_scan, "annotations")
    ann = oblique_scan.read_annotations()
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, codes.to_mask(ann))
    # not annotated and painted background are both background; class k is k
    assert mask[0, 0, 0] == 0 and mask[5, 0, 0] == 0
    assert mask[5, 9, 7] == 1 and mask[9, 3, 3] == 2


def test_prediction_and_ground_truth(oblique_scan, labels):
    np.testing.assert_array_equal(mask_from_scan(oblique_scan, "ground_truth"), labels)
    with pytest.raises(ScanError, match="no prediction: run a prediction first"):
        mask_from_scan(oblique_scan)
    pred = np.zeros(labels.shape, np.uint8)
    pred[2:4, 1:3] = 2
    oblique_scan.write_result("prediction", pred)
    got = mask_from_scan(Scan.open(oblique_scan.path, mode="r"), "prediction")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, pred)


def test_a_scan_without_ground_truth_says_how_to_add_one(scan):
    with pytest.raises(ScanError, match="no ground_truth: import one with --truth"):
        mask_from_scan(scan, "ground_truth")


@pytest.mark.parametrize("ext", FORMATS)
def test_export_round_trips_the_mask_and_its_geometry(tmp_path, oblique_scan, labels, ext):
    out = export_mask(oblique_scan, tmp_path / "out" / f"truth{ext}", what="ground_truth")
    assert out == tmp_path / "out" / f"truth{ext}"  # the folder is made
    back = read_mask(out)
    np.testing.assert_array_equal(back.data, labels)
    assert back.spacing == pytest.approx(oblique_scan.spacing, rel=1e-4)
    if ext in (".nii.gz", ".nii"):  # NIfTI keeps the whole affine, as qform and sform
        np.testing.assert_allclose(back.affine, oblique_scan.affine, atol=1e-6)
        img = nib.load(out)
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        is_gzip = out.read_bytes()[:2] == b"\x1f\x8b"
        assert is_gzip == (ext == ".nii.gz")
    assert leftovers(out.parent) == []


def test_nifti_gz_is_a_complete_gzip_stream(tmp_path, oblique_scan):
    out = export_mask(oblique_scan, tmp_path / "a.nii.gz", what="annotations")
    raw = gzip.decompress(out.read_bytes())  # fails on a missing trailer
    assert raw[344:348] == b"n+1\x00"  # NIfTI-1 single-file magic


@pytest.mark.parametrize("ext", FORMATS)
def test_export_never_overwrites_without_overwrite(tmp_path, oblique_scan, ext):
    out = export_mask(oblique_scan, tmp_path / f"m{ext}", what="annotations")
    first = read_mask(out).data
    with pytest.raises(ScanError, match="already exists: choose another name"):
        export_mask(oblique_scan, out, what="ground_truth")
    np.testing.assert_array_equal(read_mask(out).data, first)
    export_mask(oblique_scan, out, what="ground_truth", overwrite=True)
    np.testing.assert_array_equal(read_mask(out).data, mask_from_scan(oblique_scan, "ground_truth"))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("ext", "writer"),
    [(".nii.gz", "_write_nifti"), (".tif", "_write_tiff"), (".ome.zarr", "_write_ome_labels")],
)
def test_a_failed_export_leaves_the_old_file(tmp_path, oblique_scan, monkeypatch, ext, writer):
    out = export_mask(oblique_scan, tmp_path / f"m{ext}", what="annotations")
    before = read_mask(out).data

    def half_written(scan, mask, target, *args, **kwargs):
        if hasattr(target, "write"):
            target.write(b"half a mask")
        else:
            (target / "labels").mkdir(parents=True)
        raise OSError("disk full")

    monkeypatch.setattr(exporters, writer, half_written)
    with pytest.raises(OSError, match="disk full"):
        export_mask(oblique_scan, out, what="ground_truth", overwrite=True)
    np.testing.assert_array_equal(read_mask(out).data, before)
    assert leftovers(tmp_path) == []


def test_a_mask_of_another_shape_is_refused(tmp_path, oblique_scan):
    with pytest.raises(ScanError, match="export a layer of this scan"):
        export_mask(oblique_scan, tmp_path / "m.nii.gz", mask=np.zeros((2, 2, 2), np.uint8))
    assert not (tmp_path / "m.nii.gz").exists()


def test_an_unknown_format_is_refused(tmp_path, oblique_scan):
    with pytest.raises(ScanError, match=r"cannot export to m\.png: use a name ending in .nii"):
        export_mask(oblique_scan, tmp_path / "m.png", what="annotations")
