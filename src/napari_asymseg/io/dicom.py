"""Read a DICOM series (a folder of single-frame CT, MR or PET images) as a :class:`Volume`.

pydicom reads the headers and the pixels; we sort and check the geometry ourselves rather than
let a series reader (SimpleITK/GDCM) guess, because the cases that matter clinically must be
refused with a reason, not silently turned into a wrong grid:

- several series in the folder: list them and ask for ``--series UID``;
- slices of different size, spacing or orientation, or several images at one position
  (echoes, phases, time points in one series);
- a gap where slices are missing, or slice spacing that varies (no resampling: the grid would
  no longer be the scanner's, and the SEG could not reference the source images);
- gantry tilt (sheared slices): dcm2niix corrects it, import its NIfTI instead;
- pixel data compressed in a transfer syntax no installed decoder reads.

The stored values are the modality's: ``RescaleSlope * stored + RescaleIntercept`` (Hounsfield
units for CT). Slices are ordered along the slice normal (``row x column`` direction), so
index z grows along it, and the affine to RAS follows from ImagePositionPatient,
ImageOrientationPatient and PixelSpacing.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_asymseg.errors import ScanError, cause
from napari_asymseg.io.volume import Volume

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_HEADER_TAGS = [  # the first four describe a series (Series' fields, in order)
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "ImagePositionPatient",
    "Rows",
]
DICOM_FILES = (".dcm", ".dicom", ".ima")
SPACING_TOLERANCE = 0.01  # relative: slice gaps may differ by 1% (rounding in the headers)
TILT_TOLERANCE_MM = 0.01  # in-plane shift of one slice against the next


@dataclass(frozen=True)
class Series:
    """One series found in a folder: its UID, a description and its image files."""

    uid: str
    modality: str
    description: str
    number: str
    files: tuple[Path, ...]

    def label(self) -> str:
        what = " ".join(x for x in (self.modality, self.number, repr(self.description)) if x)
        return f"{self.uid} ({what}, {len(self.files)} images)"


@dataclass(frozen=True)
class DicomVolume:
    """A DICOM series read as a volume, with what the SEG export must reference."""

    volume: Volume
    provenance: dict[str, Any]


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """A folder that is not a zarr store: imported as DICOM."""
    path = Path(path)
    return path.is_dir() and not (
        path.name.lower().endswith(".zarr") or (path / "zarr.json").exists()
    )


def series_of(path: str | os.PathLike) -> str | None:
    """The SeriesInstanceUID of one DICOM file (None when it has none)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    except Exception as exc:  # not DICOM, damaged, unreadable
        raise ScanError(
            f"cannot read {Path(path).name} as DICOM ({cause(exc)}): check the file"
        ) from None
    uid = ds.get("SeriesInstanceUID")
    return None if uid is None else str(uid)


def find_series(folder: str | os.PathLike) -> list[Series]:
    """The image series under ``folder`` (searched recursively), largest first.

    Files that are not DICOM are skipped, as are objects without pixel positions (reports,
    segmentations, presentation states).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    groups: dict[str, list[tuple[Path, list[str]]]] = defaultdict(list)
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        if path.name.startswith(".") or path.name == "DICOMDIR":
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            if "SeriesInstanceUID" in ds and "ImagePositionPatient" in ds and "Rows" in ds:
                info = [str(ds.get(k, "") or "") for k in _HEADER_TAGS[:4]]
                groups[info[0]].append((path, info))
        except InvalidDicomError:
            continue  # not DICOM (no "DICM" marker): a report, a thumbnail, a README
        except Exception as exc:  # a DICOM file whose elements do not parse
            raise _damaged(path, exc) from None
    series = []
    for uid, members in groups.items():
        _, modality, description, number = members[0][1]
        series.append(Series(uid, modality, description, number, tuple(p for p, _ in members)))
    return sorted(series, key=lambda s: -len(s.files))


def pick_series(folder: str | os.PathLike, uid: str | None = None) -> Series:
    """The one series to import: the only one, or the one ``uid`` names."""
    found = find_series(folder)
    name = Path(folder).name
    if not found:
        raise ScanError(
            f"{name} holds no DICOM images with a slice position: point to the folder of "
            "one CT/MR/PET series"
        )
    if uid is not None:
        match = [s for s in found if s.uid == uid]
        if not match:
            listing = "; ".join(s.label() for s in found)
            raise ScanError(f"{name} has no series {uid}: pick one of {listing}")
        return match[0]
    if len(found) > 1:
        listing = "; ".join(s.label() for s in found)
        raise ScanError(f"{name} holds {len(found)} series: pick one with --series UID: {listing}")
    return found[0]


def read_dicom_series(folder: str | os.PathLike, series_uid: str | None = None) -> DicomVolume:
    """Read one series of ``folder`` as a checked (Z, Y, X) volume in the modality's units.

    Raises
    ------
    ScanError
        Several series and no ``series_uid``, mixed or missing slices, varying spacing,
        gantry tilt, multi-frame or colour images, or pixel data no decoder can read.
    """
    series = pick_series(folder, series_uid)
    slices = [_read_slice(path) for path in series.files]
    _check_images(slices, series)
    order, affine = _slice_order(slices)
    slices = [slices[i] for i in order]
    data = _rescaled(slices, np.stack([_pixels(s) for s in slices]))
    first = slices[0].ds
    provenance = {
        "series_uid": series.uid,
        "study_uid": str(first.get("StudyInstanceUID", "") or ""),
        "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "") or ""),
        "modality": series.modality,
        "description": series.description,
        "sop_instance_uids": [s.sop_uid for s in slices],
        "files": [str(s.path.resolve()) for s in slices],
    }
    return DicomVolume(Volume(data, affine, str(Path(folder).resolve())), provenance)


@dataclass(frozen=True)
class _Slice:
    """One image's header, checked and converted (a damaged value fails here, named)."""

    path: Path
    ds: Any
    sop_uid: str
    size: tuple[int, int]
    spacing: tuple[float, ...]  # PixelSpacing: between rows (y), between columns (x)
    orientation: tuple[float, ...]  # ImageOrientationPatient's six cosines
    position: tuple[float, ...]
    frames: int
    samples: int
    slope: float
    intercept: float


