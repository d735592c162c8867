"""Taking scans into a study: the checks made before anything is written, then the copy or import.

:meth:`napari_asymseg.study.study.Study.add` plans every source first (:func:`plan`): each one
exists, is a scan or an image this package imports, is not in the study already, and carries
the study's classes. Only then is anything written, one scan at a time (:func:`put_in`): an
asymseg scan (a ``.zarr`` folder with the ``asymseg`` attributes) is copied, anything else
(a DICOM folder or file, NIfTI, NRRD, MHA, TIFF, OME-Zarr) is imported with
:func:`napari_asymseg.io.importers.import_scan`, the same import as ``asymseg import``. Both
build the new scan under a temporary name and rename it into place, so a failure leaves no
half-written scan; the user's original is only read.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_asymseg.errors import ScanError
from napari_asymseg.store import atomic
from napari_asymseg.store import attrs as scan_attrs
from napari_asymseg.store.layout import ATTRS_KEY
from napari_asymseg.store.lock import LOCK_FILE, SOFT_FILE

NOTHING_ADDED = "(nothing was added)"


@dataclass(frozen=True)
class Planned:
    """One source, checked: where it is, the scan name it gets, and how it comes in."""

    source: Path  # resolved
    name: str
    copy: bool  # an asymseg scan, copied; otherwise an image, imported
    classes: tuple[str, ...] | None  # a copied scan's classes (an import takes the study's)


def scan_name(source: Path) -> str:
    """The study's name for a source: its file or folder name without the format suffix
    (``brain1.zarr``, ``brain1.nii.gz`` -> ``brain1``; a DICOM file names its folder)."""
    from napari_asymseg.io.dicom import DICOM_FILES
    from napari_asymseg.io.importers import suffix

    ext = suffix(source)
    if source.is_file() and ext in DICOM_FILES:
        return source.parent.name
    name = source.name
    return name[: -len(ext)] if ext and name.lower().endswith(ext) else name


def is_scan_folder(path: Path) -> bool:
    """A folder holding an asymseg scan (zarr metadata with the ``asymseg`` attributes)."""
    if not path.is_dir() or not any(
        (path / n).is_file() for n in ("zarr.json", ".zgroup", ".zattrs")
    ):
        return False
    try:
        return ATTRS_KEY in scan_attrs.read(path)
    except ScanError:
        return False


def _importable(path: Path) -> bool:
    from napari_asymseg.io.dicom import DICOM_FILES, is_dicom_folder
    from napari_asymseg.io.importers import IMPORT_FORMATS, suffix

    ext = suffix(path)
    if path.is_dir():
        return is_dicom_folder(path) or ext in (".zarr", ".ome.zarr")
    return ext in IMPORT_FORMATS or ext in DICOM_FILES


def plan(
    sources: Sequence[Path],
    entries: Sequence[dict[str, Any]],
    study_classes: tuple[str, ...] | None,
    scans_dir: Path,
) -> list[Planned]:
    """Every source checked against the study (``entries`` of study.json, its classes) and
    against the others; raises :class:`ScanError` (one line) at the first refusal."""
    names = {e["name"]: e.get("source") for e in entries}
    seen = {str(e.get("source")): e["name"] for e in entries if e.get("source")}
    # a scan whose folder is gone may be added again (from its source or another one)
    gone = {n for n in names if not (scans_dir / f"{n}.zarr").exists()}
    planned: list[Planned] = []
    for given in sources:
        if not given.exists():
            raise ScanError(f"no scan or image at {given}: check the path {NOTHING_ADDED}")
        source = given.resolve()
        name = scan_name(source)
        again = name in gone and seen.get(str(source), name) == name
        if str(source) in seen and not again:
            raise ScanError(
                f"{given} is in the study already, as {seen[str(source)]}: leave it out "
                f"{NOTHING_ADDED}"
            )
        if name in names and not again:
            raise ScanError(
                f"the study has a scan named {name} already (from {names[name]}): rename "
                f"{given.name}, or leave it out {NOTHING_ADDED}"
            )
        if (scans_dir / f"{name}.zarr").exists() and not again:
            raise ScanError(
                f"{scans_dir / name}.zarr exists but is not in the study: move it away, then "
                f"add its source again {NOTHING_ADDED}"
            )
        gone.discard(name)
        planned.append(_checked(given, source, name))
        names[name], seen[str(source)] = str(source), name
    _check_classes(planned, study_classes)
    return planned


def _checked(given: Path, source: Path, name: str) -> Planned:
    """One source: a readable asymseg scan (copied) or a format the importers read."""
    from napari_asymseg.store.scan import Scan

    if is_scan_folder(source):
        scan = Scan.open(source, mode="r")  # a damaged scan is refused here, not half-copied
        return Planned(source, name, copy=True, classes=scan.classes)
    if not _importable(source):
        raise ScanError(
            f"cannot add {given}: not a scan (.zarr), a DICOM folder or an image file "
            f"(.nii, .nii.gz, .nrrd, .mha, .tif, .ome.zarr) {NOTHING_ADDED}"
        )
    return Planned(source, name, copy=False, classes=None)


def _check_classes(planned: Sequence[Planned], study_classes: tuple[str, ...] | None) -> None:
    """Every copied scan has the study's classes (or, for a study's first scans, the first
    copied scan's): one model learns one set of classes."""
    expected = study_classes
    for p in planned:
        if p.classes is None:
            continue
        if expected is None:
            expected = p.classes
        elif p.classes != expected:
            raise ScanError(
                f"{p.source.name} has the classes {', '.join(p.classes)} but the study "
                f"{', '.join(expected)}: one study learns one set of classes; relabel the scan "
                f"or make another study for it {NOTHING_ADDED}"
            )


