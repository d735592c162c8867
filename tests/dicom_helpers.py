"""DICOM series the tests build themselves: CT- and MR-like, oblique, and the odd cases the
importer must refuse (missing slices, uneven spacing, gantry tilt, echoes, compression)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom

from napari_asymseg.io.dicom_write import Identity, write_series

SHAPE = (10, 24, 28)


def oblique_affine(spacing=(2.5, 0.9, 0.8), degrees=17.0, origin=(-30.0, 12.5, 40.0)) -> np.ndarray:
    """(z, y, x) -> RAS mm, rotated about the x axis so that no axis is a cardinal one."""
    t = np.radians(degrees)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    affine = np.eye(4)
    sz, sy, sx = spacing
    affine[:3, :3] = rot @ np.array([[0, 0, sx], [0, sy, 0], [sz, 0, 0]])  # z~S, y~A, x~R
    affine[:3, 3] = origin
    return affine


def ct_values(shape=SHAPE, seed=0) -> np.ndarray:
    """Hounsfield-like int16: air, soft tissue, a bright blob."""
    rng = np.random.default_rng(seed)
    data = rng.integers(-1000, 80, shape).astype(np.int16)
    data[3:6, 8:14, 9:15] = 1200
    return data


def mr_values(shape=SHAPE, seed=1) -> np.ndarray:
    """Fractional MR-like intensities (stored with a rescale slope)."""
    return np.random.default_rng(seed).gamma(2.0, 150.0, shape).astype(np.float32)


def series(folder: Path, data=None, affine=None, *, modality="CT", **ident) -> list[Path]:
    data = ct_values() if data is None else data
    affine = oblique_affine() if affine is None else affine
    return write_series(data, affine, folder, modality=modality, identity=Identity(**ident))


def edit(files, **values) -> None:
    """Set header values in each file: ``edit(files, ImagePositionPatient=[...])``."""
    for f in files:
        ds = pydicom.dcmread(f)
        for key, value in values.items():
            setattr(ds, key, value)
        ds.save_as(f)


def missing_slice(folder: Path) -> Path:
    files = series(folder)
    files[4].unlink()
    return folder


def uneven_spacing(folder: Path) -> Path:
    files = series(folder)
    ds = pydicom.dcmread(files[-1])
    edit(
        [files[-1]],
        ImagePositionPatient=[
            float(v) + 0.7 * (i == 2) for i, v in enumerate(ds.ImagePositionPatient)
        ],
    )
    return folder


def gantry_tilt(folder: Path) -> Path:
    affine = np.array([[0, 0, 0.8, 0], [0, 0.9, 0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1.0]])
    affine[1, 0] = 2.0 * np.tan(np.radians(10))  # each slice shifted along y: a 10 degree tilt
    series(folder, affine=affine)
    return folder


def echoes(folder: Path) -> Path:
    """Two volumes at the same positions in one series (two echoes)."""
    first = series(folder / "e1", modality="MR", data=mr_values())
    ds = pydicom.dcmread(first[0])
    series(
        folder / "e2",
        modality="MR",
        data=mr_values(seed=2),
        study_uid=ds.StudyInstanceUID,
        series_uid=ds.SeriesInstanceUID,
        frame_of_reference_uid=ds.FrameOfReferenceUID,
    )
    return folder


def two_series(folder: Path) -> tuple[Path, str, str]:
    a = series(folder / "a", series_description="T1", series_number=3)
    b = series(folder / "b", data=ct_values((6, 24, 28)), series_description="T2")
    uid = lambda f: str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID)  # noqa: E731
    return folder, uid(a[0]), uid(b[0])


def compressed(folder: Path, syntax="1.2.840.10008.1.2.4.70") -> Path:
    """A series whose pixel data claims a compression nothing installed decodes
    (JPEG Lossless, process 14: pylibjpeg-libjpeg or GDCM would be needed)."""
    from pydicom.encaps import encapsulate

    for f in series(folder):
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([b"\xff\xd8" + bytes(64) + b"\xff\xd9"])
        ds.save_as(f, enforce_file_format=True)
    return folder


def multiframe(folder: Path) -> Path:
    files = series(folder)
    edit(files, NumberOfFrames=3)
    return folder


def mixed_sizes(folder: Path) -> Path:
    series(folder / "a")
    ds = pydicom.dcmread(next((folder / "a").iterdir()))
    series(
        folder / "b",
        data=ct_values((3, 20, 28)),
        series_uid=ds.SeriesInstanceUID,
        affine=np.array([[0, 0, 0.8, 0], [0, 0.9, 0, 0], [2.5, 0, 0, 200], [0, 0, 0, 1.0]]),
    )
    return folder


def dciodvfy(path: Path) -> list[str]:
    """The error lines dicom3tools' validator prints for ``path`` (warnings left out)."""
    exe = shutil.which("dciodvfy")
    assert exe, "dciodvfy not installed: bash scripts/setup.sh test installs dicom3tools"
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def to_grid(data, affine, target_affine, target_shape, atol_mm=1e-3) -> np.ndarray:
    """``data`` (on ``affine``) re-indexed onto the target grid; fails unless both grids have
    the same voxel centres within ``atol_mm`` (a flip or axis swap is allowed)."""
    m = np.linalg.inv(affine) @ target_affine  # target index -> our index
    perm, shift = np.round(m[:3, :3]), np.round(m[:3, 3])
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in target_shape], indexing="ij"))
    corners = np.vstack([corners.reshape(3, -1), np.ones((1, 8))])
    ours = np.eye(4)
    ours[:3, :3], ours[:3, 3] = perm, shift
    err = np.abs(affine @ ours @ corners - target_affine @ corners).max()
    assert err < atol_mm, f"voxel centres differ by {err:.2g} mm"
    idx = np.indices(target_shape).reshape(3, -1)
    src = (perm @ idx + shift[:, None]).astype(int)
    return data[tuple(src)].reshape(target_shape)
