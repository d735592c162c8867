import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
import zarr

from napari_asymseg.errors import ScanError
from napari_asymseg.io.exporters import export_mask, read_mask
from napari_asymseg.io.importers import import_scan, labels_to_annotations, read_volume, suffix
from napari_asymseg.store.scan import Scan

OBLIQUE = np.array(
    [[0.0, -0.8, 0.0, 10.0], [0.0, 0.0, 3.0, 20.0], [-0.9, 0.0, 0.0, 5.0], [0, 0, 0, 1]]
)


@pytest.fixture
def nifti_pair(tmp_path, volume, labels):
    """Image and labels in NIfTI (i, j, k) order with an oblique-permuted affine."""
    img, lab = volume.transpose(2, 1, 0), labels.transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(img, OBLIQUE), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(lab, OBLIQUE), tmp_path / "lab.nii.gz")
    return tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz"


def test_suffix():
    assert suffix("a/b.nii.gz") == ".nii.gz"
    assert suffix("x.OME.ZARR") == ".ome.zarr"
    assert suffix("x.nrrd") == ".nrrd"


def test_labels_to_annotations():
    ann = labels_to_annotations(np.array([[[0, 1, 2]]]))
    np.testing.assert_array_equal(ann, [[[1, 2, 3]]])
    ann = labels_to_annotations(np.array([[[0, 37, 38, 5]]]), {37: 1, 38: 1})
    np.testing.assert_array_equal(ann, [[[1, 2, 2, 1]]])


@pytest.mark.parametrize("ext", [".nii.gz", ".nii"])
def test_nifti_round_trip_keeps_labels_and_affine(tmp_path, nifti_pair, labels, ext):
    image, lab = nifti_pair
    scan = import_scan(image, tmp_path / "s.zarr", labels=lab, classes=["a", "b"])
    assert scan.shape == labels.shape
    assert scan.spacing == pytest.approx((3.0, 0.8, 0.9))
    ann = scan.read_annotations()
    np.testing.assert_array_equal(ann, labels + 1)
    out = export_mask(scan, tmp_path / f"mask{ext}", what="annotations")
    back = nib.load(out)
    np.testing.assert_array_equal(np.asarray(back.dataobj), labels.transpose(2, 1, 0))
    np.testing.assert_allclose(back.affine, OBLIQUE, atol=1e-6)
    np.testing.assert_allclose(nib.load(image).affine, back.affine, atol=1e-6)


def test_itk_formats_agree_with_nifti(tmp_path, volume):
    """NRRD / MHA (LPS) and NIfTI (RAS) written by one library give the same scan geometry."""
    img = sitk.GetImageFromArray(volume)
    img.SetSpacing((0.5, 0.6, 2.0))
    img.SetOrigin((1.0, 2.0, 3.0))
    img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    vols = {}
    for ext in (".nrrd", ".mha", ".nii.gz"):
        sitk.WriteImage(img, str(tmp_path / f"i{ext}"))
        vols[ext] = read_volume(tmp_path / f"i{ext}")
    for ext in (".nrrd", ".mha"):
        np.testing.assert_array_equal(vols[ext].data, volume)
        np.testing.assert_allclose(vols[ext].affine, vols[".nii.gz"].affine, atol=1e-5)
    assert vols[".nrrd"].spacing == pytest.approx((2.0, 0.6, 0.5))


def test_nrrd_import_export_nifti(tmp_path, volume, labels):
    img = sitk.GetImageFromArray(volume)
    img.SetSpacing((0.5, 0.6, 2.0))
    sitk.WriteImage(img, str(tmp_path / "i.nrrd"))
    lab = sitk.GetImageFromArray(labels)
    lab.CopyInformation(img)
    sitk.WriteImage(lab, str(tmp_path / "l.nrrd"))
    scan = import_scan(tmp_path / "i.nrrd", tmp_path / "s.zarr", labels=tmp_path / "l.nrrd")
    assert scan.classes == ("class1", "class2")
    out = export_mask(scan, tmp_path / "m.nii.gz", what="annotations")
    back = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)
    assert back.GetSpacing() == pytest.approx((0.5, 0.6, 2.0))


