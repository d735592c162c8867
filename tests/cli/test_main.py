import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_asymseg.cli.main import main
from napari_asymseg.store.scan import Scan


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process, as a user or a script runs it."""
    return subprocess.run(
        [sys.executable, "-m", "napari_asymseg.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def save_nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return str(path)


def test_import_info_export(tmp_path, volume, labels, capsys):
    img = save_nifti(tmp_path / "img.nii.gz", volume)
    lab = save_nifti(tmp_path / "lab.nii.gz", labels)
    out = str(tmp_path / "s.zarr")
    assert main(["import", img, out, "--labels", lab, "--classes", "liver,lesion"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == ["liver", "lesion"]
    assert info["annotated per class"] == {
        "liver": int((labels == 1).sum()),
        "lesion": int((labels == 2).sum()),
    }
    assert info["annotated voxels"] == labels.size
    assert main(["export", out, str(tmp_path / "m.nii.gz"), "--what", "annotations"]) == 0
    back = nib.load(tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(np.asarray(back.dataobj), labels)


def test_label_map(tmp_path, volume):
    atlas = np.zeros(volume.shape, np.uint8)
    atlas[1:3] = 37
    atlas[5:6] = 38
    atlas[8:9] = 12
    img = save_nifti(tmp_path / "img.nii.gz", volume)
    lab = save_nifti(tmp_path / "aal.nii.gz", atlas)
    out = tmp_path / "s.zarr"
    code = main(
        [
            "import",
            img,
            str(out),
            "--truth",
            lab,
            "--label-map",
            "37:1,38:1",
            "--classes",
            "hippocampus",
        ]
    )
    assert code == 0
    scan = Scan.open(out)
    # NIfTI (i, j, k) is stored as (k, j, i)
    expected = np.isin(atlas, (37, 38)).transpose(2, 1, 0)
    np.testing.assert_array_equal(scan.ground_truth[...], expected)
    assert scan.annotation_counts() == {0: volume.size}  # truth is not an annotation


BAD_INPUTS = {
    "2D image": (
        lambda d: save_nifti(d / "x.nii.gz", np.zeros((5, 6), np.float32)),
        [],
        "3D volume",
    ),
    "4D image": (
        lambda d: save_nifti(d / "x.nii.gz", np.zeros((5, 6, 7, 2), np.float32)),
        [],
        "--channel",
    ),
    "NaN image": (
        lambda d: save_nifti(d / "x.nii.gz", np.full((5, 6, 7), np.nan, np.float32)),
        [],
        "NaN",
    ),
    "missing file": (lambda d: str(d / "nope.nii.gz"), [], "no such file"),
    "corrupt file": (
        lambda d: (d / "x.nii.gz").write_bytes(b"garbage") and str(d / "x.nii.gz"),
        [],
        "cannot read",
    ),
    "mismatched labels": (
        lambda d: save_nifti(d / "x.nii.gz", np.zeros((5, 6, 7), np.float32)),
        ["--labels", "LABELS"],
        "does not match the image",
    ),
    "bad label map": (
        lambda d: save_nifti(d / "x.nii.gz", np.zeros((5, 6, 7), np.float32)),
        ["--label-map", "37=1"],
        "SOURCE:CLASS",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exit_code_2_one_line(tmp_path, case):
    make, extra, message = BAD_INPUTS[case]
    image = make(tmp_path)
    save_nifti(tmp_path / "labels.nii.gz", np.zeros((2, 2, 2), np.uint8))
    extra = [str(tmp_path / "labels.nii.gz") if e == "LABELS" else e for e in extra]
    result = run_cli("import", image, str(tmp_path / "out.zarr"), *extra)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("asymseg: error")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.zarr").exists()


def test_bad_scans_exit_code_2(tmp_path, scan):
    assert run_cli("info", str(tmp_path / "missing.zarr")).returncode == 2
    (scan.path / "zarr.json").write_text("{")
    result = run_cli("info", str(scan.path))
    assert result.returncode == 2
    assert "not a readable zarr group" in result.stderr and "Traceback" not in result.stderr


def test_existing_output_is_kept(tmp_path, volume, scan):
    img = save_nifti(tmp_path / "img.nii.gz", volume)
    before = scan.read_annotations()
    result = run_cli("import", img, str(scan.path))
    assert result.returncode == 2 and "already exists" in result.stderr
    np.testing.assert_array_equal(Scan.open(scan.path).read_annotations(), before)


def test_help_explains_every_option():
    result = run_cli("import", "--help")
    assert result.returncode == 0
    for option in (
        "--labels",
        "--truth",
        "--label-map",
        "--classes",
        "--channel",
        "--multiscale",
        "--zarr-format",
        "--overwrite",
    ):
        assert option in result.stdout


def test_sample_command(tmp_path, capsys):
    assert main(["sample", "lesions", str(tmp_path / "s.zarr"), "--seed", "3"]) == 0
    scan = Scan.open(tmp_path / "s.zarr")
    assert scan.ground_truth is not None
    assert scan.annotation_counts()[2] > 0


def test_scan_commands_do_not_import_torch(scan):
    """Only train and predict need torch; the others start in a fraction of a second."""
    code = (
        "import sys; from napari_asymseg.cli.main import main; "
        f"rc = main(['info', {str(scan.path)!r}]); "
        "sys.exit(rc or (3 if 'torch' in sys.modules else 0))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
