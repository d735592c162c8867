"""The bad-input table: every entry point, every kind of malformed input.

Each row builds one bad input in a copy of a small workspace (a scan with annotations, an
image file, a trained model), runs the real ``asymseg`` entry point on it, and checks the
three promises of docs/guarantees.md: exit code 2, one ``asymseg: error:`` line that names the
problem (the row's fragment) and no traceback, and not one existing file changed, added or
removed. Read-only destinations and a full disk are simulated (the tests run as root, which
ignores permissions): every write below the destination fails with EROFS or ENOSPC.
"""

from __future__ import annotations

import builtins
import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

import dicom_helpers as dh
from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.cli.main import main
from napari_asymseg.io.importers import import_scan
from napari_asymseg.model.bundle import export_bundle
from napari_asymseg.store.lock import LOCK_FILE, ScanLock
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.loop import fit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """scan.zarr (annotated, with ground truth), img.nii.gz on its grid, a trained model/."""
    root = tmp_path_factory.mktemp("workspace")
    scan = tiny_scan(root / "scan.zarr")
    ScanLock(scan.path, "test").release()  # the lock file exists from the first writer on
    list(fit(scan, tiny_config(steps=4, val_every=4), root / "model"))
    export_bundle(root / "model", root / "bundle", onnx=False, torchscript=False)
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 16), np.float32), np.eye(4)), root / "img.nii.gz")
    (root / "out").mkdir()  # where outputs go: the read-only and full-disk rows fail in here
    return root


@pytest.fixture
def work(base, tmp_path) -> Path:
    shutil.copytree(base, tmp_path / "w")
    return tmp_path / "w"


def snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root`` with its content hash; the lock file only names its last
    holder (lock.py) and is not the user's data."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


# ----------------------------------------------------------------------------- builders
def nifti(w: Path, data, name="bad.nii.gz", affine=None) -> str:
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), w / name)
    return str(w / name)


def write(w: Path, name: str, content: bytes) -> str:
    (w / name).write_bytes(content)
    return str(w / name)


