"""Export masks out of the scan store: NIfTI (source affine), TIFF, OME-Zarr labels.

Exports go through :mod:`napari_asymseg.store.atomic`: a file is written to a temporary
sibling and renamed into place, an OME-Zarr folder is built beside its destination and swapped
in, so an interrupted or failed export never leaves a half-written mask under the requested
name, and the file it would replace stays as it was.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from napari_asymseg.errors import ScanError
from napari_asymseg.io.importers import (
    AXES_SWAP,
    NIFTI,
    TIFF,
    Volume,
    read_volume,
    read_zarr_image,
    suffix,
)
from napari_asymseg.store import annotations as codes
from napari_asymseg.store.arrays import read
from napari_asymseg.store.atomic import make_folder, replacing, write_with
from napari_asymseg.store.scan import Scan

MASK_FORMATS = NIFTI + TIFF + (".ome.zarr", ".zarr", ".dcm")


def mask_from_scan(scan: Scan, what: str = "prediction") -> np.ndarray:
    """The 0..K mask to export: ``prediction``, ``annotations`` or ``ground_truth``."""
    if what == "annotations":
        # not annotated and painted background both export as background 0
        return codes.to_mask(scan.read_annotations())
    arr = scan.ground_truth if what == "ground_truth" else scan.result(what)
    if arr is None:
        hint = "run a prediction first" if what == "prediction" else "import one with --truth"
        raise ScanError(f"{scan.path} has no {what}: {hint}")
    return read(arr).astype(np.uint8, copy=False)


def export_mask(
    scan: Scan,
    out: str | os.PathLike,
    *,
    what: str = "prediction",
    overwrite: bool = False,
    mask: np.ndarray | None = None,
    modality: str | None = None,
) -> Path:
    """Write a mask of ``scan`` to NIfTI (source affine), TIFF, OME-Zarr (image + labels), or
    DICOM SEG (``.dcm``, :mod:`napari_asymseg.io.dicom_seg`).

    ``mask`` (0..K on the scan's grid) replaces the stored ``what``: the napari writer passes
    the layer's data as the user sees it. An existing ``out`` is replaced only with
    ``overwrite``, and only once the new mask is complete. ``modality`` (CT or MR) is for a
    SEG of a scan that did not come from DICOM (see there).
    """
    out = Path(out)
    ext = suffix(out)
    if ext not in MASK_FORMATS:
        raise ScanError(
            f"cannot export to {out.name}: use a name ending in {', '.join(MASK_FORMATS)}"
        )
    if out.exists() and not overwrite:
        raise ScanError(f"{out} already exists: choose another name, or pass --overwrite")
    if mask is None:
        mask = mask_from_scan(scan, what)
    elif mask.shape != scan.shape:
        raise ScanError(
            f"the mask is {mask.shape} but {scan.path.name} is {scan.shape}: export a layer "
            "of this scan"
        )
    if ext == ".dcm":
        from napari_asymseg.io.dicom_seg import export_seg

        return export_seg(scan, out, mask, what=what, modality=modality, overwrite=overwrite)
    make_folder(out.parent)
    if ext in NIFTI:
        write_with(out, lambda f: _write_nifti(scan, mask, f, gz=ext.endswith(".gz")))
    elif ext in TIFF:
        write_with(out, lambda f: _write_tiff(scan, mask, f))
    else:
        with replacing(out) as tmp:
            _write_ome_labels(scan, mask, tmp, what)
    return out


def export_replaces(scan: Scan, out: str | os.PathLike) -> list[Path]:
    """What :func:`export_mask` with ``overwrite`` would replace: ``out`` if it exists, and for
    a DICOM SEG of a scan not from DICOM its image folder (``NAME_image/``) if that exists.

    The dock asks about these before it exports. Raises ScanError when something in the way
    is never replaced: a ``NAME_image/`` folder holding files that no export wrote.
    """
    out = Path(out)
    found = [out] if out.exists() else []
    if suffix(out) == ".dcm" and not scan.dicom:
        from napari_asymseg.io.dicom_seg import existing_image_folder

        folder = existing_image_folder(out)
        found += [folder] if folder is not None else []
    return found


def _write_nifti(scan: Scan, mask: np.ndarray, f: IO[bytes], *, gz: bool) -> None:
    """NIfTI-1 with the scan's affine as both qform and sform (gzip level 1, as nibabel)."""
    import nibabel as nib

    img = nib.Nifti1Image(mask.transpose(2, 1, 0), scan.affine[:, AXES_SWAP])
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    stream: Any = gzip.GzipFile(fileobj=f, mode="wb", compresslevel=1, mtime=0) if gz else f
    try:
        img.to_file_map(img.make_file_map({"image": stream, "header": stream}))
    finally:
        if gz:
            stream.close()  # writes the gzip trailer; ``f`` itself stays open


def _write_tiff(scan: Scan, mask: np.ndarray, f: IO[bytes]) -> None:
    """ImageJ TIFF with the in-plane resolution and the slice spacing, in mm."""
    import tifffile

    sz, sy, sx = scan.spacing
    tifffile.imwrite(
        f,
        mask,
        imagej=True,
        resolution=(1 / sx, 1 / sy),
        metadata={"spacing": sz, "unit": "mm", "axes": "ZYX"},
    )


def _write_ome_labels(scan: Scan, mask: np.ndarray, out: Path, name: str) -> None:
    import dask.array as da
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image, write_labels

    sz, sy, sx = scan.spacing
    scale = {"z": sz, "y": sy, "x": sx}
    units = {"z": "millimeter", "y": "millimeter", "x": "millimeter"}
    root = zarr.open_group(str(out), mode="w", zarr_format=3)
    # The image is streamed from the scan so that exporting a large scan never loads it whole.
    write_image(
        da.from_zarr(scan.image),
        root,
        scale_factors=[],
        fmt=FormatV05(),
        axes="zyx",
        scale=scale,
        axes_units=units,
    )
    write_labels(
        mask,
        root,
        name=name,
        scaler=None,
        scale_factors=[],
        label_metadata={"source": {"image": "../../"}},
        fmt=FormatV05(),
        axes="zyx",
        scale=scale,
        axes_units=units,
    )


def read_mask(path: str | os.PathLike) -> Volume:
    """Read an exported mask back (the labels of an OME-Zarr export, or a NIfTI/TIFF file)."""
    path = Path(path)
    if suffix(path) in (".ome.zarr", ".zarr") and (path / "labels").is_dir():
        import zarr

        labels = zarr.open_group(str(path / "labels"), mode="r")
        attrs = cast(dict, labels.attrs.get("ome") or dict(labels.attrs))
        names = attrs.get("labels", [])
        if not names:
            raise ScanError(f"{path} has no labels listed: export the mask again")
        return read_zarr_image(path / "labels" / names[0], None)
    return read_volume(path)
