"""Scoring a scan's prediction against its ground truth or a reference file (no Qt)."""

import numpy as np
import pytest

from napari_asymseg.errors import ScanError
from napari_asymseg.evaluate.scoring import evaluate_scan
from napari_asymseg.io.exporters import export_mask
from napari_asymseg.store.scan import Scan


@pytest.fixture
def truth(volume):
    mask = np.zeros(volume.shape, np.uint8)
    mask[2, 0:4, 0:4] = 1  # 16 voxels of class a
    mask[8, 0:2, 0:2] = 2  # 4 voxels of class b
    return mask


@pytest.fixture
def predicted(tmp_path, volume, truth) -> Scan:
    """A scan whose prediction finds 12 of a's 16 voxels plus 4 false ones, and misses b."""
    scan = Scan.create(tmp_path / "s.zarr", volume, classes=("a", "b"), ground_truth=truth)
    pred = np.zeros(volume.shape, np.uint8)
    pred[2, 0:3, 0:4] = 1
    pred[3, 0:1, 0:4] = 1
    scan.write_result("prediction", pred)
    return scan


def test_against_the_scans_ground_truth(predicted):
    report = evaluate_scan(predicted)
    assert report["what"] == "prediction" and report["scan"] == str(predicted.path)
    a, b = report["classes"]["a"], report["classes"]["b"]
    assert (a["tp"], a["fp"], a["fn"]) == (12, 4, 4)
    assert a["dsc"] == pytest.approx(2 * 12 / (2 * 12 + 4 + 4))
    assert a["sensitivity"] == pytest.approx(12 / 16) and a["precision"] == pytest.approx(12 / 16)
    assert (b["tp"], b["fp"], b["fn"]) == (0, 0, 4) and b["sensitivity"] == 0.0


def test_against_a_reference_file(tmp_path, predicted, truth):
    ref = truth.copy()
    ref[3, 0:1, 0:4] = 1  # the "false" voxels are right by this reference
    path = export_mask(predicted, tmp_path / "ref.nii.gz", mask=ref)
    report = evaluate_scan(str(predicted.path), truth=path)  # a path opens the scan read-only
    assert report["classes"]["a"]["fp"] == 0 and report["classes"]["a"]["tp"] == 16


def test_annotations_can_be_scored_too(tmp_path, volume, truth):
    ann = np.zeros(volume.shape, np.uint8)
    ann[2] = 1  # background painted over slice 2 ...
    ann[2, 0:4, 0:2] = 2  # ... and half of class a's square
    scan = Scan.create(
        tmp_path / "s.zarr", volume, classes=("a", "b"), annotations=ann, ground_truth=truth
    )
    a = evaluate_scan(scan, what="annotations")["classes"]["a"]
    assert (a["tp"], a["fp"], a["fn"]) == (8, 0, 8)


def test_without_a_reference_says_how_to_give_one(scan):
    scan.write_result("prediction", np.zeros(scan.shape, np.uint8))
    with pytest.raises(ScanError, match="has no ground truth: pass --truth MASK_FILE"):
        evaluate_scan(scan)


def test_a_reference_on_another_grid_is_refused(tmp_path, predicted):
    other = Scan.create(tmp_path / "other.zarr", np.zeros((4, 5, 6), np.float32))
    path = export_mask(other, tmp_path / "small.nii.gz", mask=np.zeros((4, 5, 6), np.uint8))
    with pytest.raises(ScanError, match=r"reference mask is \(4, 5, 6\).*scan's grid"):
        evaluate_scan(predicted, truth=path)
