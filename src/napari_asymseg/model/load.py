"""Load any model a user can point at: a checkpoint file, a model folder or a bundle.

The one entry point for predicting, fine-tuning and adopting a model. Every route loads with
``weights_only=True`` (:mod:`napari_asymseg.model.checkpoint`): a file that would run code when
unpickled is refused, never run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from napari_asymseg.model.bundle import is_bundle, load_bundle
from napari_asymseg.model.checkpoint import read_model


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint of a ``.pt`` file, of a model folder (its best model) or of a model
    bundle (folder or zip, :mod:`napari_asymseg.model.bundle`); clear errors if broken."""
    path = Path(path)
    return load_bundle(path) if is_bundle(path) else read_model(path)
