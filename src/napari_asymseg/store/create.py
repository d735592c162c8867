"""Building a new scan: the whole group is written beside its destination, then swapped in.

:func:`build` writes image (a plain array or an OME-Zarr pyramid), annotations and ground
truth into ``.tmp-NAME-xxxxxxxx`` next to ``NAME`` and moves it into place with
:func:`~napari_asymseg.store.atomic.swap_in`: a crash while creating leaves nothing
half-written under ``NAME``, and ``overwrite`` replaces an old scan in one step (a crash then
leaves the old scan or the new one, which :meth:`Scan.open` sorts out). It returns nothing:
:meth:`napari_asymseg.store.scan.Scan.create` opens the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import zarr

from napari_asymseg.errors import ScanError
from napari_asymseg.store import atomic
from napari_asymseg.store.annotations import code_of_class
from napari_asymseg.store.arrays import write_array
from napari_asymseg.store.geometry import (
    affine_from_spacing,
    default_chunks,
    spacing_from_affine,
    validate_volume,
)
from napari_asymseg.store.layout import (
    ANNOTATIONS,
    ATTRS_KEY,
    FORMAT_VERSION,
    GROUND_TRUTH,
    IMAGE,
    check_labels,
)


def build(
    path: Path,
    image: Any,
    *,
    spacing: Sequence[float] | None,
    affine: np.ndarray | None,
    classes: Sequence[str],
    annotations: Any | None,
    ground_truth: Any | None,
    multiscale: bool,
    zarr_format: int,
    chunks: Sequence[int] | None,
    source: str | None,
    overwrite: bool,
    dicom: dict[str, Any] | None = None,
) -> None:
    """Write the scan that :meth:`Scan.create` describes to ``path`` (see there)."""
    validate_volume(image, "image")
    if zarr_format not in (2, 3):
        raise ScanError(f"zarr_format must be 2 or 3, got {zarr_format}")
    if not classes:
        raise ScanError("a scan needs at least one foreground class name")
    if path.exists() and not overwrite:
        raise ScanError(
            f"{path} already exists: choose another output path, or pass --overwrite to replace it"
        )
    spacing, affine = _geometry(spacing, affine)
    shape = tuple(int(s) for s in image.shape)
    ann = np.zeros(shape, np.uint8) if annotations is None else annotations
    n = len(classes)
    check_labels(ann, ANNOTATIONS, shape, max_value=code_of_class(n), n_classes=n)
    if ground_truth is not None:
        check_labels(ground_truth, GROUND_TRUTH, shape, max_value=n, n_classes=n)
    attrs = {
        "version": FORMAT_VERSION,
        "spacing": list(spacing),
        "affine": affine.tolist(),
        "classes": list(classes),
        "source": source,
    }
    if dicom:
        attrs["dicom"] = dicom
    chunks = tuple(chunks) if chunks else default_chunks(shape)
    atomic.make_folder(path.parent)
    with atomic.replacing(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=cast(Literal[2, 3], zarr_format))
        root.attrs[ATTRS_KEY] = attrs
        _write_image(root, image, spacing, chunks, multiscale)
        write_array(root, ANNOTATIONS, np.asarray(ann, dtype=np.uint8), chunks)
        if ground_truth is not None:
            write_array(root, GROUND_TRUTH, np.asarray(ground_truth, np.uint8), chunks)


def _geometry(
    spacing: Sequence[float] | None, affine: np.ndarray | None
) -> tuple[tuple[float, ...], np.ndarray]:
    """Checked spacing and affine: one follows from the other; neither means 1 mm voxels."""
    if affine is None:
        spacing = tuple(float(s) for s in (spacing or (1.0, 1.0, 1.0)))
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ScanError(f"spacing must be 3 positive numbers (Z, Y, X), got {spacing}")
        return spacing, affine_from_spacing(spacing)
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ScanError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ScanError("affine is singular: check the image header's orientation")
    derived = spacing_from_affine(affine)
    if spacing is not None and not np.allclose(derived, spacing, rtol=1e-4):
        raise ScanError(f"spacing {tuple(spacing)} disagrees with the affine's {derived}: pass one")
    return derived, affine


def _write_image(
    root: zarr.Group,
    image: Any,
    spacing: Sequence[float],
    chunks: Sequence[int],
    multiscale: bool,
) -> None:
    data = np.asarray(image)
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    elif data.dtype == bool:
        data = data.astype(np.uint8)
    if multiscale:
        _write_ome_image(root, data, spacing, chunks)
    else:
        write_array(root, IMAGE, data, chunks)


def _write_ome_image(
    root: zarr.Group, data: np.ndarray, spacing: Sequence[float], chunks: Sequence[int]
) -> None:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV05() if root.metadata.zarr_format == 3 else FormatV04()
    write_image(
        data,
        root.require_group(IMAGE),
        scale_factors=_pyramid_factors(data.shape, spacing),
        fmt=fmt,
        axes="zyx",
        scale={"z": spacing[0], "y": spacing[1], "x": spacing[2]},
        axes_units={"z": "millimeter", "y": "millimeter", "x": "millimeter"},
        storage_options={"chunks": tuple(chunks)},
    )


def _pyramid_factors(shape: Sequence[int], spacing: Sequence[float]) -> list[dict[str, int]]:
    """Downsample in-plane only while the in-plane voxel is finer than the slice distance:
    thick-slice clinical scans must not lose their few slices in the pyramid."""
    factors: list[dict[str, int]] = []
    sz, sy = spacing[0], spacing[1]
    y, x = shape[1:]
    level_z = 1
    while min(y, x) // 2 >= 64 and len(factors) < 4:
        y, x, sy = y // 2, x // 2, sy * 2
        if sy > sz * level_z * 1.5:
            level_z *= 2
        factors.append({"z": level_z, "y": 2 ** (len(factors) + 1), "x": 2 ** (len(factors) + 1)})
    return factors
