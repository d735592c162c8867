"""``asymseg study``: init, add, status, done end to end; bad input is one line and exit 2.

(Named test_study_cli.py: test modules are imported by their file name, which must be unique.)
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_asymseg.cli.main import build_parser, main
from napari_asymseg.store.scan import Scan
from napari_asymseg.study.study import STUDY_FILE, Study

SHAPE = (16, 32, 32)


def make_scan(path, *, painted=(), classes=("lesion",)) -> str:
    ann = np.zeros(SHAPE, np.uint8)
    for z in painted:
        ann[z] = 1
        ann[z, 10:14, 10:14] = 2
    Scan.create(path, np.zeros(SHAPE, np.float32), annotations=ann, classes=classes)
    return str(path)


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own refusals
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("asymseg: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_init_add_status_done(tmp_path, capsys):
    study = tmp_path / "study"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE[::-1], np.float32), np.eye(4)), tmp_path / "b.nii.gz")
    assert run(capsys, "study", "init", study)[0] == 0
    rc, out, _ = run(
        capsys, "study", "add", study, make_scan(tmp_path / "a.zarr", painted=[4, 8]),
        tmp_path / "b.nii.gz",
    )  # fmt: skip
    assert rc == 0 and "added 2 scan(s)" in out
    assert Study.open(study).names == ["a", "b"]

    rc, out, _ = run(capsys, "study", "status", study)
    assert rc == 0
    assert out.splitlines() == [
        "a: 2 painted slices (2 with lesion), not predicted",
        "b: nothing painted, not predicted",
        "2 scans: 1 annotated, 0 predicted, 0 done",
        f"next to annotate: b ({study / 'scans' / 'b.zarr'})",
    ]

    assert run(capsys, "study", "done", study, "b")[0] == 0
    rc, out, _ = run(capsys, "study", "status", study)
    assert "b: nothing painted, not predicted, done" in out and "next to annotate: a" in out
    assert run(capsys, "study", "done", study, "a")[0] == 0
    assert "every scan is done" in run(capsys, "study", "status", study)[1]
    assert run(capsys, "study", "done", study, "b", "--undo")[0] == 0
    assert json.loads((study / STUDY_FILE).read_text())["scans"][1]["done"] is False


def test_add_with_classes_names_an_imported_image(tmp_path, capsys):
    nib.save(nib.Nifti1Image(np.zeros(SHAPE[::-1], np.float32), np.eye(4)), tmp_path / "b.nii")
    run(capsys, "study", "init", tmp_path / "s")
    assert (
        run(capsys, "study", "add", tmp_path / "s", tmp_path / "b.nii", "--classes", "hc")[0] == 0
    )
    assert Study.open(tmp_path / "s").classes == ("hc",)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["study", "status", "{tmp}/nowhere"], "not a study"),
        (["study", "add", "{tmp}/s", "{tmp}/missing.zarr"], "no scan or image at"),
        (["study", "add", "{tmp}/s", "{tmp}/a.zarr"], "in the study already"),
        (["study", "add", "{tmp}/s", "{tmp}/t.zarr"], "has the classes tumour"),
        (["study", "done", "{tmp}/s", "zz"], "no scan named zz"),
        (["study", "init", "{tmp}/s"], "is a study already"),
        (["study", "frobnicate", "{tmp}/s"], "invalid choice"),
        (["study", "add", "{tmp}/s"], "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, fragment):
    run(capsys, "study", "init", tmp_path / "s")
    run(capsys, "study", "add", tmp_path / "s", make_scan(tmp_path / "a.zarr"))
    make_scan(tmp_path / "t.zarr", classes=("tumour",))
    before = (tmp_path / "s" / STUDY_FILE).read_text()
    rc, _, err = run(capsys, *(a.format(tmp=tmp_path) for a in args))
    assert rc == 2
    assert fragment in one_error_line(err)
    assert (tmp_path / "s" / STUDY_FILE).read_text() == before


def test_the_parser_takes_several_scans_to_train_and_a_study_to_predict_and_review():
    parser = build_parser("train")
    assert parser.parse_args(["train", "a.zarr", "b.zarr"]).scan == ["a.zarr", "b.zarr"]
    assert parser.parse_args(["train", "study"]).scan == ["study"]
    assert parser.parse_args(["predict", "study", "--model", "m"]).scan == "study"
    quality = parser.parse_args(["study", "quality", "s", "--steps", "5"])
    assert (quality.steps, quality.seed, quality.dir) == (5, 0, "s")
    assert callable(quality.func)
