"""The npe2 writer hook without a viewer: a labels layer's data and metadata -> a mask file."""

import numpy as np
import pytest

from napari_asymseg.errors import ScanError
from napari_asymseg.io.exporters import read_mask
from napari_asymseg.io.napari_writer import write_labels
from napari_asymseg.store import annotations as codes


def layer_meta(scan, role):
    """What napari passes for a labels layer opened by the asymseg reader (its state)."""
    return {"name": f"x {role}", "metadata": {"asymseg": {"scan": str(scan.path), "role": role}}}


def test_annotations_layer_is_written_as_a_mask_as_shown(tmp_path, scan):
    shown = scan.read_annotations()
    shown[7, 1:3, 1:3] = codes.code_of_class(1)  # painted, not yet saved to the scan
    written = write_labels(str(tmp_path / "ann.nii.gz"), shown, layer_meta(scan, "annotations"))
    assert written == [str(tmp_path / "ann.nii.gz")]
    back = read_mask(written[0])
    np.testing.assert_array_equal(back.data, codes.to_mask(shown))
    assert back.data[7, 1, 1] == 1 and back.data[5, 0, 0] == 0  # painted background: 0
    np.testing.assert_allclose(back.affine, scan.affine)


def test_prediction_layer_is_written_unchanged_and_replaces_a_file(tmp_path, scan):
    out = tmp_path / "pred.tif"
    out.write_bytes(b"an older export")  # napari asked for this name: it is replaced
    data = np.zeros(scan.shape, np.uint8)
    data[1, 2, 3] = 1
    write_labels(str(out), data, layer_meta(scan, "prediction"))
    back = read_mask(out)
    np.testing.assert_array_equal(back.data, data)
    assert back.spacing == pytest.approx(scan.spacing, rel=1e-4)


def test_a_layer_of_another_program_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="save other layers with napari's own writer"):
        write_labels(str(tmp_path / "x.nii.gz"), np.zeros((2, 2, 2), np.uint8), {"metadata": {}})
    with pytest.raises(ValueError, match="asymseg writer saves layers of asymseg scans"):
        write_labels(str(tmp_path / "x.nii.gz"), np.zeros((2, 2, 2), np.uint8), {})
    assert not (tmp_path / "x.nii.gz").exists()


def test_a_layer_reshaped_away_from_its_scan_is_refused(tmp_path, scan):
    with pytest.raises(ScanError, match="export a layer of this scan"):
        write_labels(
            str(tmp_path / "x.nii.gz"),
            np.zeros((2, 2, 2), np.uint8),
            layer_meta(scan, "prediction"),
        )