def _read_slice(path: Path) -> _Slice:
    import pydicom

    key = "the file"
    try:
        ds = pydicom.dcmread(path)
        for needed in ("ImageOrientationPatient", "PixelSpacing"):
            if needed not in ds:
                raise ScanError(
                    f"{path.name} has no {needed}: not a 3D acquisition (a localizer or a "
                    "screen capture?); pick another series"
                )
        key = "PixelSpacing"
        spacing = _floats(ds, key, 2)
        key = "ImageOrientationPatient"
        orientation = _floats(ds, key, 6)
        key = "ImagePositionPatient"
        position = _floats(ds, key, 3)
        key = "Rows / Columns / SOPInstanceUID / NumberOfFrames / SamplesPerPixel"
        size = (int(ds.Rows), int(ds.Columns))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        uid = str(ds.SOPInstanceUID)
        key = "RescaleSlope / RescaleIntercept"
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    except ScanError:
        raise
    except Exception as exc:  # pydicom raises many types for damaged elements
        raise _damaged(path, exc, key) from None
    geometry = np.asarray(spacing + orientation + position)
    if not np.isfinite(geometry).all() or min(spacing) <= 0:
        raise _damaged(path, ValueError("non-finite or non-positive values"), "the geometry")
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        raise _damaged(path, ValueError(f"slope {slope}, intercept {intercept}"), key)
    return _Slice(
        path, ds, uid, size, spacing, orientation, position, frames, samples, slope, intercept
    )


def _floats(ds: Any, key: str, n: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in ds[key].value)
    if len(values) != n:
        raise ValueError(f"{key} has {len(values)} values, not {n}")
    return values


def _damaged(path: Path, exc: BaseException, what: str = "the file") -> ScanError:
    where = "" if what == "the file" else f" in {what}"
    return ScanError(
        f"cannot read {path.name}{where} ({cause(exc)}): the file is damaged; export the series "
        "again from the PACS"
    )


def _check_images(slices: list[_Slice], series: Series) -> None:
    """One kind of image throughout: single-frame, grey, same size, spacing, orientation."""
    if any(s.frames > 1 for s in slices):
        raise ScanError(
            f"series {series.uid} is multi-frame (enhanced) DICOM, which asymseg does not read "
            "yet: convert it with dcm2niix and import the NIfTI"
        )
    if any(s.samples != 1 for s in slices):
        raise ScanError(f"series {series.uid} holds colour images: import a greyscale series")

    def kind(s: _Slice) -> tuple:
        return s.size, tuple(np.round(s.spacing, 4)), tuple(np.round(s.orientation, 4))

    kinds = {kind(s) for s in slices}
    if len(kinds) > 1:
        raise ScanError(
            f"series {series.uid} mixes {len(kinds)} image sizes, spacings or orientations: "
            "export each stack as its own series"
        )


