"""Checks and geometry shared by every 3D volume: the scan store, importers and exporters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_asymseg.errors import ScanError


def is_zarr_folder(path: Path) -> bool:
    """A folder holding a zarr group or array (v2 or v3 metadata)."""
    return any((path / name).is_file() for name in ("zarr.json", ".zgroup", ".zarray"))


def default_chunks(shape: Sequence[int]) -> tuple[int, int, int]:
    """Chunking for a (Z, Y, X) volume.

    Thin slabs keep an autosave after painting one slice small, and 128 in-plane keeps the
    number of files of a 512^3 scan in the low thousands.
    """
    z, y, x = (int(s) for s in shape)
    return (max(1, min(z, 16)), max(1, min(y, 128)), max(1, min(x, 128)))


def validate_volume(data: Any, what: str = "image") -> None:
    """Raise :class:`ScanError` unless ``data`` is a finite numeric 3D volume.

    Parameters
    ----------
    data
        A numpy-like array.
    what
        The name used in the message ("image", "annotations", ...).
    """
    shape = tuple(getattr(data, "shape", ()))
    if len(shape) != 3:
        if len(shape) == 2:
            fix = "stack the slices into a 3D volume (Z, Y, X)"
        elif len(shape) > 3:
            fix = "select one channel or time point first (e.g. --channel 0)"
        else:
            fix = "pass a 3D array (Z, Y, X)"
        raise ScanError(
            f"{what} must be a 3D volume (Z, Y, X), got a {len(shape)}D array of shape "
            f"{shape}: {fix}"
        )
    if min(shape) < 1:
        raise ScanError(f"{what} is empty (shape {shape}): pass a volume with at least one voxel")
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "biuf":
        raise ScanError(
            f"{what} has dtype {dtype}, which is not a number type: convert it to an integer or "
            "float array"
        )
    if dtype.kind == "f":
        bad = _count_non_finite(data)
        if bad:
            raise ScanError(
                f"{what} contains {bad} NaN/Inf voxels: replace them (e.g. numpy.nan_to_num) "
                "before importing"
            )


def _count_non_finite(data: Any) -> int:
    # Slab by slab, so a lazily read volume never has to fit in memory at once.
    bad = 0
    step = max(1, 2**24 // max(1, int(np.prod(data.shape[1:]))))
    for z in range(0, data.shape[0], step):
        bad += int(np.count_nonzero(~np.isfinite(np.asarray(data[z : z + step]))))
    return bad


def affine_from_spacing(spacing: Sequence[float]) -> np.ndarray:
    """Axis-aligned affine from (Z, Y, X) indices to world coordinates (X, Y, Z) in mm."""
    sz, sy, sx = (float(s) for s in spacing)
    affine = np.zeros((4, 4))
    affine[0, 2], affine[1, 1], affine[2, 0], affine[3, 3] = sx, sy, sz, 1.0
    return affine


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size along (Z, Y, X): the lengths of the affine's columns."""
    norms = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    return (float(norms[0]), float(norms[1]), float(norms[2]))


def multiscale_meta(attrs: dict) -> dict | None:
    """The first ``multiscales`` entry of NGFF 0.5 (under ``ome``) or 0.4 (top level)."""
    ms = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
    return ms[0] if ms else None
