"""Renaming a scan's foreground classes (an import from NIfTI or NRRD names them ``class1``..).

The names live in the scan's ``asymseg`` attributes beside its geometry; the annotation codes
do not change, so paint, predictions and models stay valid. The write goes through
:mod:`napari_asymseg.store.attrs` (read from disk, locked, whole and synced).
"""

from __future__ import annotations

from typing import Any

from napari_asymseg.errors import ScanError
from napari_asymseg.store import attrs as scan_attrs
from napari_asymseg.store.layout import ATTRS_KEY
from napari_asymseg.store.scan import Scan

MAX_NAME = 64


def check_class_name(name: str, others: tuple[str, ...]) -> str:
    """``name`` stripped, or a ScanError naming what is wrong with it and the fix."""
    clean = name.strip()
    if not clean:
        raise ScanError("a class needs a name: type one, e.g. tumour")
    if len(clean) > MAX_NAME or any(not c.isprintable() or c == "," for c in clean):
        raise ScanError(
            f"{clean[:20]!r}… is not a usable class name: use at most {MAX_NAME} printable "
            "characters, without commas"
        )
    if clean.casefold() in (o.casefold() for o in others):
        raise ScanError(f"the scan has a class named {clean!r} already: choose another name")
    return clean


def rename_class(scan: Scan, number: int, name: str) -> str:
    """Rename foreground class ``number`` (1-based) of ``scan``; returns the name stored.

    Raises
    ------
    ScanError
        When ``number`` is not a class of the scan, the name is empty, too long, holds a
        comma or a control character, or is taken by another class; or the scan cannot be
        written (read-only, busy).
    """
    classes = scan.classes
    if not 1 <= number <= len(classes):
        raise ScanError(
            f"{scan.path.name} has classes 1 to {len(classes)}, not {number}: pick one of them"
        )
    others = classes[: number - 1] + classes[number:]
    clean = check_class_name(name, others)
    if scan.group.read_only:
        raise ScanError(f"{scan.path.name} is open read-only: open it writable to rename a class")

    def renamed(meta: Any) -> dict[str, Any]:
        meta = dict(meta) if isinstance(meta, dict) else {}
        names = list(meta.get("classes", classes))
        names[number - 1] = clean
        return {**meta, "classes": names}

    scan_attrs.update(scan.path, ATTRS_KEY, renamed, what="the class names")
    names = list(classes)
    names[number - 1] = clean
    scan._meta["classes"] = names  # the open scan says what the disk now holds
    return clean
