"""DICOM series in (io/dicom.py), checked against dcm2niix; DICOM SEG out (io/dicom_seg.py),
checked with dciodvfy and read back with highdicom. All DICOM data is built here."""

from __future__ import annotations

import random
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

import dicom_helpers as dh
from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.errors import ScanError
from napari_asymseg.infer.predict import predict
from napari_asymseg.io.dicom import read_dicom_series
from napari_asymseg.io.dicom_seg import coded_class, read_seg
from napari_asymseg.io.exporters import export_mask
from napari_asymseg.io.importers import import_scan, read_volume
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.loop import fit


def test_ct_series_keeps_hounsfield_units_and_geometry(tmp_path):
    data, affine = dh.ct_values(), dh.oblique_affine()
    dh.series(tmp_path / "ct", data, affine, modality="CT")
    scan = import_scan(tmp_path / "ct", tmp_path / "ct.zarr")
    got = np.asarray(scan.image[...])
    assert got.dtype == np.int16
    np.testing.assert_array_equal(dh.to_grid(got, scan.affine, affine, data.shape), data)
    assert scan.dicom["modality"] == "CT"
    positions = [pydicom.dcmread(f).ImagePositionPatient for f in scan.dicom["files"]]
    depth = np.asarray(positions, float) @ np.cross(
        *np.reshape(pydicom.dcmread(scan.dicom["files"][0]).ImageOrientationPatient, (2, 3))
    )
    assert np.all(np.diff(depth) > 0)  # slice order along the normal
    sops = [str(pydicom.dcmread(f).SOPInstanceUID) for f in scan.dicom["files"]]
    assert sops == scan.dicom["sop_instance_uids"]


def test_slices_are_sorted_by_position_not_by_file_name(tmp_path):
    data, affine = dh.ct_values(), dh.oblique_affine(degrees=0.0)
    files = dh.series(tmp_path / "ct", data, affine)
    names = [f.name for f in files]
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    for f in files:
        f.rename(f.with_name("tmp-" + f.name))
    for old, new in zip(names, shuffled, strict=True):
        (tmp_path / "ct" / f"tmp-{old}").rename(tmp_path / "ct" / new)
    vol = read_dicom_series(tmp_path / "ct").volume
    np.testing.assert_array_equal(vol.data, data)  # z along the slice normal, as written
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)


def test_import_matches_dcm2niix(tmp_path):
    """Same voxel grid and orientation (within 1e-3 mm) and the same values as dcm2niix."""
    exe = shutil.which("dcm2niix")
    assert exe, "dcm2niix not installed: bash scripts/setup.sh test installs it"
    data, affine = dh.mr_values(), dh.oblique_affine(degrees=23.0)
    dh.series(tmp_path / "mr", data, affine, modality="MR")
    ours = read_dicom_series(tmp_path / "mr").volume
    (tmp_path / "nii").mkdir()
    subprocess.run(
        [exe, "-z", "n", "-f", "mr", "-o", str(tmp_path / "nii"), str(tmp_path / "mr")],
        check=True,
        capture_output=True,
    )
    theirs = read_volume(tmp_path / "nii" / "mr.nii")
    assert theirs.data.shape == ours.data.shape
    on_ours = dh.to_grid(theirs.data, theirs.affine, ours.affine, ours.data.shape, atol_mm=1e-3)
    np.testing.assert_allclose(on_ours, ours.data, rtol=1e-5, atol=1e-3)
    written = dh.to_grid(ours.data, ours.affine, affine, data.shape)
    half_step = (data.max() - data.min()) / 65534 / 2  # stored as int16 with a slope
    np.testing.assert_allclose(written, data, rtol=0, atol=half_step * 1.01)


