"""napari writer: save a scan's prediction or annotations layer as a mask file.

File > Save Selected Layer(s) with a ``.nii.gz``, ``.nii``, ``.tif`` or ``.ome.zarr`` name
writes the layer as :func:`napari_asymseg.io.exporters.export_mask` does (the scan's affine,
spacing and, for OME-Zarr, its image with the mask under ``labels/``), from the layer's data as
shown.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_asymseg.io.exporters import export_mask
from napari_asymseg.store import annotations as codes
from napari_asymseg.store.scan import Scan


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer for labels layers that belong to an asymseg scan."""
    info = (meta.get("metadata") or {}).get("asymseg") or {}
    scan_path, role = info.get("scan"), info.get("role")
    if not scan_path:
        raise ValueError(
            "the asymseg writer saves layers of asymseg scans (prediction, annotations): "
            "save other layers with napari's own writer"
        )
    scan = Scan.open(scan_path, mode="r")
    arr = np.asarray(data)
    # annotations: not annotated and painted background both export as background 0
    mask = codes.to_mask(arr) if role == "annotations" else arr.astype(np.uint8)
    out = export_mask(scan, path, what=role or "prediction", overwrite=True, mask=mask)
    return [str(out)]
