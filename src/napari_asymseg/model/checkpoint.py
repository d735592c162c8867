"""One checkpoint file (``.pt``): written whole or not at all, read without running code.

A checkpoint is a dictionary of plain values (str, int, float, bool, None, lists, tuples,
dicts) and tensors: the config, the network plan, the weights, the optimizer state and the
training history. :func:`save_atomic` writes only such values (a numpy scalar becomes a float,
torch's version string a str), so :func:`read_checkpoint` loads with ``weights_only=True``: a
pickle that would call anything else (a shared file can run arbitrary code when loaded with
plain :func:`pickle`) is refused with a clear error instead of being run. Older checkpoints
that hold torch's version object or numpy scalars still load: those few harmless types are
allow-listed.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.torch_version import TorchVersion

from napari_asymseg import __version__
from napari_asymseg.config import Config, config_from_dict
from napari_asymseg.errors import ScanError
from napari_asymseg.model.networks import NetworkPlan, build_model
from napari_asymseg.store.atomic import write_with
from napari_asymseg.store.geometry import is_zarr_folder

CHECKPOINT = "checkpoint.pt"  # the latest state, for resuming
BEST = "best.pt"  # the best model by validation DSC, for predicting and fine-tuning

_SCALAR = np.float64(0).__reduce__()[0]  # numpy's scalar constructor, whatever its module
SAFE_GLOBALS: list[Any] = [
    TorchVersion,  # a str subclass: torch.__version__ in the checkpoints of earlier versions
    (_SCALAR, "numpy.core.multiarray.scalar"),  # numpy scalars pickled by numpy 1.x
    (_SCALAR, "numpy._core.multiarray.scalar"),  # ... and by numpy 2.x
    np.dtype,
    *{type(np.dtype(c)) for c in "?bhilqBHILQefd"},  # their dtypes (numeric only)
]
"""The only globals a checkpoint may name besides torch's own tensor types."""
_ALLOW_LOCK = threading.Lock()  # torch's allow-list is process-wide: one load changes it at once


# ------------------------------------------------------------------------------------ writing
def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a torn checkpoint."""
    state = plain(obj)
    write_with(path, lambda f: torch.save(state, f))


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and str subclasses as str (tensors and
    containers of plain values are returned as they are, state dicts keep their metadata)."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, str):
        return obj if type(obj) is str else str(obj)
    if isinstance(obj, dict):
        items = {k: plain(v) for k, v in obj.items()}
        return obj if all(items[k] is obj[k] for k in obj) else items
    if isinstance(obj, list | tuple):
        values = [plain(v) for v in obj]
        if all(a is b for a, b in zip(values, obj, strict=True)):
            return obj
        return values if isinstance(obj, list) else tuple(values)
    return obj


# ------------------------------------------------------------------------------------ reading
def read_model(path: str | Path) -> dict[str, Any]:
    """The checkpoint in a ``.pt`` file, or the best one of a model folder; clear errors."""
    path = Path(path)
    if path.is_dir() and not (path / BEST).is_file() and is_zarr_folder(path):
        raise ScanError(f"{path} is a scan, not a model: give a model folder, checkpoint or bundle")
    if path.is_dir():
        path = path / BEST
    if not path.is_file():
        raise ScanError(f"no model at {path}: train one first (asymseg train) or check the path")
    ckpt = read_checkpoint(path, "the file is damaged; use another checkpoint or train again")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ScanError(f"{path} is not an asymseg checkpoint: train one with asymseg train")
    return ckpt


def read_checkpoint(path: Path, damaged: str) -> Any:
    """``torch.load`` without running code: only tensors, plain values and :data:`SAFE_GLOBALS`.

    Raises ScanError naming what the file would call when it is not such a file, and ending in
    ``damaged`` (what to do) when it cannot be read at all.
    """
    try:
        with _allow_listed():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        refused = unsafe_name(exc) if isinstance(exc, pickle.UnpicklingError) else None
        if refused is not None:
            raise ScanError(unsafe_message(path, refused)) from None
        raise ScanError(f"cannot read the model {path} ({type(exc).__name__}): {damaged}") from None


def unsafe_name(exc: Exception) -> str | None:
    """What a refused pickle would have called, from torch's error; None when the file is
    merely not a pickle (a damaged or foreign file)."""
    patterns = (r"GLOBAL (\S+)", r"unrecognized function (.+?)(?: which|$)", r"but got (\S+)")
    found = (re.search(p, str(exc), re.MULTILINE) for p in patterns)
    return next((m.group(1) for m in found if m), None)


def unsafe_message(path: Path, name: str) -> str:
    """One line for a pickle that names a global outside the allow-list."""
    return (
        f"{path} is not a safe model file (loading it would call {name}, which can run any "
        "code): it was not written by napari-asymseg, or was changed since; load only models "
        "you trust, and export or train it again with napari-asymseg"
    )


@contextlib.contextmanager
def _allow_listed() -> Iterator[None]:
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    if safe_globals is None:  # pragma: no cover - older torch: plain types and tensors only
        yield
        return
    with _ALLOW_LOCK, safe_globals(SAFE_GLOBALS):
        yield


# ------------------------------------------------------------------------------------ models
def model_from_checkpoint(ckpt: dict[str, Any]) -> tuple[torch.nn.Module, Config, NetworkPlan]:
    """The network (with its weights), config and plan of a checkpoint or bundle."""
    try:
        config = config_from_dict(ckpt["config"])
        plan = NetworkPlan(**{k: _tuples(v) for k, v in ckpt["plan"].items()})
        model = build_model(config.model, plan, out_channels=int(ckpt["num_classes"]))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        made_by = ckpt.get("versions", {}).get("napari-asymseg", "an unknown version")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScanError(
            f"this model was made by napari-asymseg {made_by} and does not fit this version "
            f"{__version__} ({first[:120]}): use the version that made it, or train again"
        ) from None
    return model, config, plan


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list | tuple) else v


def versions() -> dict[str, str]:
    import monai

    return {
        "napari-asymseg": __version__,
        "torch": str(torch.__version__),  # a TorchVersion otherwise: not a plain type
        "monai": str(monai.__version__),
    }


def plan_dict(plan: NetworkPlan) -> dict[str, Any]:
    return {
        "patch_size": list(plan.patch_size),
        "kernels": [list(k) for k in plan.kernels],
        "strides": [list(s) for s in plan.strides],
    }