def test_several_series_are_listed_and_picked_by_uid(tmp_path):
    folder, t1, t2 = dh.two_series(tmp_path / "study")
    with pytest.raises(ScanError, match="holds 2 series: pick one with --series UID") as err:
        import_scan(folder, tmp_path / "a.zarr")
    assert t1 in str(err.value) and t2 in str(err.value) and "'T1'" in str(err.value)
    scan = import_scan(folder, tmp_path / "b.zarr", series=t2)
    assert scan.shape == (6, 24, 28) and scan.dicom["series_uid"] == t2
    one_file = next((folder / "a").iterdir())  # a file stands for its series
    assert import_scan(one_file, tmp_path / "c.zarr").dicom["series_uid"] == t1
    with pytest.raises(ScanError, match="has no series 1.2.3"):
        import_scan(folder, tmp_path / "d.zarr", series="1.2.3")


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (dh.missing_slice, "1 slice(s) missing between"),
        (dh.uneven_spacing, "slice spacing varies"),
        (dh.gantry_tilt, "gantry tilt of 10.0 degrees"),
        (dh.echoes, "20 images at 10 slice positions"),
        (dh.compressed, "compressed as JPEG Lossless"),
        (dh.multiframe, "multi-frame"),
        (dh.mixed_sizes, "mixes 2 image sizes"),
    ],
)
def test_odd_series_are_refused_with_a_reason(tmp_path, build, fragment):
    folder = build(tmp_path / "in")
    with pytest.raises(ScanError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        import_scan(folder, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_a_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    with pytest.raises(ScanError, match="holds no DICOM images"):
        import_scan(tmp_path / "notes", tmp_path / "out.zarr")


@pytest.mark.slow
def test_seg_round_trip_of_a_prediction(tmp_path):
    """DICOM in, train, predict, SEG out: dciodvfy finds no error, and highdicom reads back the
    prediction on the source images and on the source geometry."""
    tiny = tiny_scan(tmp_path / "tiny.zarr")
    dh.series(tmp_path / "mr", np.asarray(tiny.image[...]), dh.oblique_affine(), modality="MR")
    scan = import_scan(tmp_path / "mr", tmp_path / "mr.zarr", classes=["lesion"])
    scan.write_annotations(np.asarray(tiny.annotations[...]))
    list(fit(scan, tiny_config(steps=4, val_every=4), tmp_path / "model"))
    list(predict(scan, tmp_path / "model"))
    pred = np.asarray(scan.result("prediction")[...])
    assert pred.any()
    out = export_mask(scan, tmp_path / "seg.dcm")
    assert dh.dciodvfy(out) == []
    np.testing.assert_array_equal(read_seg(out, scan.dicom["sop_instance_uids"]), pred)
    seg = hd.seg.segread(str(out))
    vol = seg.get_volume(combine_segments=True)
    on_scan = dh.to_grid(pred, scan.affine, np.diag([-1.0, -1, 1, 1]) @ vol.affine, vol.shape)
    np.testing.assert_array_equal(on_scan, np.asarray(vol.array))  # the geometry, not just UIDs
    assert seg.SeriesInstanceUID != scan.dicom["series_uid"]
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == scan.dicom["series_uid"]
    desc = seg.SegmentSequence[0]
    assert (desc.SegmentLabel, desc.SegmentAlgorithmType) == ("lesion", "AUTOMATIC")
    assert desc.SegmentAlgorithmName == "model"  # the model folder's name
    assert seg.Manufacturer == "napari-asymseg"


def test_multi_class_seg_stays_multi_class(tmp_path):
    dh.series(tmp_path / "ct", modality="CT")
    scan = import_scan(tmp_path / "ct", tmp_path / "ct.zarr", classes=["tumour", "liver"])
    mask = np.zeros(scan.shape, np.uint8)
    mask[2:5, 3:9, 4:10], mask[6:9, 12:20, 10:22] = 1, 2
    scan.write_annotations(mask + 1)
    out = export_mask(scan, tmp_path / "seg.dcm", what="annotations")
    assert dh.dciodvfy(out) == []
    seg = hd.seg.segread(str(out))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["tumour", "liver"]
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"MANUAL"}
    liver = seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0]
    assert (liver.CodeValue, liver.CodeMeaning) == ("10200004", "Liver")
    np.testing.assert_array_equal(read_seg(out, scan.dicom["sop_instance_uids"]), mask)


