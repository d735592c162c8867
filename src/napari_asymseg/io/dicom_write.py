"""Write a (Z, Y, X) volume as a DICOM series of single-frame CT or MR images (pydicom).

Two users: the SEG export of a scan that did not come from DICOM (a segmentation object must
reference DICOM images, so the scan's image is written as a series beside it, see
:mod:`napari_asymseg.io.dicom_seg`), and the tests, which build their DICOM input here rather
than download it. The images carry the attributes of the CT / MR Image modules that readers
(dcm2niix, highdicom, PACS viewers) rely on: geometry, rescale, patient / study / series
identity.

Geometry: our affine maps (z, y, x) indices to RAS mm; DICOM's patient space is LPS. Row
direction is +x (columns), column direction is +y (rows), and slice ``z`` sits at
``origin + z * step``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_asymseg import __version__
from napari_asymseg.errors import ScanError
from napari_asymseg.store.atomic import make_folder, open_atomic

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
MANUFACTURER = "napari-asymseg"
IMAGE_NAME = re.compile(r"IM\d{5}\.dcm")
"""The names :func:`write_series` gives its files."""


def image_name(z: int) -> str:
    """The file name of slice ``z`` (0-based) in a written series: ``IM00001.dcm``, …"""
    return f"IM{z + 1:05d}.dcm"


@dataclass
class Identity:
    """Who and what a written series belongs to; UIDs are generated where not given."""

    patient_name: str = "Anonymous^Patient"
    patient_id: str = "ASYMSEG0001"
    study_uid: str | None = None
    series_uid: str | None = None
    frame_of_reference_uid: str | None = None
    series_description: str = "asymseg image"
    series_number: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)  # keyword -> value, per image


def geometry(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """DICOM geometry of an affine from (z, y, x) indices to RAS mm.

    Returns ImageOrientationPatient's six direction cosines, ``[origin, step]`` (the first
    slice's LPS position and the LPS step between slices, 2 x 3), and the spacings in mm in
    PixelSpacing's order then the slice's: (between rows = y, between columns = x, z).
    """
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=float)
    # DICOM's "row direction" is the way x (the column index) grows, "column direction" y's
    step, along_y, along_x = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    dy, dx = float(np.linalg.norm(along_y)), float(np.linalg.norm(along_x))
    orientation = np.concatenate([along_x / dx, along_y / dy])
    return orientation, np.stack([lps[:3, 3], step]), (dy, dx, float(np.linalg.norm(step)))


def _stored_values(data: np.ndarray, modality: str) -> tuple[np.ndarray, float, float]:
    """int16 pixels with (slope, intercept): exact for integers that fit, else scaled."""
    lo, hi = float(np.min(data)), float(np.max(data))
    exact = data.dtype.kind in "iub" or bool(np.all(np.mod(data, 1) == 0))
    intercept = -1024.0 if modality == "CT" and lo >= -1024 else 0.0
    if exact and lo - intercept >= -32768 and hi - intercept <= 32767:
        return (data - intercept).astype(np.int16), 1.0, intercept
    slope = (hi - lo) / 65534 if hi > lo else 1.0
    intercept = lo + 32767 * slope
    return np.round((data - intercept) / slope).astype(np.int16), slope, intercept


def write_series(
    data: np.ndarray,
    affine: np.ndarray,
    folder: str | os.PathLike,
    *,
    modality: str = "MR",
    identity: Identity | None = None,
) -> list[Path]:
    """Write ``data`` (Z, Y, X) with ``affine`` (to RAS mm) as one file per slice in ``folder``.

    Returns the files in slice order. ``modality`` is ``"CT"`` (values are Hounsfield units)
    or ``"MR"``; the values are stored as int16 with a rescale slope / intercept that returns
    them exactly where they are integers.
    """
    import copy

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

    if modality not in SOP_CLASS:
        raise ScanError(f"modality must be one of {', '.join(SOP_CLASS)}, got {modality!r}")
    ident = identity or Identity()
    orientation, (origin, step), (dy, dx, thick) = geometry(affine)
    pixels, slope, intercept = _stored_values(np.asarray(data), modality)
    common = _series_header(ident, modality)
    common.ImageOrientationPatient = [_ds(v) for v in orientation]
    common.PixelSpacing = [_ds(dy), _ds(dx)]
    common.SliceThickness = _ds(thick)
    common.Rows, common.Columns = pixels.shape[1:]
    common.RescaleIntercept = _ds(intercept)
    common.RescaleSlope = _ds(slope)
    folder = make_folder(folder)
    files = []
    for z in range(pixels.shape[0]):
        ds = copy.deepcopy(common)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = UID(SOP_CLASS[modality])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [_ds(v) for v in origin + z * step]
        ds.PixelData = np.ascontiguousarray(pixels[z]).tobytes()
        path = folder / image_name(z)
        # whole or not at all, even after a power loss: a temporary sibling, synced, renamed
        with open_atomic(path) as f:
            ds.save_as(f, enforce_file_format=True)
        files.append(path)
    return files


def _series_header(ident: Identity, modality: str) -> Any:
    """The attributes every image of the series shares: identity, equipment, pixel format."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    now = dt.datetime.now()
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = __version__
    ds.ReferringPhysicianName = ""
    ds.PatientName = ident.patient_name
    ds.PatientID = ident.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = ident.study_uid or generate_uid()
    ds.SeriesInstanceUID = ident.series_uid or generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = ident.series_number
    ds.SeriesDescription = ident.series_description
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = ident.frame_of_reference_uid or generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    _modality_attributes(ds, modality)
    for keyword, value in ident.extra.items():
        setattr(ds, keyword, value)
    return ds


def _modality_attributes(ds: Any, modality: str) -> None:
    """The type 1 and 2 attributes of the CT / MR Image modules that have no natural value."""
    if modality == "CT":
        ds.RescaleType = "HU"
        ds.KVP = ""
    else:
        ds.ScanningSequence = "RM"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D"
        ds.EchoTime = ""
        ds.EchoTrainLength = ""
        ds.RepetitionTime = ""


def _ds(value: float) -> str:
    """A Decimal String: the most significant digits that fit its 16 characters."""
    for digits in range(12, 5, -1):
        text = f"{float(value):.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{float(value):.6g}"
