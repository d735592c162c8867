"""Export a scan's mask as a DICOM Segmentation (SEG) object with highdicom, and read one back.

A SEG references the images it segments. A scan imported from DICOM remembers its source
series (UIDs and files in slice order, :attr:`Scan.dicom`), and the SEG references those
images, so a PACS shows it over the original series. A scan from any other format has no DICOM
images to reference: the export then first writes the scan's image as a DICOM series beside
the SEG (``NAME_image/``, :mod:`napari_asymseg.io.dicom_write`, the modality given by the
user) and references that, which is the derived-image path.

One segment per class, named as in the scan, binary, multi-class kept multi-class. The
prediction is marked AUTOMATIC with the algorithm identified (the model that made it, its
version, napari-asymseg's version); annotations and reference masks are MANUAL.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_asymseg import __version__
from napari_asymseg.errors import ScanError, cause
from napari_asymseg.io.dicom_write import (
    IMAGE_NAME,
    MANUFACTURER,
    SOP_CLASS,
    Identity,
    write_series,
)
from napari_asymseg.store.arrays import read
from napari_asymseg.store.atomic import make_folder, replacing, write_with
from napari_asymseg.store.layout import PREDICTED_BY
from napari_asymseg.store.scan import Scan

SEG_SUFFIXES = (".dcm",)
_ABNORMAL = {
    "lesion",
    "tumour",
    "tumor",
    "neoplasm",
    "mass",
    "edema",
    "oedema",
    "necrosis",
    "metastasis",
    "nodule",
    "cyst",
    "hemorrhage",
    "haemorrhage",
    "infarct",
}


def export_seg(
    scan: Scan,
    out: str | os.PathLike,
    mask: np.ndarray,
    *,
    what: str = "prediction",
    modality: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``mask`` (0..K on the scan's grid) as a DICOM SEG at ``out``.

    Parameters
    ----------
    modality
        ``"CT"`` or ``"MR"``: only for a scan that did not come from DICOM, whose image is then
        written as a series in ``<out stem>_image/`` (:func:`image_folder`) for the SEG to
        reference.
    overwrite
        Replace an existing ``out``, and the ``<out stem>_image/`` series an earlier export
        wrote there; a folder of that name holding anything else is never replaced.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ScanError(f"{out} already exists: choose another name, or pass --overwrite")
    with source_images(scan, out, modality, overwrite=overwrite) as sources:
        seg = _segmentation(scan, mask, sources, what)
        make_folder(out.parent)
        # the SEG first: if writing it fails, the image series it would replace stays too
        write_with(out, lambda f: seg.save_as(f, enforce_file_format=True))
    return out


def _segmentation(scan: Scan, mask: np.ndarray, sources: list[Any], what: str) -> Any:
    """The SEG dataset of ``mask`` over the ``sources`` images."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    model = _model_identity(scan) if what == "prediction" else None  # who made the mask
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.ascontiguousarray(mask, dtype=np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segments(scan.classes, model),
        series_instance_uid=generate_uid(),
        series_number=int(sources[0].get("SeriesNumber", 0) or 0) + 100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=model[0] if model is not None else "manual",
        software_versions=__version__,
        device_serial_number="none",
        series_description=f"asymseg {what}"[:64],
        content_label=what.upper()[:16],
    )


def image_folder(out: str | os.PathLike) -> Path:
    """Where the SEG ``out`` of a scan not from DICOM puts its image series: ``NAME_image/``
    beside ``NAME.dcm``."""
    out = Path(out)
    return out.with_name(f"{out.name.removesuffix(out.suffix)}_image")


def written_by_export(folder: Path) -> bool:
    """Whether ``folder`` holds only an image series a SEG export wrote (``IM00001.dcm``, …,
    made by napari-asymseg), so that replacing it loses nothing else."""
    import pydicom

    entries = list(folder.iterdir()) if folder.is_dir() else []
    if not entries or not all(e.is_file() and IMAGE_NAME.fullmatch(e.name) for e in entries):
        return folder.is_dir() and not entries  # an empty folder holds nothing to lose
    try:
        first = pydicom.dcmread(min(entries), stop_before_pixels=True)
    except Exception:  # pydicom raises several types for what is not DICOM: not ours
        return False
    return str(first.get("Manufacturer", "")) == MANUFACTURER


def existing_image_folder(out: Path) -> Path | None:
    """The image folder (:func:`image_folder`) a SEG at ``out`` would replace, or None.

    Raises
    ------
    ScanError
        When a folder of that name holds anything an export did not write: it is never
        replaced, whatever the user confirmed (they named the SEG, not the folder).
    """
    folder = image_folder(out)
    if not folder.exists():
        return None
    if not written_by_export(folder):
        raise ScanError(
            f"{folder} holds files that no SEG export wrote, and a SEG named {out.name} needs "
            "that name for its image series: move the folder away, or choose another name"
        )
    return folder


