"""Where the models trained on a scan live: one folder per run, beside the scan.

``case.zarr`` keeps its models in ``case-models/run-YYYYmmdd-HHMMSS/``; the newest run with a
best checkpoint is the scan's current model. A run never reuses a folder, so training again (or
loading a bundle) never overwrites an earlier model.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from napari_asymseg.errors import ScanError
from napari_asymseg.model.checkpoint import BEST
from napari_asymseg.store.scan import Scan

RUN_PREFIX = "run-"


def model_root(scan_path: str | os.PathLike) -> Path:
    """Models trained on a scan live beside it: ``case.zarr`` -> ``case-models/``."""
    scan_path = Path(scan_path)
    return scan_path.with_name(scan_path.name.removesuffix(".zarr") + "-models")


def latest_model(scan_path: str | os.PathLike) -> Path | None:
    """The newest run folder of the scan that holds a best checkpoint, if any."""
    runs = sorted(p for p in model_root(scan_path).glob(f"{RUN_PREFIX}*") if (p / BEST).is_file())
    return runs[-1] if runs else None


def new_model_dir(scan_path: str | os.PathLike) -> Path:
    """A fresh (not yet created) folder for the next run: earlier models are never overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = model_root(scan_path)
    out, n = root / f"{RUN_PREFIX}{stamp}", 1
    while out.exists():
        out, n = root / f"{RUN_PREFIX}{stamp}-{n}", n + 1
    return out


def adopt_model(scan: Scan, source: str | os.PathLike) -> Path:
    """Make a bundle, checkpoint or model folder the scan's current model (a copy of its
    checkpoint in a new run folder); returns that folder.

    Raises
    ------
    ScanError
        When ``source`` is not a readable model, or predicts other classes than the scan has.
    """
    from napari_asymseg.model.checkpoint import save_atomic
    from napari_asymseg.model.load import load_checkpoint

    ckpt = load_checkpoint(source)
    if int(ckpt["num_classes"]) != scan.num_classes:
        raise ScanError(
            f"the model predicts {int(ckpt['num_classes']) - 1} class(es) but "
            f"{scan.path.name} has {scan.num_classes - 1}: load a model for these classes"
        )
    out = new_model_dir(scan.path)
    out.mkdir(parents=True)
    save_atomic(ckpt, out / BEST)
    return out
