"""The names of a scan group's parts, the checks on what goes into them, and the image lookup.

Shared by :mod:`~napari_asymseg.store.scan` (reading), :mod:`~napari_asymseg.store.create`
(building a new scan) and :mod:`~napari_asymseg.store.results` (writing predictions), so that
none of them has to import another for a constant. The layout itself is described in
:mod:`napari_asymseg.store.scan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from napari_asymseg.errors import ScanError, cause, read_error_message
from napari_asymseg.store.geometry import multiscale_meta, validate_volume

FORMAT_VERSION = 1
ATTRS_KEY = "asymseg"
IMAGE = "image"
ANNOTATIONS = "annotations"
GROUND_TRUTH = "ground_truth"
RESULTS = "results"
RESULT_NAMES = ("prediction", "probability", "risk")
STATE_KEY = "asymseg_review"
PREDICTED_BY = "predicted_by"  # state key: the model (folder or bundle) of the prediction
QUALITY_FIGURE = "quality_figure"  # state key: the prediction's quality figure (figure.py)


def check_values(data: np.ndarray, what: str, *, max_value: int, n_classes: int) -> None:
    """Whole numbers in ``0..max_value`` (labels of a scan with ``n_classes`` classes)."""
    if data.dtype.kind == "f" and not np.all(np.mod(data, 1) == 0):
        raise ScanError(f"{what} must hold whole numbers (labels), got fractional values")
    if data.size and (data.min() < 0 or data.max() > max_value):
        raise ScanError(
            f"{what} values must lie in 0..{max_value} for {n_classes} class(es), "
            f"got {data.min()}..{data.max()}: check the label file or the class list"
        )


def check_labels(
    data: Any, what: str, shape: Sequence[int], *, max_value: int, n_classes: int
) -> None:
    """A label volume on the scan's grid with values :func:`check_values` accepts."""
    validate_volume(data, what)
    if tuple(data.shape) != tuple(shape):
        raise ScanError(
            f"{what} shape {tuple(data.shape)} does not match the image {tuple(shape)}: "
            "use labels drawn on this image (same grid)"
        )
    check_values(np.asarray(data), what, max_value=max_value, n_classes=n_classes)


def check_result_name(name: str) -> None:
    if name not in RESULT_NAMES:
        raise ScanError(f"unknown result {name!r}: use one of {', '.join(RESULT_NAMES)}")


def scan_meta(path: Path, attrs: dict[str, Any]) -> dict[str, Any]:
    """The ``asymseg`` attributes among a group's ``attrs``, checked: a scan of a format this
    version reads, with spacing, affine and class names as :meth:`Scan.create` writes them."""
    meta = attrs.get(ATTRS_KEY)
    if not isinstance(meta, dict):
        what = "an OME-Zarr image" if multiscale_meta(attrs) else "a zarr group"
        raise ScanError(
            f"{path} is {what} but not an asymseg scan (no '{ATTRS_KEY}' attributes): "
            f"import it with `asymseg import {path} NEW_SCAN.zarr`"
        )
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise ScanError(
            f"{path} was written by a newer napari-asymseg (scan format "
            f"{meta.get('version')}): upgrade napari-asymseg to open it"
        )
    for key in ("spacing", "affine", "classes"):
        if key not in meta:
            raise ScanError(f"{path} is missing the '{key}' scan attribute: re-import the image")
    check_scan_attrs(path, meta)
    return meta


def check_scan_attrs(path: Path, meta: dict[str, Any]) -> None:
    """Spacing, affine and class names as :meth:`Scan.create` writes them."""

    def finite(values: Any, n: int) -> bool:
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            return False
        return arr.size == n and bool(np.isfinite(arr).all())

    problem = None
    if not finite(meta["spacing"], 3) or min(np.asarray(meta["spacing"], float)) <= 0:
        problem = f"spacing {meta['spacing']!r} is not 3 positive numbers"
    elif not finite(meta["affine"], 16):
        problem = "the affine is not a 4x4 matrix of numbers"
    elif (
        not isinstance(meta["classes"], list)
        or not meta["classes"]
        or not all(isinstance(c, str) and c for c in meta["classes"])
    ):
        problem = f"classes {meta['classes']!r} is not a list of names"
    if problem:
        raise ScanError(f"{path}: {problem}: re-import the image, or restore the scan")


def image_levels(path: Path, group: zarr.Group) -> list[zarr.Array]:
    """The image's resolution levels, finest first.

    A plain ``image`` array is one level; an OME-Zarr multiscale group lists its levels in its
    ``multiscales`` metadata.
    """
    if IMAGE not in group:
        raise ScanError(f"{path} has no '{IMAGE}': re-import the image")
    node = group[IMAGE]
    if isinstance(node, zarr.Array):
        levels = [node]
    else:
        ms = multiscale_meta(dict(node.attrs))
        if ms is None:
            raise ScanError(
                f"{path}/{IMAGE} is a group without OME-Zarr 'multiscales' metadata: "
                "re-import the image"
            )
        levels = [cast(zarr.Array, node[ds["path"]]) for ds in ms["datasets"]]
    for level in levels:
        if level.ndim != 3:
            raise ScanError(
                f"{path}: the image has {level.ndim} dimensions, a scan needs 3 "
                "(Z, Y, X): re-import one channel or time point"
            )
    return levels


def open_group(path: Path, mode: str) -> zarr.Group:
    """The zarr group of a scan folder; one line naming the problem and the fix otherwise."""
    if not path.exists():
        raise ScanError(
            f"no scan at {path}: check the path, or create one with `asymseg import IMAGE {path}`"
        )
    if path.is_file():  # an image where a scan is expected: the commonest first mistake
        raise ScanError(
            f"{path} is a file, not a scan (a .zarr folder): import it first, with Import "
            f"image… in the dock or `asymseg import {path} {_scan_name(path)}`"
        )
    if not any((path / name).is_file() for name in ("zarr.json", ".zgroup", ".zarray")):
        raise ScanError(
            f"{path} is a folder but not a scan (no zarr metadata in it): open a .zarr scan, "
            "or import an image into a new one (Import image… in the dock, `asymseg import`)"
        )
    try:
        return zarr.open_group(str(path), mode=mode)  # type: ignore[arg-type]
    except OSError as exc:
        if exc.errno is None:  # gzip's and others' decode errors are OSErrors without a number
            raise ScanError(_unreadable(path, exc)) from None
        raise ScanError(read_error_message(exc, exc.filename or path)) from None
    except Exception as exc:  # zarr raises many types for a damaged store
        raise ScanError(_unreadable(path, exc)) from None


def _unreadable(path: Path, exc: BaseException) -> str:
    return (
        f"{path} is not a readable zarr group ({cause(exc)}): restore it from "
        "a backup or import the original image again"
    )


def _scan_name(path: Path) -> str:
    """``img.nii.gz`` -> ``img.zarr``: the scan an import of the file would make beside it."""
    name = path.name
    for ext in (".nii.gz", *path.suffixes[-1:]):
        if name.lower().endswith(ext.lower()):
            return name[: -len(ext)] + ".zarr"
    return name + ".zarr"
