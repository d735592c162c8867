"""Export masks out of the scan store: NIfTI (source affine), TIFF, OME-Zarr labels.

Exports are written beside their destination and renamed into place, so an interrupted export
never leaves a half-written file under the requested name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import cast

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
from napari_asymseg.store.atomic import make_folder
from napari_asymseg.store.scan import Scan, read

MASK_FORMATS = NIFTI + TIFF + (".ome.zarr", ".zarr")


def mask_from_scan(scan: Scan, what: str = "prediction") -> np.ndarray:
    """The 0..K mask to export: ``prediction``, ``annotations`` or ``ground_truth``."""
    if what == "annotations":
        ann = scan.read_annotations()
        # Not annotated (0) and background (1) both export as background 0.
        return np.where(ann > 1, ann - 1, 0).astype(np.uint8)
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
) -> Path:
    """Write a mask of ``scan`` to NIfTI (source affine), TIFF, or OME-Zarr (image + labels).

    ``mask`` (0..K on the scan's grid) replaces the stored ``what``: the napari writer passes
    the layer's data as the user sees it. The file is written beside its destination and
    renamed into place, so an interrupted export never leaves a half-written file under the
    requested name.
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
    make_folder(out.parent)
    tmp = out.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{out.name}")
    try:
        if ext in NIFTI:
            import nibabel as nib

            img = nib.Nifti1Image(mask.transpose(2, 1, 0), scan.affine[:, AXES_SWAP])
            img.set_qform(img.affine, code=1)
            img.set_sform(img.affine, code=1)
            nib.save(img, str(tmp))
        elif ext in TIFF:
            import tifffile

            sz, sy, sx = scan.spacing
            tifffile.imwrite(
                str(tmp),
                mask,
                imagej=True,
                resolution=(1 / sx, 1 / sy),
                metadata={"spacing": sz, "unit": "mm", "axes": "ZYX"},
            )
        else:
            _write_ome_labels(scan, mask, tmp, what)
        if out.exists():
            backup = out.with_name(f".old-{uuid.uuid4().hex[:8]}-{out.name}")
            os.rename(out, backup)
            os.rename(tmp, out)
            _remove(backup)
        else:
            os.rename(tmp, out)
    finally:
        _remove(tmp)
    return out


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
