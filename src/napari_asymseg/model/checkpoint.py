"""model.checkpoint."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

from napari_asymseg import __version__
from napari_asymseg.config import Config, config_from_dict
from napari_asymseg.errors import ScanError
from napari_asymseg.model.networks import NetworkPlan, build_model

CHECKPOINT = "checkpoint.pt"  # the latest state, for resuming
BEST = "best.pt"  # the best model by validation DSC, for predicting and fine-tuning


# ------------------------------------------------------------------------------------ checkpoints
def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a torn checkpoint."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def _versions() -> dict[str, str]:
    import monai

    return {"napari-asymseg": __version__, "torch": torch.__version__, "monai": monai.__version__}


def _plan_dict(plan: NetworkPlan) -> dict[str, Any]:
    return {
        "patch_size": list(plan.patch_size),
        "kernels": [list(k) for k in plan.kernels],
        "strides": [list(s) for s in plan.strides],
    }
