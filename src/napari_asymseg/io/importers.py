"""Import medical images into the scan store (export is in :mod:`napari_asymseg.io.exporters`).

Every volume is held as (Z, Y, X) with an affine from those voxel indices to RAS world
millimetres, whatever the file's own convention:

- NIfTI (nibabel) stores ``data[i, j, k]`` with an affine to RAS; we transpose to (k, j, i).
- NRRD / MHA / MHD (SimpleITK) are (z, y, x) arrays with an LPS direction matrix; we flip to RAS.
- TIFF (tifffile) carries no orientation; spacing comes from the ImageJ/resolution tags.
- OME-Zarr (NGFF 0.4/0.5) images give spacing and translation from their scale transforms.

Export reverses the same maps, so an import -> export round trip returns the original grid.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from napari_asymseg.errors import ScanError, cause
from napari_asymseg.io.volume import Volume
from napari_asymseg.store.annotations import from_mask
from napari_asymseg.store.geometry import (
    affine_from_spacing,
    multiscale_meta,
    validate_volume,
)
from napari_asymseg.store.scan import ATTRS_KEY, Scan

NIFTI = (".nii", ".nii.gz")
ITK = (".nrrd", ".nhdr", ".mha", ".mhd")
TIFF = (".tif", ".tiff")
TIFF_GEOMETRY_UNKNOWN = set(TIFF)
ZARR = (".zarr",)
IMPORT_FORMATS = NIFTI + ITK + TIFF + ZARR

# (Z, Y, X, 1) -> (X, Y, Z, 1): swapping columns 0 and 2 turns an affine of file indices
# (i, j, k) into one of our indices (k, j, i) and back.
AXES_SWAP = [2, 1, 0, 3]
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def suffix(path: str | os.PathLike) -> str:
    """The format suffix, with the double ones (``.nii.gz``, ``.ome.zarr``) kept whole."""
    name = Path(path).name.lower().rstrip("/")
    for double in (".nii.gz", ".ome.zarr"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def read_volume(path: str | os.PathLike, *, channel: int | None = None) -> Volume:
    """Read a 3D image or label volume from NIfTI, NRRD, MHA, TIFF or (OME-)Zarr.

    Parameters
    ----------
    path
        The file (or ``.zarr`` directory).
    channel
        For 4D inputs: which channel / time point to take.

    Raises
    ------
    ScanError
        Missing file, unknown format, unreadable file, or not 3D after channel selection.
    """
    path = Path(path)
    if not path.exists():
        raise ScanError(f"no such file: {path}: check the path")
    ext = suffix(path)
    if ext not in IMPORT_FORMATS and ext != ".ome.zarr":
        raise ScanError(
            f"cannot import {path.name}: unknown format {ext or '(no suffix)'}; use one of "
            f"{', '.join(IMPORT_FORMATS)}, or a folder of DICOM files"
        )
    try:
        if ext in NIFTI:
            vol = _read_nifti(path, channel)
        elif ext in ITK:
            vol = _read_itk(path, channel)
        elif ext in TIFF:
            vol = _read_tiff(path, channel)
        else:
            vol = read_zarr_image(path, channel)
    except ScanError:
        raise
    except Exception as exc:  # each reader library raises its own types for damaged files
        raise ScanError(
            f"cannot read {path.name} ({cause(exc)}): the file is damaged or not "
            f"a {ext} image; export it again from the source"
        ) from None
    validate_volume(vol.data, path.name)
    return vol


def _pick_channel(data: np.ndarray, channel: int | None, axis: int, name: str) -> np.ndarray:
    if data.ndim == 4 and data.shape[axis] == 1:
        return np.take(data, 0, axis=axis)
    if data.ndim == 4 and channel is not None:
        if not 0 <= channel < data.shape[axis]:
            raise ScanError(
                f"{name} has {data.shape[axis]} channels, --channel {channel} is out of range"
            )
        return np.take(data, channel, axis=axis)
    if data.ndim == 4:
        raise ScanError(
            f"{name} is 4D {data.shape} with {data.shape[axis]} channels/time points: pick one "
            "with --channel N"
        )
    return data


def _read_nifti(path: Path, channel: int | None) -> Volume:
    import nibabel as nib

    img = cast(Any, nib.load(str(path)))  # an image with a header; the stubs say FileBasedImage
    proxy = img.dataobj
    scaled = getattr(proxy, "slope", 1.0) != 1.0 or getattr(proxy, "inter", 0.0) != 0.0
    data = np.asarray(img.get_fdata(dtype=np.float32) if scaled else np.asanyarray(proxy))
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    data = _pick_channel(data, channel, axis=3, name=path.name)
    if data.ndim != 3:
        return Volume(data, np.eye(4), str(path))  # rejected by validate_volume
    affine = np.asarray(img.affine, dtype=np.float64)[:, AXES_SWAP]
    return Volume(np.ascontiguousarray(data.transpose(2, 1, 0)), affine, str(path))


def _read_itk(path: Path, channel: int | None) -> Volume:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    data = sitk.GetArrayFromImage(img)
    if img.GetNumberOfComponentsPerPixel() > 1:
        data = _pick_channel(data, channel, axis=data.ndim - 1, name=path.name)
    if img.GetDimension() != 3 or data.ndim != 3:
        return Volume(data, np.eye(4), str(path))  # rejected by validate_volume
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(img.GetSpacing(), dtype=float)
    lps[:3, 3] = img.GetOrigin()
    return Volume(data, _LPS_TO_RAS @ lps[:, AXES_SWAP], str(path))


def _read_tiff(path: Path, channel: int | None) -> Volume:
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        series = tif.series[0]
        data = series.asarray()
        axes = series.axes.upper()
        spacing = [1.0, 1.0, 1.0]
        ij = tif.imagej_metadata or {}
        if "spacing" in ij:
            spacing[0] = float(ij["spacing"])
        page = cast(Any, tif.pages[0])
        for tag, i in (("YResolution", 1), ("XResolution", 2)):
            res = page.tags.get(tag)
            if res is not None and res.value[0]:
                spacing[i] = res.value[1] / res.value[0]
    for ax in "TC":
        if ax in axes and data.ndim == 4:
            data = _pick_channel(data, channel, axis=axes.index(ax), name=path.name)
            axes = axes.replace(ax, "")
    if data.ndim == 2:
        return Volume(data, np.eye(4), str(path))  # rejected by validate_volume
    return Volume(data, affine_from_spacing(spacing), str(path))


def read_zarr_image(path: Path, channel: int | None = None) -> Volume:
    """Read level 0 of an OME-Zarr image (or a plain zarr array) as a (Z, Y, X) volume."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise ScanError(f"{path} is not a readable zarr store ({exc}): check the path") from None
    if isinstance(node, zarr.Array):
        return Volume(np.asarray(node[...]), np.eye(4)[:, AXES_SWAP], str(path))
    attrs = dict(node.attrs)
    if ATTRS_KEY in attrs:
        raise ScanError(f"{path} is already an asymseg scan: open it directly, no import needed")
    ms = multiscale_meta(attrs)
    if ms is None:
        raise ScanError(
            f"{path} is a zarr group without an image: expected OME-Zarr 'multiscales' metadata"
        )
    ds = ms["datasets"][0]
    data = np.asarray(cast(zarr.Array, node[ds["path"]])[...])
    axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])] or list("zyx")
    scale = [1.0] * data.ndim
    translation = [0.0] * data.ndim
    for t in ds.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = list(t["scale"])
        elif t.get("type") == "translation":
            translation = list(t["translation"])
    for ax in ("t", "c"):
        if ax in axes and data.ndim == 4:
            i = axes.index(ax)
            data = _pick_channel(data, channel, axis=i, name=path.name)
            del axes[i], scale[i], translation[i]
    while data.ndim > 3 and data.shape[0] == 1:
        data, scale, translation = data[0], scale[1:], translation[1:]
    if data.ndim != 3:
        return Volume(data, np.eye(4), str(path))  # rejected by validate_volume
    affine = affine_from_spacing(scale[-3:])
    affine[:3, 3] = translation[-3:][::-1]
    return Volume(data, affine, str(path))