def test_seg_of_a_scan_not_from_dicom_writes_its_image_series(tmp_path):
    scan = tiny_scan(tmp_path / "tiny.zarr")
    with pytest.raises(ScanError, match="--modality CT or MR"):
        export_mask(scan, tmp_path / "seg.dcm", what="ground_truth")
    out = export_mask(scan, tmp_path / "seg.dcm", what="ground_truth", modality="MR")
    assert dh.dciodvfy(out) == []
    images = read_dicom_series(tmp_path / "seg_image")
    truth = np.asarray(scan.ground_truth[...])
    labels = read_seg(out, images.provenance["sop_instance_uids"])
    np.testing.assert_array_equal(labels, truth)
    np.testing.assert_allclose(images.volume.affine, scan.affine, atol=1e-4)


def test_seg_refuses_when_the_source_series_has_moved(tmp_path):
    dh.series(tmp_path / "ct")
    scan = import_scan(tmp_path / "ct", tmp_path / "ct.zarr")
    shutil.rmtree(tmp_path / "ct")
    with pytest.raises(ScanError, match="no longer at"):
        export_mask(scan, tmp_path / "seg.dcm", what="annotations")
    assert not (tmp_path / "seg.dcm").exists()


@pytest.mark.parametrize(
    ("name", "category", "concept"),
    [
        ("tumour", "Morphologically Abnormal Structure", "Tumor"),
        ("hippocampus", "Anatomical Structure", "Hippocampus"),
        ("lesion", "Morphologically Abnormal Structure", "Lesion"),
        ("class1", "Morphologically Abnormal Structure", "Lesion"),
    ],
)
def test_class_names_get_snomed_codes(name, category, concept):
    cat, typ = coded_class(name)
    assert (cat.meaning, typ.meaning) == (category, concept)


def test_scan_remembers_its_series_after_reopening(tmp_path):
    dh.series(tmp_path / "ct")
    import_scan(tmp_path / "ct", tmp_path / "ct.zarr")
    again = Scan.open(tmp_path / "ct.zarr", mode="r")
    assert len(again.dicom["files"]) == dh.SHAPE[0]


def test_the_command_line_imports_a_series_and_exports_a_seg(tmp_path, capsys):
    import json

    from napari_asymseg.cli.main import main

    folder, _t1, t2 = dh.two_series(tmp_path / "study")
    out = str(tmp_path / "b.zarr")
    assert main(["import", str(folder), out, "--series", t2, "--classes", "tumour"]) == 0
    assert f"from CT series {t2}" in capsys.readouterr().out
    assert main(["info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["DICOM series"], info["DICOM images"]) == (t2, 6)
    Scan.open(out).write_annotations(np.full((6, 24, 28), 2, np.uint8))
    seg = str(tmp_path / "b.dcm")
    assert main(["export", out, seg, "--what", "annotations"]) == 0
    assert dh.dciodvfy(tmp_path / "b.dcm") == []


def test_a_losslessly_compressed_series_imports_exactly(tmp_path):
    """JPEG-LS lossless (decoded by pyjpegls, which highdicom installs) and RLE (pydicom)."""
    from pydicom.uid import JPEGLSLossless, RLELossless

    data = dh.ct_values()
    files = dh.series(tmp_path / "ct", data, dh.oblique_affine(degrees=0.0))
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.compress(JPEGLSLossless if i % 2 else RLELossless)
        ds.save_as(f)
    assert pydicom.dcmread(files[1]).file_meta.TransferSyntaxUID == JPEGLSLossless
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "ct").volume.data, data)