def test_tiff_round_trip_spacing(tmp_path, volume, labels):
    tifffile.imwrite(
        tmp_path / "i.tif",
        volume,
        imagej=True,
        resolution=(1 / 0.4, 1 / 0.4),
        metadata={"spacing": 2.5, "unit": "mm", "axes": "ZYX"},
    )
    tifffile.imwrite(tmp_path / "l.tif", labels, imagej=True, metadata={"axes": "ZYX"})
    scan = import_scan(tmp_path / "i.tif", tmp_path / "s.zarr", labels=tmp_path / "l.tif")
    assert scan.spacing == pytest.approx((2.5, 0.4, 0.4), rel=1e-4)
    out = export_mask(scan, tmp_path / "m.tif", what="annotations")
    back = read_mask(out)
    np.testing.assert_array_equal(back.data, labels)
    assert back.spacing == pytest.approx(scan.spacing, rel=1e-4)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_import(tmp_path, volume, version):
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt, zf = (FormatV04(), 2) if version == "0.4" else (FormatV05(), 3)
    root = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=zf)
    write_image(
        volume, root, scale_factors=[2], fmt=fmt, axes="zyx", scale={"z": 2.0, "y": 0.5, "x": 0.25}
    )
    scan = import_scan(tmp_path / "img.ome.zarr", tmp_path / "s.zarr")
    np.testing.assert_array_equal(scan.image[...], volume)
    assert scan.spacing == pytest.approx((2.0, 0.5, 0.25))


def test_ome_zarr_export_is_readable_by_ome_zarr(tmp_path, scan):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    out = export_mask(scan, tmp_path / "m.ome.zarr", what="annotations")
    nodes = list(Reader(parse_url(str(out)))())
    specs = {type(spec).__name__ for node in nodes for spec in node.specs}
    assert {"Multiscales", "Label"} <= specs
    label = next(n for n in nodes if any(type(s).__name__ == "Label" for s in n.specs))
    np.testing.assert_array_equal(
        np.asarray(label.data[0]), np.where(scan.read_annotations() > 1, 1, 0)
    )
    mask = read_mask(out)
    np.testing.assert_array_equal(mask.data, np.where(scan.read_annotations() > 1, 1, 0))
    assert mask.spacing == pytest.approx(scan.spacing)


def test_four_d_needs_a_channel(tmp_path, volume):
    data = np.stack([volume, volume * 2], axis=-1).transpose(2, 1, 0, 3)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "4d.nii.gz")
    with pytest.raises(ScanError, match="4D.*--channel"):
        read_volume(tmp_path / "4d.nii.gz")
    np.testing.assert_array_equal(read_volume(tmp_path / "4d.nii.gz", channel=1).data, volume * 2)
    with pytest.raises(ScanError, match="out of range"):
        read_volume(tmp_path / "4d.nii.gz", channel=5)


def test_labels_on_another_grid_are_refused(tmp_path, nifti_pair):
    image, _ = nifti_pair
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), OBLIQUE), tmp_path / "small.nii.gz")
    with pytest.raises(ScanError, match="does not match the image"):
        import_scan(image, tmp_path / "s.zarr", labels=tmp_path / "small.nii.gz")
    assert not (tmp_path / "s.zarr").exists()


def test_unreadable_and_unknown_files(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti at all")
    with pytest.raises(ScanError, match="cannot read broken.nii.gz"):
        read_volume(tmp_path / "broken.nii.gz")
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(ScanError, match="unknown format .jpg"):
        read_volume(tmp_path / "x.jpg")
    with pytest.raises(ScanError, match="no such file"):
        read_volume(tmp_path / "nope.nii.gz")


def test_export_refuses_to_overwrite_and_missing_prediction(tmp_path, scan):
    out = export_mask(scan, tmp_path / "m.nii.gz", what="annotations")
    before = out.read_bytes()
    with pytest.raises(ScanError, match="already exists"):
        export_mask(scan, out, what="annotations")
    assert out.read_bytes() == before
    with pytest.raises(ScanError, match="no prediction.*run a prediction"):
        export_mask(scan, tmp_path / "p.nii.gz")
    with pytest.raises(ScanError, match="cannot export to m.png"):
        export_mask(scan, tmp_path / "m.png", what="annotations")


def test_export_prediction(tmp_path, scan):
    pred = np.zeros(scan.shape, np.uint8)
    pred[2:4] = 1
    scan.write_result("prediction", pred)
    out = export_mask(Scan.open(scan.path), tmp_path / "p.nii.gz")
    np.testing.assert_array_equal(read_mask(out).data, pred)