def labels_to_annotations(
    labels: np.ndarray, label_map: Mapping[int, int] | None = None
) -> np.ndarray:
    """Dense annotations from a label mask: ``0 -> 1`` (background) and ``k -> k + 1``.

    ``label_map`` picks and renumbers source labels (``{37: 1, 38: 1}``); labels it does not
    name become background.
    """
    mask = remap_labels(labels, label_map)
    return (mask.astype(np.uint16) + 1).astype(np.uint8)


def remap_labels(labels: np.ndarray, label_map: Mapping[int, int] | None = None) -> np.ndarray:
    """A 0..K uint8 mask from a label volume, optionally renumbered by ``label_map``."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f" and (not np.all(np.isfinite(labels)) or np.any(np.mod(labels, 1))):
        raise ScanError("the label file holds fractional or NaN values: use an integer mask")
    labels = labels.astype(np.int64)
    if label_map:
        out = np.zeros(labels.shape, np.uint8)
        for src, dst in label_map.items():
            out[labels == src] = dst
        return out
    if labels.min() < 0 or labels.max() > 254:
        raise ScanError(
            f"label values must lie in 0..254, got {labels.min()}..{labels.max()}: "
            "pick the labels you need with --label-map"
        )
    return labels.astype(np.uint8)


def _check_same_grid(vol: Volume, ref: Volume, what: str) -> None:
    if vol.data.shape != ref.data.shape:
        raise ScanError(
            f"{what} shape {vol.data.shape} does not match the image {ref.data.shape}: "
            "use labels drawn on this image (same grid)"
        )
    # TIFF carries no orientation and often no spacing: only the shape can be checked.
    if TIFF_GEOMETRY_UNKNOWN & {suffix(vol.source), suffix(ref.source)}:
        return
    if not np.allclose(vol.affine, ref.affine, atol=1e-3):
        raise ScanError(
            f"{what} is on a different grid than the image (affines differ): resample it onto "
            "the image first"
        )


def import_scan(
    image: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    truth: str | os.PathLike | None = None,
    label_map: Mapping[int, int] | None = None,
    classes: Sequence[str] | None = None,
    channel: int | None = None,
    multiscale: bool | None = None,
    zarr_format: int = 3,
    overwrite: bool = False,
    series: str | None = None,
) -> Scan:
    """Create a scan from an image file, with optional annotations and reference mask.

    Parameters
    ----------
    image
        NIfTI, NRRD, MHA, TIFF or OME-Zarr image, or a folder of DICOM files (one ``.dcm``
        file stands for its series); see :mod:`napari_asymseg.io.dicom`.
    out
        The new scan's ``.zarr`` directory.
    labels
        A label file on the same grid, imported as dense annotations (0 -> 1, k -> k + 1).
    truth
        A label file kept as the scan's ground truth for evaluation (not used for training).
    label_map
        Source label -> class number, applied to ``labels`` and ``truth``.
    classes
        Foreground class names; by default ``class1..classK`` from the labels found.
    multiscale
        Store an OME-Zarr pyramid; by default for images over 256^3 voxels.
    series
        The SeriesInstanceUID to import when a DICOM folder holds several series.
    """
    vol, dicom = _read_image(image, channel, series)
    masks = _read_masks(vol, {"annotations": labels, "ground_truth": truth}, label_map)
    if multiscale is None:
        multiscale = vol.data.size > 256**3
    ann = masks.get("annotations")
    return Scan.create(
        out,
        vol.data,
        affine=vol.affine,
        classes=_class_names(classes, masks),
        annotations=None if ann is None else from_mask(ann),  # 0 -> background, k -> class k
        ground_truth=masks.get("ground_truth"),
        multiscale=multiscale,
        zarr_format=zarr_format,
        source=str(Path(image).resolve()),
        overwrite=overwrite,
        dicom=dicom,
    )


def _read_image(
    image: str | os.PathLike, channel: int | None, series: str | None
) -> tuple[Volume, dict[str, Any] | None]:
    """The image volume, and for DICOM the source series the scan must remember."""
    from napari_asymseg.io import dicom

    path = Path(image)
    if path.is_file() and suffix(path) in dicom.DICOM_FILES:
        path, series = path.parent, series or dicom.series_of(path)
    if dicom.is_dicom_folder(path):
        found = dicom.read_dicom_series(path, series)
        validate_volume(found.volume.data, path.name)
        return found.volume, found.provenance
    if series is not None:
        raise ScanError("--series picks a series in a DICOM folder: give the folder, not a file")
    return read_volume(image, channel=channel), None


def _read_masks(
    vol: Volume,
    paths: Mapping[str, str | os.PathLike | None],
    label_map: Mapping[int, int] | None,
) -> dict[str, np.ndarray]:
    """The label files given in ``paths``, checked against the image's grid, as 0..K masks."""
    masks: dict[str, np.ndarray] = {}
    for key, path in paths.items():
        if path is not None:
            lab = read_volume(path)
            _check_same_grid(lab, vol, Path(path).name)
            masks[key] = remap_labels(lab.data, label_map)
    return masks


def _class_names(classes: Sequence[str] | None, masks: Mapping[str, np.ndarray]) -> list[str]:
    """The given class names, or ``class1..classK`` for the labels found; one per label."""
    n_found = max([int(m.max()) for m in masks.values()] + [1])
    names = list(classes) if classes else [f"class{k}" for k in range(1, n_found + 1)]
    if n_found > len(names):
        raise ScanError(
            f"the labels hold {n_found} classes but only {len(names)} names were given: "
            "pass one --classes name per label"
        )
    return names