@contextlib.contextmanager
def source_images(
    scan: Scan, out: Path, modality: str | None, *, overwrite: bool = False
) -> Iterator[list[Any]]:
    """The DICOM images the SEG references, in the scan's slice order (see the module doc).

    A scan not from DICOM gets its image series written for the block: it replaces
    :func:`image_folder` only when the block ends without an error.
    """
    import pydicom

    if not scan.dicom:
        with _derived_images(scan, out, modality, overwrite) as derived:
            yield derived
        return
    files = [Path(f) for f in scan.dicom["files"]]
    gone = [f for f in files if not f.is_file()]
    if gone:
        raise ScanError(
            f"the source DICOM series of {scan.path.name} is no longer at {gone[0].parent} "
            f"({len(gone)} of {len(files)} files missing): put it back, or import it again"
        )
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    if [str(ds.SOPInstanceUID) for ds in datasets] != scan.dicom["sop_instance_uids"]:
        raise ScanError(
            f"the files at {files[0].parent} are not the series {scan.path.name} was "
            "imported from (other SOP instance UIDs): import the series again"
        )
    yield datasets


@contextlib.contextmanager
def _derived_images(
    scan: Scan, out: Path, modality: str | None, overwrite: bool
) -> Iterator[list[Any]]:
    """Write the scan's image as a DICOM series beside ``out`` and yield its datasets.

    The series is built in a temporary sibling of :func:`image_folder` and swapped in when the
    block ends; a failure leaves the folder that was there. Only a folder an earlier export
    wrote is replaced, and only with ``overwrite``.
    """
    import pydicom

    if modality not in SOP_CLASS:
        raise ScanError(
            f"{scan.path.name} was not imported from DICOM, so its image is written as a DICOM "
            f"series beside the SEG: say which kind with --modality {' or '.join(SOP_CLASS)}"
        )
    folder = image_folder(out)
    if existing_image_folder(out) is not None and not overwrite:
        raise ScanError(
            f"{folder} already exists (the image series a SEG named {out.name} needs): choose "
            "another name, or pass --overwrite to replace the SEG and that folder"
        )
    ident = Identity(
        patient_id=scan.path.name.removesuffix(".zarr")[:64] or "ASYMSEG0001",
        series_description=f"{scan.path.name} (napari-asymseg)"[:64],
    )
    make_folder(folder.parent)
    with replacing(folder) as tmp:
        files = write_series(read(scan.image), scan.affine, tmp, modality=modality, identity=ident)
        yield [pydicom.dcmread(f, stop_before_pixels=True) for f in files]


def _segments(classes: Sequence[str], model: tuple[str, str] | None) -> list[Any]:
    """One description per class: AUTOMATIC by ``model`` (name, version), or MANUAL (None)."""
    import highdicom as hd

    automatic = model is not None
    algorithm = None
    if model is not None:
        from pydicom.sr.codedict import codes

        name, version = model
        algorithm = hd.AlgorithmIdentificationSequence(
            name=name[:64],
            family=codes.cid7162.ArtificialIntelligence,
            version=version[:64],
            source=f"napari-asymseg {__version__}",
        )
    kind = hd.seg.SegmentAlgorithmTypeValues
    descriptions = []
    for number, label in enumerate(classes, start=1):
        category, concept = coded_class(label)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label[:64],
                segmented_property_category=category,
                segmented_property_type=concept,
                algorithm_type=kind.AUTOMATIC if automatic else kind.MANUAL,
                algorithm_identification=algorithm,
            )
        )
    return descriptions


def coded_class(name: str) -> tuple[Any, Any]:
    """(category, type) SNOMED CT codes for a class name.

    A name SNOMED knows (``hippocampus``, ``liver``, ``tumour``) gets its code, under
    "Morphologically Abnormal Structure" for abnormalities and "Anatomical Structure"
    otherwise; any other name is coded as a lesion (the segment's label keeps the name).
    """
    from pydicom.sr.codedict import codes

    word = name.strip().lower().replace("tumour", "tumor").replace("oedema", "edema")
    key = "".join(part.capitalize() for part in word.replace("-", " ").replace("_", " ").split())
    abnormal = codes.SCT.MorphologicallyAbnormalStructure
    try:
        concept = getattr(codes.SCT, key)
    except AttributeError:
        return abnormal, codes.SCT.Lesion
    return (abnormal if word in _ABNORMAL else codes.SCT.AnatomicalStructure), concept


def _model_identity(scan: Scan) -> tuple[str, str]:
    """(name, version) of the model that made the prediction: a bundle's metadata, else the
    model folder's name with the plugin version."""
    path = scan.read_attr(PREDICTED_BY)
    if not path:
        return "napari-asymseg model", __version__
    meta = Path(path) / "configs" / "metadata.json"
    try:
        info = json.loads(meta.read_text())
        return str(info.get("name") or Path(path).name), str(info.get("version") or __version__)
    except (OSError, ValueError):
        return Path(path).name, __version__


def read_seg(path: str | os.PathLike, sop_instance_uids: Sequence[str]) -> np.ndarray:
    """A SEG's segments as one 0..K label volume over the given source images, in their order."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
        labels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(sop_instance_uids),
            combine_segments=True,
            skip_overlap_checks=True,
        )
    except Exception as exc:  # highdicom/pydicom raise several types for unreadable objects
        raise ScanError(f"cannot read {Path(path).name} as a DICOM SEG ({cause(exc)})") from None
    return np.asarray(labels, dtype=np.uint8)