def truncated_nifti(w: Path) -> str:
    whole = gzip.compress(
        _nifti_bytes(np.random.default_rng(0).normal(size=(40, 40, 16)).astype(np.float32))
    )
    return write(w, "cut.nii.gz", whole[: len(whole) // 2])


def _nifti_bytes(data: np.ndarray) -> bytes:
    img = nib.Nifti1Image(data, np.eye(4))
    return img.to_bytes()


def plain_zarr(w: Path) -> str:
    import zarr

    zarr.open_group(str(w / "plain.zarr"), mode="w").create_array("x", shape=(4,), dtype="u1")
    return str(w / "plain.zarr")


def import_dicom(build: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    """A row's command: ``asymseg import`` of the DICOM folder ``build`` writes in ``w/dcm``."""
    return lambda w: ["import", str(build(w / "dcm")), "OUT/a.zarr"]


def damaged_dicom(folder: Path) -> Path:
    """A series whose middle file is cut in half (its header still parses, its pixels not)."""
    files = dh.series(folder)
    whole = files[5].read_bytes()
    files[5].write_bytes(whole[: len(whole) - 400])
    return folder


def moved_dicom_scan(w: Path) -> str:
    """A scan imported from a DICOM series that has since been deleted."""
    dh.series(w / "dcm")
    import_scan(w / "dcm", w / "fromdicom.zarr")
    shutil.rmtree(w / "dcm")
    return str(w / "fromdicom.zarr")


def corrupt_metadata(w: Path) -> str:
    (w / "scan.zarr" / "zarr.json").write_text("{")
    return str(w / "scan.zarr")


def corrupt_chunk(w: Path) -> str:
    ann = w / "scan.zarr" / "annotations"
    chunks = sorted(p for p in ann.rglob("*") if p.is_file() and p.name != "zarr.json")
    chunks[0].write_bytes(b"\x00garbage")
    return str(w / "scan.zarr")


def missing_image(w: Path) -> str:
    shutil.rmtree(w / "scan.zarr" / "image")
    return str(w / "scan.zarr")


def annotate(w: Path, value: int | None) -> str:
    scan = Scan.open(w / "scan.zarr")
    ann = np.zeros(scan.shape, np.uint8) if value is None else np.full(scan.shape, value, "u1")
    scan.write_annotations(ann)
    return str(w / "scan.zarr")


def corrupt_checkpoint(w: Path) -> str:
    (w / "model" / "best.pt").write_bytes(b"not a checkpoint")
    return str(w / "model")


def truncated_bundle_zip(w: Path) -> str:
    whole = export_bundle(w / "bundle", w / "whole", zip=True, onnx=False, torchscript=False)
    cut = w / "cut.zip"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return str(cut)


def tampered_bundle(w: Path) -> str:
    weights = w / "bundle" / "models" / "model.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return str(w / "bundle")


def newer_bundle(w: Path) -> str:
    meta_path = w / "bundle" / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["asymseg"]["bundle_format"] += 1
    meta_path.write_text(json.dumps(meta))
    return str(w / "bundle")


def config_file(w: Path, text: str) -> str:
    (w / "cfg.json").write_text(text)
    return str(w / "cfg.json")


def other_annotations_resume(w: Path) -> str:
    scan = Scan.open(w / "scan.zarr")
    ann = scan.read_annotations()
    ann[0] = 1
    scan.write_annotations(ann)
    return str(w / "scan.zarr")


def one_painted_lesion_slice(w: Path) -> str:
    """Only slice 4 painted (a lesion, the rest background): nothing to fill between."""
    scan = Scan.open(w / "scan.zarr")
    ann = np.zeros(scan.shape, np.uint8)
    ann[4] = 1
    ann[4, 10:14, 10:14] = 2
    scan.write_annotations(ann)
    return str(w / "scan.zarr")


def painted_on_two_axes(w: Path) -> str:
    """Whole Z slices (the workspace's) and a whole Y plane painted."""
    scan = Scan.open(w / "scan.zarr")
    ann = scan.read_annotations()
    ann[:, 5, :] = 1
    scan.write_annotations(ann)
    return str(w / "scan.zarr")


def every_voxel_painted(w: Path) -> str:
    """Every voxel painted (the truth as annotation): a click grows nothing new."""
    scan = Scan.open(w / "scan.zarr")
    scan.write_annotations(np.asarray(scan.ground_truth[...]) + 1)
    return str(w / "scan.zarr")


def study_with_scan(w: Path, where: str = "study") -> str:
    """A study holding the workspace's scan."""
    from napari_asymseg.study.study import Study

    Study.init(w / where).add([w / "scan.zarr"])
    return str(w / where)


def other_classes_scan(w: Path) -> str:
    Scan.create(w / "tumour.zarr", np.zeros((4, 8, 8), np.float32), classes=("tumour",))
    return str(w / "tumour.zarr")


S, M, OUT = "SCAN", "MODEL", "OUT"  # placeholders for the workspace's scan, model and out/


def argv(w: Path, args: list[str]) -> list[str]:
    place = {S: str(w / "scan.zarr"), M: str(w / "model"), OUT: str(w / "out")}
    return [place.get(a, a.replace(OUT + "/", str(w / "out") + "/")) for a in args]


Row = tuple[Callable[[Path], list[str]], str]
TRAIN = ["train", S, "--out", "OUT/m"]  # training into a new model folder below out/


def train_with(*options: str) -> Callable[[Path], list[str]]:
    """A row's command: train with these (bad) options."""
    return lambda w: [*TRAIN, *options]


def train_config(text: str) -> Callable[[Path], list[str]]:
    """A row's command: train from a config file holding ``text``."""
    return lambda w: [*TRAIN, "--config", config_file(w, text)]


# row id -> (build the bad input and return the command line, a fragment of the message)
TABLE: dict[str, Row] = {
    # ---- importers: image and label files
    "import 2D image": (
        lambda w: ["import", nifti(w, np.zeros((5, 6), "f4")), "OUT/a.zarr"],
        "3D volume",
    ),
    "import 4D image": (
        lambda w: ["import", nifti(w, np.zeros((5, 6, 7, 2), "f4")), "OUT/a.zarr"],
        "--channel",
    ),
    "import 5D image": (
        lambda w: ["import", nifti(w, np.zeros((5, 6, 7, 2, 2), "f4")), "OUT/a.zarr"],
        "3D volume",
    ),
    "import NaN image": (
        lambda w: ["import", nifti(w, np.full((5, 6, 7), np.nan, "f4")), "OUT/a.zarr"],
        "NaN",
    ),
    "import Inf image": (
        lambda w: ["import", nifti(w, np.pad(np.full((1, 6, 7), np.inf, "f4"), 2)), "OUT/a.zarr"],
        "Inf",
    ),
    "import complex image": (
        lambda w: ["import", nifti(w, np.zeros((5, 6, 7), np.complex64)), "OUT/a.zarr"],
        "complex",
    ),
    "import empty volume": (
        lambda w: [
            "import",
            write(w, "e.tif", _tiff_bytes(np.zeros((0, 6, 7), "u2"))),
            "OUT/a.zarr",
        ],
        "empty",
    ),
    "import missing file": (
        lambda w: ["import", str(w / "nope.nii.gz"), "OUT/a.zarr"],
        "no such file",
    ),
    "import garbage": (
        lambda w: ["import", write(w, "g.nii.gz", b"garbage"), "OUT/a.zarr"],
        "cannot read",
    ),
    "import empty file": (
        lambda w: ["import", write(w, "z.nii", b""), "OUT/a.zarr"],
        "cannot read",
    ),
    "import truncated NIfTI": (
        lambda w: ["import", truncated_nifti(w), "OUT/a.zarr"],
        "cannot read",
    ),
    "import garbage TIFF": (
        lambda w: ["import", write(w, "g.tif", b"II*\x00garbage"), "OUT/a.zarr"],
        "cannot read",
    ),
    "import garbage NRRD": (
        lambda w: ["import", write(w, "g.nrrd", b"NRRD0004\nbad"), "OUT/a.zarr"],
        "cannot read",
    ),
    "import unknown format": (lambda w: ["import", write(w, "x.xyz", b"1"), "OUT/a.zarr"], ".xyz"),
    "import labels on another grid": (
        lambda w: [
            "import",
            str(w / "img.nii.gz"),
            "OUT/a.zarr",
            "--labels",
            nifti(w, np.zeros((4, 4, 4), "u1")),
        ],
        "does not match the image",
    ),
    "import labels with fractions": (
        lambda w: [
            "import",
            str(w / "img.nii.gz"),
            "OUT/a.zarr",
            "--labels",
            nifti(w, np.full((40, 40, 16), 0.5, "f4")),
        ],
        "fractional",
    ),
    "import negative labels": (
        lambda w: [
            "import",
            str(w / "img.nii.gz"),
            "OUT/a.zarr",
            "--labels",
            nifti(w, np.full((40, 40, 16), -1, "i2")),
        ],
        "0..254",
    ),
    "import too many classes": (
        lambda w: [
            "import",
            str(w / "img.nii.gz"),
            "OUT/a.zarr",
            "--labels",
            nifti(w, np.full((40, 40, 16), 3, "u1")),
            "--classes",
            "a",
        ],
        "class",
    ),
    "import bad label map": (
        lambda w: ["import", str(w / "img.nii.gz"), "OUT/a.zarr", "--label-map", "37=1"],
        "SOURCE:CLASS",
    ),
    "import onto a scan": (lambda w: ["import", str(w / "img.nii.gz"), S], "already exists"),
    "import into read-only folder": (
        lambda w: ["import", str(w / "img.nii.gz"), "OUT/a.zarr"],
        "read-only",
    ),
    "import onto a full disk": (
        lambda w: ["import", str(w / "img.nii.gz"), "OUT/a.zarr"],
        "no space left",
    ),
    "import channel out of range": (
        lambda w: [
            "import",
            nifti(w, np.zeros((5, 6, 7, 2), "f4")),
            "OUT/a.zarr",
            "--channel",
            "5",
        ],
        "channel",
    ),
    # ---- DICOM series in (tests/dicom_helpers.py builds each case)
    "import DICOM folder with several series": (
        lambda w: ["import", str(dh.two_series(w / "dcm")[0]), "OUT/a.zarr"],
        "pick one with --series UID",
    ),
    "import DICOM series not in the folder": (
        lambda w: ["import", str(dh.two_series(w / "dcm")[0]), "OUT/a.zarr", "--series", "1.2.3"],
        "has no series 1.2.3",
    ),
    "import DICOM missing slice": (import_dicom(dh.missing_slice), "slice(s) missing"),
    "import DICOM uneven spacing": (import_dicom(dh.uneven_spacing), "slice spacing varies"),
    "import DICOM gantry tilt": (import_dicom(dh.gantry_tilt), "gantry tilt"),
    "import DICOM echoes in one series": (import_dicom(dh.echoes), "images at 10 slice positions"),
    "import DICOM mixed image sizes": (import_dicom(dh.mixed_sizes), "mixes 2 image sizes"),
    "import DICOM compressed without decoder": (
        import_dicom(dh.compressed),
        "no installed decoder",
    ),
    "import DICOM multi-frame": (import_dicom(dh.multiframe), "multi-frame"),
    "import folder without DICOM": (lambda w: ["import", str(w / "out"), "OUT/a.zarr"], "no DICOM"),
    "import damaged DICOM file": (import_dicom(damaged_dicom), "damaged"),
    # ---- the scan store (info stands for every command that opens a scan)
    "info missing scan": (lambda w: ["info", str(w / "missing.zarr")], "no scan at"),
    "info not a directory": (lambda w: ["info", write(w, "f.zarr", b"x")], "not a"),
    "info corrupt metadata": (lambda w: ["info", corrupt_metadata(w)], "not a readable zarr group"),
    "info plain zarr group": (lambda w: ["info", plain_zarr(w)], "not an asymseg scan"),
    "train on an image file": (
        lambda w: ["train", str(w / "img.nii.gz"), "--out", "OUT/m"],
        "is a file, not a scan (a .zarr folder): import it first",
    ),
    "info on a plain folder": (lambda w: ["info", str(w)], "a folder but not a scan"),
    "info scan without image": (lambda w: ["info", missing_image(w)], "image"),
    "export corrupt chunk": (
        lambda w: ["export", corrupt_chunk(w), "OUT/m.nii.gz", "--what", "annotations"],
        "damaged",
    ),
    # ---- export
    "export onto existing file": (
        lambda w: ["export", S, str(w / "img.nii.gz"), "--what", "annotations"],
        "exists",
    ),
    "export unknown format": (
        lambda w: ["export", S, "OUT/m.xyz", "--what", "annotations"],
        ".xyz",
    ),
    "export without prediction": (lambda w: ["export", S, "OUT/m.nii.gz"], "prediction"),
    "export SEG of a scan not from DICOM without modality": (
        lambda w: ["export", S, "OUT/m.dcm", "--what", "annotations"],
        "--modality CT or MR",
    ),
    "export SEG when the source series has moved": (
        lambda w: ["export", moved_dicom_scan(w), "OUT/m.dcm", "--what", "annotations"],
        "no longer at",
    ),
    "export SEG into read-only folder": (
        lambda w: ["export", S, "OUT/m.dcm", "--what", "annotations", "--modality", "MR"],
        "read-only",
    ),
    "export below a file": (
        lambda w: ["export", S, str(w / "img.nii.gz") + "/m.nii.gz", "--what", "annotations"],
        "is a file, not a folder",
    ),
    "export into read-only folder": (
        lambda w: ["export", S, "OUT/m.nii.gz", "--what", "annotations"],
        "read-only",
    ),
    "export onto a full disk": (
        lambda w: ["export", S, "OUT/m.tif", "--what", "annotations"],
        "no space left",
    ),
    # ---- train: annotations, options, config files, starting points
    "train no annotations": (
        lambda w: ["train", annotate(w, None), "--out", "OUT/m"],
        "no annotations",
    ),
    "train no foreground": (lambda w: ["train", annotate(w, 1), "--out", "OUT/m"], "no foreground"),
    "train all foreground": (lambda w: ["train", annotate(w, 2), "--out", "OUT/m"], "background"),
    "train negative steps": (train_with("--steps", "-1"), "--steps"),
    "train steps and minutes": (train_with("--steps", "5", "--minutes", "2"), "give one of them"),
    "train zero batch": (
        train_with("--batch-size", "0"),
        "--batch-size",
    ),
    "train NaN learning rate": (train_with("--lr", "nan"), "--lr"),
    "train tiny patch": (
        train_with("--patch-size", "0", "8", "8"),
        "--patch-size",
    ),
    "train val-every zero": (
        train_with("--val-every", "0"),
        "--val-every",
    ),
    "train unknown device": (
        train_with("--device", "tpu"),
        "--device",
    ),
    "train absent GPU": (
        train_with("--device", "cuda:7"),
        "CUDA is not available",
    ),
    "train unknown loss": (
        train_with("--loss", "nope"),
        "invalid choice",
    ),
    "train unknown loss parameter": (
        train_with("--loss", "asym_focal", "--loss-param", "x=1"),
        "no parameter",
    ),
    "train unknown parameter of the default combined loss": (
        train_with("--loss-param", "x=1"),
        "has parameter 'x'; valid: ['eps', 'gamma', 'margin'",
    ),
    "train non-numeric loss parameter": (
        train_with("--loss-param", "margin=abc"),
        "finite number",
    ),
    "train non-integer steps": (
        train_with("--steps", "1.5"),
        "invalid int",
    ),
    "train missing config file": (
        lambda w: [*TRAIN, "--config", str(w / "no.json")],
        "does not exist",
    ),
    "train corrupt config file": (
        train_config("{"),
        "cannot read config",
    ),
    "train config not a config": (
        train_config("[1, 2]"),
        "not an asymseg config",
    ),
    "train config unknown key": (
        train_config('{"train": {"stepz": 3}}'),
        "unknown train option",
    ),
    "train config wrong type": (
        train_config('{"train": {"steps": "many"}}'),
        "train.steps",
    ),
    "train config newer version": (
        train_config('{"version": 99}'),
        "upgrade",
    ),
    "train init missing": (
        lambda w: [*TRAIN, "--init", str(w / "none")],
        "no model at",
    ),
    "train init corrupt": (
        lambda w: [*TRAIN, "--init", corrupt_checkpoint(w)],
        "checkpoint",
    ),
    "train resume other annotations": (
        lambda w: ["train", other_annotations_resume(w), "--out", M, "--resume"],
        "other annotations",
    ),
    "train into a folder holding a model": (
        lambda w: ["train", S, "--out", M, "--steps", "2"],
        "already holds a model",
    ),
    "train into read-only folder": (
        train_with("--steps", "2"),
        "read-only",
    ),
    # ---- predict and flag
    "predict missing model": (
        lambda w: ["predict", S, "--model", str(w / "none")],
        "no model at",
    ),
    "predict corrupt model": (
        lambda w: ["predict", S, "--model", corrupt_checkpoint(w)],
        "checkpoint",
    ),
    "predict model is a scan": (lambda w: ["predict", S, "--model", S], "is a scan, not a model"),
    "predict truncated bundle zip": (
        lambda w: ["predict", S, "--model", truncated_bundle_zip(w)],
        "zip",
    ),
    "predict tampered bundle": (
        lambda w: ["predict", S, "--model", tampered_bundle(w)],
        "checksum",
    ),
    "train init newer bundle": (
        lambda w: [*TRAIN, "--init", newer_bundle(w)],
        "newer napari-asymseg",
    ),
    "predict bad overlap": (
        lambda w: ["predict", S, "--model", M, "--overlap", "1.5"],
        "--overlap",
    ),
    "predict corrupt scan": (
        lambda w: ["predict", corrupt_metadata(w), "--model", M],
        "not a readable zarr group",
    ),
    "flag without prediction": (lambda w: ["flag", S], "predict"),
    "flag bad threshold": (lambda w: ["flag", S, "--model", M, "--threshold", "2"], "--threshold"),
    "flag unknown flag id": (lambda w: ["flag", S, "--model", M, "--done", "999"], "999"),
    "flag options without model": (lambda w: ["flag", S, "--overlap", "0.5"], "needs --model"),
    "flag list into read-only folder": (
        lambda w: ["flag", S, "--model", M, "--json", "OUT/f.json"],
        "read-only",
    ),
    "review without prediction": (lambda w: ["review", S], "predict"),
    "review answer without a queue": (lambda w: ["review", S, "--reject", "1"], "no review queue"),
    "review answer twice": (
        lambda w: ["review", S, "--accept", "2", "--reject", "2"],
        "answered twice",
    ),
    "review options without model": (lambda w: ["review", S, "--tta"], "needs --model"),
    "review bad max items": (lambda w: ["review", S, "--max-items", "0"], "--max-items"),
    "review list into read-only folder": (
        lambda w: ["review", S, "--model", M, "--json", "OUT/q.json"],
        "read-only",
    ),
    # ---- fill between painted slices
    "fill missing scan": (lambda w: ["fill", str(w / "missing.zarr")], "no scan at"),
    "fill unknown class": (lambda w: ["fill", S, "--class", "nope"], "is not a class of"),
    "fill nothing to fill": (
        lambda w: ["fill", one_painted_lesion_slice(w)],
        "paint the lesion on two slices with unpainted slices between them",
    ),
    "fill painted on two axes": (
        lambda w: ["fill", painted_on_two_axes(w), "--dry-run"],
        "whole planes of two axes (Z and Y)",
    ),
    # ---- grow from a click
    "grow click outside the scan": (
        lambda w: ["grow", S, "--at", "4,12,40"],
        "is outside the scan (shape 16x40x40): click on the scan",
    ),
    "grow unknown class": (
        lambda w: ["grow", S, "--at", "4,12,12", "--class", "nope"],
        "is not a class of",
    ),
    "grow nothing grown": (
        lambda w: ["grow", every_voxel_painted(w), "--at", "4,12,12"],
        "click inside an unannotated part of the lesion",
    ),
    "grow click not a voxel": (lambda w: ["grow", S, "--at", "4,12"], "write Z,Y,X"),
    # ---- bundle, evaluate, sample
    "bundle missing model": (lambda w: ["bundle", str(w / "none"), "OUT/b"], "no model at"),
    "bundle onto existing folder": (lambda w: ["bundle", M, str(w / "scan.zarr")], "exists"),
    "bundle onto a full disk": (lambda w: ["bundle", M, "OUT/b", "--no-onnx"], "no space left"),
    "evaluate without prediction": (lambda w: ["evaluate", S], "prediction"),
    "evaluate truth on another grid": (
        lambda w: [
            "evaluate",
            S,
            "--what",
            "annotations",
            "--truth",
            nifti(w, np.zeros((4, 4, 4), "u1")),
        ],
        "scan's grid",
    ),
    "evaluate missing truth": (
        lambda w: ["evaluate", S, "--what", "annotations", "--truth", str(w / "no.nii")],
        "no such file",
    ),
    "sample onto a scan": (lambda w: ["sample", "lesions", S], "already exists"),
    "sample negative seed": (lambda w: ["sample", "lesions", "OUT/s.zarr", "--seed", "-1"], "seed"),
    # ---- studies
    "study add a missing scan": (
        lambda w: ["study", "add", study_with_scan(w), str(w / "missing.zarr")],
        "no scan or image at",
    ),
    "study add a scan twice": (lambda w: ["study", "add", study_with_scan(w), S], "already"),
    "study add a scan with other classes": (
        lambda w: ["study", "add", study_with_scan(w), other_classes_scan(w)],
        "has the classes tumour",
    ),
    "study add onto a full disk": (
        lambda w: ["study", "add", study_with_scan(w, "out/study"), str(w / "img.nii.gz")],
        "no space left",
    ),
    "study status of a folder that is not a study": (
        lambda w: ["study", "status", str(w / "out")],
        "not a study",
    ),
}

# rows whose writes below out/ fail (simulated: root ignores permissions)
FAILING_WRITES = {
    "read-only folder": errno.EROFS,
    "full disk": errno.ENOSPC,
}


def _tiff_bytes(data: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # an empty TIFF is the point of the row
        warnings.simplefilter("ignore")
        tifffile.imwrite(buf, data)
    return buf.getvalue()


def fail_writes_below(monkeypatch, root: Path, code: int) -> None:
    """Every file opened for writing and every folder made below ``root`` fails with ``code``."""
    real_open, real_mkdir = builtins.open, os.mkdir
    root_s = str(root)

    def refuse(path) -> None:
        if isinstance(path, str | os.PathLike) and os.path.abspath(path).startswith(root_s):
            raise OSError(code, os.strerror(code), str(path))

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        refuse(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


@pytest.mark.parametrize("row", sorted(TABLE))
def test_bad_input_is_one_clear_line_and_changes_nothing(row, work, capsys, monkeypatch):
    build, fragment = TABLE[row]
    args = argv(work, build(work))
    for what, code in FAILING_WRITES.items():
        if row.endswith(what):
            fail_writes_below(monkeypatch, work / "out", code)
    before = snapshot(work)
    capsys.readouterr()
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse's own refusals exit from inside parse_args
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, f"{row}: exit code {rc}\n{err}"
    lines = [line for line in err.splitlines() if line.startswith("asymseg: error")]
    assert len(lines) == 1, f"{row}: {err}"
    assert fragment.lower() in lines[0].lower(), f"{row}: {lines[0]}"
    assert "Traceback" not in err
    monkeypatch.undo()
    after = snapshot(work)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"{row} changed {changed}"


def test_the_table_covers_every_command():
    from napari_asymseg.cli.main import build_parser

    parser = build_parser("train")
    sub = next(a for a in parser._actions if a.dest == "command")
    tried = {row.split()[0] for row in TABLE}
    assert set(sub.choices) - {"demo"} <= tried, set(sub.choices) - tried


def test_a_scan_written_by_this_table_still_opens(work):
    """The workspace the rows start from is sound: a failure is the row's, not the fixture's."""
    scan = Scan.open(work / "scan.zarr")
    assert scan.annotation_counts()[2] > 0
    assert json.loads((work / "scan.zarr" / "zarr.json").read_text())
