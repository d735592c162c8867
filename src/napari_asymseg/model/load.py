"""model.load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from napari_asymseg.errors import ScanError
from napari_asymseg.model.checkpoint import BEST
from napari_asymseg.store.geometry import is_zarr_folder


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file, the best model of a model folder, or a model bundle (folder or
    zip, :mod:`napari_asymseg.bundle`); clear errors if broken."""
    from napari_asymseg.model.bundle import is_bundle, load_bundle

    path = Path(path)
    if is_bundle(path):
        return load_bundle(path)
    if path.is_dir() and not (path / BEST).is_file() and is_zarr_folder(path):
        raise ScanError(f"{path} is a scan, not a model: give a model folder, checkpoint or bundle")
    if path.is_dir():
        path = path / BEST
    if not path.is_file():
        raise ScanError(f"no model at {path}: train one first (asymseg train) or check the path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ScanError(
            f"cannot read the model {path} ({type(exc).__name__}): the file is damaged; "
            "use another checkpoint or train again"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ScanError(f"{path} is not an asymseg checkpoint: train one with asymseg train")
    return ckpt
