"""Fuzzing the readers: whatever the bytes, a reader returns a valid volume or raises the
one-line ScanError, never another exception (which would be a traceback for the user).

Targets: the image importers (NIfTI, NRRD, MHA, TIFF) on random and on mutated bytes, a DICOM
series with one file mutated, the scan store on damaged zarr metadata, and the config reader
on arbitrary JSON.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_asymseg.config import load_config
from napari_asymseg.errors import ClearError
from napari_asymseg.io.importers import read_volume
from napari_asymseg.io.napari_reader import get_reader, read_scan
from napari_asymseg.store.scan import Scan

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
VOLUME = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)


def _itk_bytes(ext: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / f"v{ext}")
        sitk.WriteImage(sitk.GetImageFromArray(VOLUME), path)
        return Path(path).read_bytes()


def _tiff_bytes() -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, VOLUME, photometric="minisblack")
    return buf.getvalue()


VALID = {
    ".nii": nib.Nifti1Image(VOLUME, np.eye(4)).to_bytes(),
    ".nii.gz": gzip.compress(nib.Nifti1Image(VOLUME, np.eye(4)).to_bytes()),
    ".nrrd": _itk_bytes(".nrrd"),
    ".mha": _itk_bytes(".mha"),
    ".tif": _tiff_bytes(),
}


def _read(tmp: Path, ext: str, content: bytes) -> None:
    path = tmp / f"fuzz{ext}"
    path.write_bytes(content)
    try:
        vol = read_volume(path)
    except ClearError as exc:
        assert "\n" not in str(exc)
        return
    # whatever was accepted is a finite 3D volume, as validate_volume promises
    assert vol.data.ndim == 3 and np.isfinite(np.asarray(vol.data, np.float64)).all()


@FUZZ
@given(ext=st.sampled_from(sorted(VALID)), content=st.binary(max_size=2048))
def test_random_bytes(tmp_path, ext, content):
    _read(tmp_path, ext, content)


@FUZZ
@given(
    ext=st.sampled_from(sorted(VALID)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_files(tmp_path, ext, edits, cut):
    """Valid files with a few bytes changed (mostly in the header) and maybe truncated."""
    data = bytearray(VALID[ext])
    for pos, value in edits:
        data[pos % min(len(data), 400)] = value  # headers live in the first few hundred bytes
    if cut is not None:
        data = data[: cut % len(data)]
    _read(tmp_path, ext, bytes(data))


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory) -> list[bytes]:
    from napari_asymseg.io.dicom_write import write_series

    folder = tmp_path_factory.mktemp("dicom")
    files = write_series(VOLUME * 10, np.diag([2.0, 0.8, 0.7, 1.0]), folder, modality="CT")
    return [f.read_bytes() for f in files]


@FUZZ
@given(
    which=st.integers(0, 3),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_dicom_series(dicom_series, tmp_path, which, edits, cut):
    """A 4-slice CT series with one file's header bytes changed (and maybe cut): the folder is
    imported as a finite volume, or refused in one line."""
    from napari_asymseg.io.dicom import read_dicom_series

    folder = tmp_path / "series"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i, content in enumerate(dicom_series):
        data = bytearray(content)
        if i == which:
            for pos, value in edits:
                data[132 + pos % 700] = value  # past the preamble, among the data elements
            if cut is not None:
                data = data[: cut % len(data)]
        (folder / f"IM{i}.dcm").write_bytes(bytes(data))
    try:
        vol = read_dicom_series(folder).volume
    except ClearError as exc:
        assert "\n" not in str(exc)
        return
    assert vol.data.ndim == 3 and np.isfinite(np.asarray(vol.data, np.float64)).all()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def good_scan(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "scan.zarr"
    ann = np.zeros((4, 5, 6), np.uint8)
    ann[1] = 1
    ann[1, 2, 2] = 2
    Scan.create(path, VOLUME, annotations=ann)
    return path


def _scan_metadata_files(scan: Path) -> list[Path]:
    return sorted(p for p in scan.rglob("zarr.json"))


@FUZZ
@given(
    which=st.integers(0, 100),
    key=st.sampled_from(["attributes", "shape", "data_type", "chunk_grid", "codecs", "node_type"]),
    value=json_values,
)
def test_damaged_scan_metadata(good_scan, tmp_path, which, key, value):
    """One field of one zarr.json replaced by arbitrary JSON: the scan opens, or ScanError."""
    scan = tmp_path / "scan.zarr"
    shutil.rmtree(scan, ignore_errors=True)
    shutil.copytree(good_scan, scan)
    files = _scan_metadata_files(scan)
    target = files[which % len(files)]
    meta = json.loads(target.read_text())
    meta[key] = value
    target.write_text(json.dumps(meta))
    try:
        opened = Scan.open(scan, mode="r")
        layers = read_scan(str(scan))  # what napari does with it: every array is read
    except ClearError as exc:
        assert "\n" not in str(exc)
        assert get_reader(str(scan)) in (None, read_scan)
        return
    assert opened.shape == VOLUME.shape and len(layers) >= 2


@FUZZ
@given(scan_attrs=json_values)
def test_damaged_scan_attributes(good_scan, tmp_path, scan_attrs):
    """The asymseg attributes themselves replaced by arbitrary JSON."""
    scan = tmp_path / "scan.zarr"
    shutil.rmtree(scan, ignore_errors=True)
    shutil.copytree(good_scan, scan)
    meta = json.loads((scan / "zarr.json").read_text())
    meta["attributes"]["asymseg"] = scan_attrs
    (scan / "zarr.json").write_text(json.dumps(meta))
    try:
        opened = Scan.open(scan, mode="r")
        read_scan(str(scan))
    except ClearError as exc:
        assert "\n" not in str(exc)
        return
    assert len(opened.spacing) == 3 and opened.classes


@FUZZ
@given(data=json_values)
def test_config_files(tmp_path, data):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    try:
        load_config(path)
    except ValueError as exc:  # load_config's one documented error type
        assert "\n" not in str(exc)