def import_classes(
    planned: Sequence[Planned],
    study_classes: tuple[str, ...] | None,
    classes: Sequence[str] | None,
) -> tuple[str, ...] | None:
    """The class names an imported image gets (an image carries none of its own): the
    study's; for a study's first scans ``classes``, else the first copied scan's; else None
    (the importer's ``class1..``)."""
    if study_classes is not None:
        if classes and tuple(classes) != study_classes:
            raise ScanError(
                f"the study's classes are {', '.join(study_classes)}, not "
                f"{', '.join(classes)}: leave --classes out {NOTHING_ADDED}"
            )
        return study_classes
    if classes:
        first = next((p for p in planned if p.classes is not None), None)
        if first is not None and first.classes != tuple(classes):
            raise ScanError(
                f"{first.source.name} has the classes {', '.join(first.classes or ())}, not "
                f"{', '.join(classes)}: give the scan's classes {NOTHING_ADDED}"
            )
        return tuple(classes)
    return next((p.classes for p in planned if p.classes is not None), None)


def put_in(p: Planned, target: Path, classes: tuple[str, ...] | None) -> tuple[str, ...]:
    """Copy or import ``p`` to ``target`` (absent); returns the new scan's classes. On any
    failure nothing is left at ``target``."""
    from napari_asymseg.io.importers import import_scan
    from napari_asymseg.store.scan import Scan

    try:
        if p.copy:
            with atomic.replacing(target) as tmp:
                shutil.copytree(p.source, tmp, ignore=_not_copied)
                Scan.open(tmp, mode="r")  # the copy is whole before it takes the name
        else:
            import_scan(p.source, target, classes=classes)
        return Scan.open(target, mode="r").classes
    except BaseException:
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        raise


def _not_copied(folder: str, names: list[str]) -> list[str]:
    """The source's lock files (who last wrote it) and a crash's leftovers stay behind."""
    return [
        n for n in names if n in (LOCK_FILE, SOFT_FILE) or atomic.LEFTOVER.fullmatch(n) is not None
    ]
