"""Lesion-wise scores: detected, missed and false lesions, their volumes and extents."""

import numpy as np
import pytest

from napari_asymseg.cli.main import main
from napari_asymseg.evaluate.lesions import lesion_report, summary_line
from napari_asymseg.store.scan import Scan

SPACING = (2.0, 0.5, 0.5)  # one voxel is 0.5 mm³


@pytest.fixture
def masks():
    ref = np.zeros((10, 20, 20), np.uint8)
    ref[1:3, 1:5, 1:5] = 1  # lesion A: 32 voxels
    ref[5, 10:12, 10:12] = 1  # lesion B: 4 voxels
    ref[8, 15, 15] = 1  # lesion C: 1 voxel, missed
    ref[8, 1:3, 1:3] = 2  # a lesion of class 2
    pred = np.zeros_like(ref)
    pred[1, 1:5, 1:5] = 1  # half of A
    pred[5, 10:12, 10:12] = 1  # all of B
    pred[5, 12, 12] = 1  # touches B diagonally: the same predicted lesion
    pred[0, 18:20, 0:2] = 1  # false: touches no reference lesion
    pred[8, 1:3, 1:3] = 1  # class 1 on a class-2 lesion: false for class 1, a miss of class 2
    return pred, ref


def test_detected_missed_and_false_lesions(masks):
    pred, ref = masks
    report = lesion_report(pred, SPACING, 2, ref)
    one, two = report[1], report[2]
    assert (one["detected"], one["missed"], one["false"]) == (2, 1, 2)
    assert one["lesion_sensitivity"] == pytest.approx(2 / 3)
    assert one["lesion_precision"] == pytest.approx(2 / 4)  # 4 predicted, 2 touch a lesion
    a, b, c = one["reference"]
    assert a["voxels"] == 32 and a["sensitivity"] == pytest.approx(0.5) and a["detected"]
    assert a["millilitres"] == pytest.approx(32 * 0.5 / 1000)
    assert a["extent_mm"] == (4.0, 2.0, 2.0)  # 2 slices of 2 mm, 4 voxels of 0.5 mm
    assert b["sensitivity"] == 1.0 and not c["detected"] and c["sensitivity"] == 0.0
    assert len(one["predicted"]) == 4  # the diagonal neighbour joined B's lesion
    assert sum(p["false"] for p in one["predicted"]) == 2
    assert (two["detected"], two["missed"], two["false"]) == (0, 1, 0)


def test_without_a_reference_the_predicted_lesions(masks):
    pred, _ = masks
    report = lesion_report(pred, SPACING, 2)
    assert len(report[1]["predicted"]) == 4 and "detected" not in report[1]
    line = summary_line("lesion", report[1])
    assert line.startswith("lesion: 4 predicted lesion(s), ")
    assert summary_line("lesion", lesion_report(pred, SPACING, 2, masks[1])[1]).startswith(
        "lesion: 3 lesion(s) in the reference, 2 detected, 1 missed"
    )


def test_cli_lists_lesions_with_and_without_a_reference(tmp_path, masks, capsys):
    pred, ref = masks
    image = np.random.default_rng(0).normal(size=pred.shape).astype(np.float32)
    scan = Scan.create(tmp_path / "s.zarr", image, spacing=SPACING, classes=("a", "b"))
    scan.write_result("prediction", pred)
    # no reference: the predicted lesions alone, with --lesions; a clear refusal without
    assert main(["evaluate", str(scan.path)]) == 2
    capsys.readouterr()
    assert main(["evaluate", str(scan.path), "--lesions"]) == 0
    out = capsys.readouterr().out
    assert "a: 4 predicted lesion(s)" in out and out.count("  predicted ") == 4
    truth = Scan.create(
        tmp_path / "t.zarr", image, spacing=SPACING, classes=("a", "b"), ground_truth=ref
    )
    truth.write_result("prediction", pred)
    assert main(["evaluate", str(truth.path), "--lesions"]) == 0
    out = capsys.readouterr().out
    assert "a: 3 lesion(s) in the reference, 2 detected, 1 missed" in out
    assert out.count("  missed ") == 2 and out.count("  false ") == 2  # class a: 1; b: 1