def _slice_order(slices: list[_Slice]) -> tuple[np.ndarray, np.ndarray]:
    """The slices' order along the normal, and the affine from (z, y, x) to RAS mm."""
    iop = np.asarray(slices[0].orientation, dtype=float)
    along_x, along_y = iop[:3], iop[3:]
    normal = np.cross(along_x, along_y)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise ScanError(
            f"{slices[0].path.name} has an ImageOrientationPatient that is not two orthogonal "
            "unit vectors: the file is damaged; export the series again"
        )
    positions = np.asarray([s.position for s in slices], dtype=float)
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    depth, positions = depth[order], positions[order]
    gaps = np.diff(depth)
    if len(gaps) and np.min(gaps) < 1e-3:
        n_pos = len(np.unique(np.round(depth, 3)))
        raise ScanError(
            f"the series has {len(depth)} images at {n_pos} slice positions (several echoes, "
            "phases or time points in one series): export each volume as its own series"
        )
    step_len = float(np.median(gaps)) if len(gaps) else _thickness(slices[0].ds)
    _check_spacing(gaps, depth, step_len)
    step = (positions[-1] - positions[0]) / (len(positions) - 1) if len(gaps) else normal * step_len
    shear = positions - positions[0] - np.outer(depth - depth[0], normal)
    if float(np.max(np.abs(shear))) > TILT_TOLERANCE_MM:
        angle = np.degrees(np.arctan2(np.linalg.norm(shear[-1]), depth[-1] - depth[0]))
        raise ScanError(
            f"the slices are sheared by a gantry tilt of {angle:.1f} degrees: resample with "
            "dcm2niix (it corrects the tilt) and import its NIfTI"
        )
    dy, dx = slices[0].spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = step, along_y * dy, along_x * dx
    lps[:3, 3] = positions[0]
    return order, _LPS_TO_RAS @ lps


def _check_spacing(gaps: np.ndarray, depth: np.ndarray, step: float) -> None:
    """Refuse missing slices and varying spacing, naming where they are."""
    off = np.flatnonzero(np.abs(gaps - step) > SPACING_TOLERANCE * step)
    if not len(off):
        return
    i = int(off[0])
    where = f"between {depth[i]:.2f} and {depth[i + 1]:.2f} mm along the slice normal"
    missing = gaps[i] / step - 1
    if abs(missing - round(missing)) < 0.1 and round(missing) >= 1:
        raise ScanError(
            f"{round(missing)} slice(s) missing {where} ({len(off)} gap(s) in all): export the "
            "complete series again"
        )
    raise ScanError(
        f"the slice spacing varies from {gaps.min():.3f} to {gaps.max():.3f} mm ({where}): "
        "asymseg does not resample DICOM; resample to even spacing (e.g. dcm2niix) and import "
        "the NIfTI"
    )


def _pixels(s: _Slice) -> np.ndarray:
    """One slice's stored values (Rows x Columns), or a clear line when they cannot be decoded."""
    try:
        stored = np.asarray(s.ds.pixel_array)
    except Exception as exc:  # pydicom: RuntimeError / NotImplementedError / ValueError / ...
        if _undecodable(s.ds):
            raise ScanError(
                f"{s.path.name} is compressed as {_syntax_name(s.ds)}, which no installed "
                "decoder reads: pip install 'napari-asymseg[dicom-codecs]', or decompress the "
                "series (gdcmconv --raw)"
            ) from None
        raise _damaged(s.path, exc, "its pixel data") from None
    if stored.shape != s.size:
        raise _damaged(s.path, ValueError(f"pixels {stored.shape}, header {s.size}"), "Rows")
    return stored


def _undecodable(ds: Any) -> bool:
    """A compressed transfer syntax that pydicom knows but no installed plugin decodes."""
    from pydicom.pixels import get_decoder

    try:
        syntax = ds.file_meta.TransferSyntaxUID
        return bool(syntax.is_compressed) and not get_decoder(syntax).is_available
    except Exception:  # unknown or damaged transfer syntax: not a decoder problem
        return False


def _syntax_name(ds: Any) -> str:
    syntax = ds.file_meta.TransferSyntaxUID
    return f"{syntax.name} ({syntax})"


def _thickness(ds: Any) -> float:
    """A single slice's depth: SliceThickness if it is a positive number, else 1 mm."""
    try:
        value = float(ds.get("SliceThickness", 1) or 1)
    except (TypeError, ValueError):
        return 1.0
    return value if np.isfinite(value) and value > 0 else 1.0


def _rescaled(slices: list[_Slice], stored: np.ndarray) -> np.ndarray:
    """The modality's values: integers (int16 where they fit) unless a slope makes fractions.

    The rescale may differ per slice (PET); MONOCHROME1 only changes the display, not the
    values, so it needs nothing here.
    """
    slope = np.asarray([s.slope for s in slices])
    intercept = np.asarray([s.intercept for s in slices])
    if np.all(slope == 1) and np.all(intercept == np.round(intercept)):
        values = stored.astype(np.int32) + intercept.astype(np.int32)[:, None, None]
        fits = values.min() >= -32768 and values.max() <= 32767
        return values.astype(np.int16) if fits else values
    return (
        stored.astype(np.float32) * slope.astype(np.float32)[:, None, None]
        + intercept.astype(np.float32)[:, None, None]
    )
