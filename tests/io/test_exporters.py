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


# ----------------------------------------------------------------------------- DICOM SEG's images


def _tree(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _seg(scan, out, **kwargs):
    return export_mask(scan, out, what="annotations", modality="MR", **kwargs)


def test_a_seg_never_replaces_an_image_folder_that_no_export_wrote(tmp_path, scan):
    """A SEG of a scan not from DICOM writes its image series to NAME_image/: a folder of
    that name holding the user's own files is refused, with --overwrite too, and kept."""
    folder = tmp_path / "seg_image"
    folder.mkdir()
    (folder / "IM00001.dcm").write_bytes(b"someone else's image")
    (folder / "notes.txt").write_text("mine")
    before = _tree(folder)
    for overwrite in (False, True):
        with pytest.raises(ScanError, match="holds files that no SEG export wrote") as err:
            _seg(scan, tmp_path / "seg.dcm", overwrite=overwrite)
        assert "\n" not in str(err.value)
    with pytest.raises(ScanError, match="holds files that no SEG export wrote"):
        exporters.export_replaces(scan, tmp_path / "seg.dcm")
    assert _tree(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.zarr", "seg_image"]


def test_a_seg_replaces_its_own_image_folder_only_with_overwrite(tmp_path, scan):
    from napari_asymseg.io.dicom import read_dicom_series
    from napari_asymseg.io.dicom_seg import read_seg

    out = _seg(scan, tmp_path / "seg.dcm")
    folder = tmp_path / "seg_image"
    assert exporters.export_replaces(scan, out) == [out, folder]
    first = _tree(folder)
    out.unlink()  # the image folder alone is in the way: still refused without --overwrite
    assert exporters.export_replaces(scan, out) == [folder]
    with pytest.raises(ScanError, match="seg_image already exists .* pass --overwrite"):
        _seg(scan, out)
    assert _tree(folder) == first and not out.exists()
    _seg(scan, out, overwrite=True)
    assert _tree(folder).keys() == first.keys() and _tree(folder) != first  # a new series
    images = read_dicom_series(folder)
    labels = read_seg(out, images.provenance["sop_instance_uids"])  # the SEG references it
    np.testing.assert_array_equal(labels, mask_from_scan(scan, "annotations"))
    assert leftovers(tmp_path) == []


def test_a_failed_seg_export_keeps_the_old_seg_and_its_image_series(tmp_path, scan, monkeypatch):
    from napari_asymseg.io import dicom_seg

    out = _seg(scan, tmp_path / "seg.dcm")
    old_seg, old_images = out.read_bytes(), _tree(tmp_path / "seg_image")

    def disk_full(path, writer):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dicom_seg, "write_with", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _seg(scan, out, overwrite=True)
    assert out.read_bytes() == old_seg and _tree(tmp_path / "seg_image") == old_images
    assert leftovers(tmp_path) == []


def test_the_cli_replaces_a_seg_and_its_image_series_only_with_overwrite(tmp_path, scan, capsys):
    from napari_asymseg.cli.main import main

    args = ["export", str(scan.path), str(tmp_path / "seg.dcm"), "--what", "annotations"]
    args += ["--modality", "MR"]
    assert main(args) == 0
    first = _tree(tmp_path / "seg_image")
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert _tree(tmp_path / "seg_image") == first
    assert main([*args, "--overwrite"]) == 0
    assert _tree(tmp_path / "seg_image") != first


def test_a_series_slice_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """write_series writes each image through the atomic writer: a write that fails halfway
    leaves no torn IM file and no temporary file behind."""
    from pydicom.dataset import Dataset

    from napari_asymseg.io.dicom_write import write_series

    real = Dataset.save_as
    calls = []

    def fails_on_the_third(self, target, *args, **kwargs):
        calls.append(target)
        if len(calls) == 3:
            target.write(b"DICM half an image")
            raise OSError(28, "No space left on device")
        return real(self, target, *args, **kwargs)

    monkeypatch.setattr(Dataset, "save_as", fails_on_the_third)
    data = np.zeros((5, 4, 4), np.int16)
    with pytest.raises(OSError, match="No space left"):
        write_series(data, np.eye(4), tmp_path / "series")
    assert sorted(p.name for p in (tmp_path / "series").iterdir()) == [
        "IM00001.dcm",
        "IM00002.dcm",
    ]
    assert not hasattr(calls[0], "__fspath__")  # a file object, not a path: the atomic writer
