"""Self-describing model bundles: one folder (or zip) a colleague can load anywhere.

Layout, following MONAI's bundle convention (``configs/``, ``models/``, ``docs/``), which the
clinical AI tools that read MONAI bundles recognise::

    NAME/
      configs/metadata.json    MONAI bundle metadata (versions, task, input/output format) plus
                               an ``asymseg`` block: bundle format, file hashes, ONNX check
      configs/inference.json   MONAI ``network_def`` (DynUNet and its arguments): MONAI's
                               ConfigParser builds the network without this plugin
      configs/asymseg.json     everything the plugin needs: the full config, the network
                               plan, classes, spacing, the training history, the annotations'
                               hash and the quality figure on the trained scan
      models/model.pt          the weights (a state dict, MONAI's convention)
      models/model.ts          TorchScript module (traced), logits for a [B, 1, Z, Y, X] image
      models/model.onnx        ONNX model with dynamic batch and spatial axes
      docs/README.md           how to load it with plain torch and with onnxruntime

The bundle is written under a temporary name and swapped into place (:mod:`napari_asymseg.store.
atomic`); loading verifies the format version and the SHA-256 of the weights, so a damaged or
foreign bundle is a clear error, and reads the weights with ``weights_only=True``
(:mod:`napari_asymseg.model.checkpoint`): a bundle whose weights would run code is refused.
The TorchScript and ONNX files are written for other tools and never loaded here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch

from napari_asymseg import __version__
from napari_asymseg.config import Config
from napari_asymseg.errors import ScanError
from napari_asymseg.model.checkpoint import model_from_checkpoint, read_checkpoint, read_model
from napari_asymseg.model.networks import NetworkPlan, dynunet_args
from napari_asymseg.store import atomic

BUNDLE_FORMAT = 1
"""Version of this layout; a bundle of a newer format is refused with a clear message."""
ONNX_TOLERANCE = 1e-4


def is_bundle(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "configs" / "metadata.json").is_file() or (
        p.is_file() and p.suffix == ".zip" and zipfile.is_zipfile(p)
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------- export
def export_bundle(
    model: str | os.PathLike,
    out: str | os.PathLike,
    *,
    onnx: bool = True,
    torchscript: bool = True,
    zip: bool = False,  # noqa: A002 - the user-facing name
    overwrite: bool = False,
    name: str | None = None,
) -> Path:
    """Write the model (a model folder, checkpoint or bundle) as a bundle at ``out``.

    Returns the bundle's folder, or the zip file when ``zip`` is set.
    """
    out = Path(out)
    target = out.with_suffix(".zip") if zip else out
    if target.exists() and not overwrite:
        raise ScanError(f"{target} exists: choose another name or pass --overwrite")
    # what model.load.load_checkpoint does (it imports this module, so this one cannot)
    ckpt = load_bundle(model) if is_bundle(model) else read_model(Path(model))
    net, cfg, plan = model_from_checkpoint(ckpt)
    net.eval()
    classes = _classes(ckpt)
    tmp = atomic.temporary_name(out)
    try:
        files, onnx_check = _write_models(tmp / "models", net, plan, onnx, torchscript)
        _write_configs(tmp / "configs", ckpt, cfg, plan, classes, _quality(Path(model)))
        meta = _metadata(ckpt, cfg, plan, classes, files, onnx_check, name or out.name)
        atomic.write_json(tmp / "configs" / "metadata.json", meta)
        atomic.make_folder(tmp / "docs")
        atomic.write_text(tmp / "docs" / "README.md", _readme(name or out.name, plan, classes))
        _publish(tmp, target, out.name, zip)
    except OSError as exc:
        raise ScanError(
            f"cannot write the bundle {target} ({exc.strerror or exc}): choose a writable "
            "folder with free space"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _classes(ckpt: dict[str, Any]) -> list[str]:
    num_classes = int(ckpt["num_classes"])
    return list(ckpt.get("classes") or [f"class{k}" for k in range(1, num_classes)])


def _write_models(
    folder: Path, net: torch.nn.Module, plan: NetworkPlan, onnx: bool, torchscript: bool
) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The weights, TorchScript and ONNX files; their SHA-256 and the ONNX check."""
    atomic.make_folder(folder)
    state = net.state_dict()
    atomic.write_with(folder / "model.pt", lambda f: torch.save(state, f))
    example = torch.randn(1, 1, *plan.patch_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = net(example).numpy()
    files = {"models/model.pt": _sha256(folder / "model.pt")}
    if torchscript:
        # TorchScript is what MONAI bundles and most C++/Java runtimes load today; torch
        # marks it deprecated in favour of torch.export, whose files those tools cannot read
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings
            traced = torch.jit.trace(net, example)
            atomic.write_with(folder / "model.ts", lambda f: torch.jit.save(traced, f))
        files["models/model.ts"] = _sha256(folder / "model.ts")
    onnx_check: dict[str, Any] | None = None
    if onnx:
        _export_onnx(net, example, folder / "model.onnx")
        files["models/model.onnx"] = _sha256(folder / "model.onnx")
        onnx_check = check_onnx(folder / "model.onnx", example.numpy(), reference)
    return files, onnx_check


def _quality(model: Path) -> Any:
    """The quality figure on the scan the model was trained on (its folder's quality.json)."""
    path = (model if model.is_dir() else model.parent) / "quality.json"
    try:  # none (never predicted on its scan), or unreadable: None
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_configs(folder: Path, ckpt, cfg: Config, plan: NetworkPlan, classes, quality=None):
    """``asymseg.json`` (all the plugin needs) and ``inference.json`` (MONAI's network_def)."""
    atomic.make_folder(folder)
    history = ckpt.get("history", [])
    best = next((h for h in history if h.get("step") == ckpt.get("best_step")), None)
    info = {
        "bundle_format": BUNDLE_FORMAT,
        **{k: ckpt[k] for k in ("config", "plan")},
        "num_classes": int(ckpt["num_classes"]),
        "classes": classes,
        **{k: ckpt.get(k) for k in ("spacing", "seed", "annotations_hash")},
        "trained_on": ckpt.get("scan"),
        **{k: ckpt.get(k) for k in ("step", "best_step", "best_dsc")},
        "validation": best,
        "history": history,
        "versions": ckpt.get("versions", {}),
        "quality": quality,  # the quality figure on its scan's unpainted voxels
    }
    atomic.write_json(folder / "asymseg.json", info)
    num_classes = int(ckpt["num_classes"])
    args = dynunet_args(cfg.model, plan, 1, num_classes, res=cfg.model.name == "resunet")
    inference = {
        "network_def": {"_target_": "monai.networks.nets.DynUNet", **args},
        "roi_size": list(plan.patch_size),
        "sw_overlap": cfg.predict.overlap,
        "spacing_zyx_mm": ckpt.get("spacing"),
    }
    atomic.write_json(folder / "inference.json", inference)


def _publish(tmp: Path, target: Path, root_name: str, zip: bool) -> None:  # noqa: A002
    """Swap the finished folder (or its zip, with ``root_name/`` inside) in at ``target``."""
    if not zip:
        atomic.swap_in(tmp, target)
        return
    with (
        atomic.replacing(target) as zipped,
        zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf,
    ):
        for file in sorted(f for f in tmp.rglob("*") if f.is_file()):
            zf.write(file, Path(root_name) / file.relative_to(tmp))


def _export_onnx(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    axes = {0: "batch", 2: "z", 3: "y", 4: "x"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        # The TorchScript-based exporter: it keeps the spatial axes dynamic (any volume divisible
        # by the strides); the dynamo exporter fixes them to the example's shape.
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
            opset_version=17,
        )


def check_onnx(path: Path, example: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Run the ONNX model with onnxruntime on the example patch; compare with torch's output."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"checked": False, "reason": "onnxruntime is not installed"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": example.astype(np.float32)})
    diff = float(np.abs(np.asarray(got) - reference).max())
    if diff > ONNX_TOLERANCE:
        raise ScanError(
            f"the ONNX export differs from the torch model by {diff:.2g} (> {ONNX_TOLERANCE}): "
            "export without ONNX (--no-onnx) and report this"
        )
    return {"checked": True, "max_abs_diff": diff, "tolerance": ONNX_TOLERANCE}


def _metadata(ckpt, cfg, plan, classes, files, onnx_check, name) -> dict[str, Any]:
    """MONAI's ``metadata.json``, with an ``asymseg`` block: format, hashes, ONNX check."""
    versions = ckpt.get("versions", {})
    best = ckpt.get("best_dsc")
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
        "0.8.1/meta_schema_20220324.json",
        "version": "1.0.0",
        "changelog": {"1.0.0": "exported by napari-asymseg"},
        "monai_version": versions.get("monai", monai.__version__),
        "pytorch_version": versions.get("torch", torch.__version__).split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"napari-asymseg": versions.get("napari-asymseg")},
        "name": name,
        "task": f"3D segmentation of {', '.join(classes)}",
        "description": (
            f"{cfg.model.name} (MONAI DynUNet) trained by napari-asymseg with the "
            f"{cfg.loss.name} loss on sparse annotations; best validation DSC "
            f"{best:.3f}"
            if isinstance(best, float)
            else "trained by napari-asymseg"
        ),
        "authors": "napari-asymseg user",
        "copyright": "see the training data's licence",
        "network_data_format": _data_format(plan, classes),
        "asymseg": {
            "bundle_format": BUNDLE_FORMAT,
            "plugin_version": __version__,
            "files_sha256": files,
            "onnx_check": onnx_check,
            "axes": "Z, Y, X (voxel spacing in configs/asymseg.json)",
        },
    }


def _data_format(plan: NetworkPlan, classes: list[str]) -> dict[str, Any]:
    """MONAI's ``network_data_format``: a one-channel patch in, logits per class out."""
    patch = {"spatial_shape": list(plan.patch_size), "dtype": "float32", "value_range": []}
    image = {
        "type": "image",
        "format": "magnitude",
        "modality": "any (one channel)",
        "num_channels": 1,
        **patch,
        "is_patch_data": True,
        "channel_def": {"0": "image, normalised as configs/asymseg.json data"},
    }
    pred = {
        "type": "image",
        "format": "logits",
        "num_channels": len(classes) + 1,
        **patch,
        "is_patch_data": True,
        "channel_def": {"0": "background"} | {str(k + 1): c for k, c in enumerate(classes)},
    }
    return {"inputs": {"image": image}, "outputs": {"pred": pred}}


def _readme(name: str, plan, classes) -> str:
    patch = ", ".join(str(p) for p in plan.patch_size)
    return f"""# {name}

A 3D segmentation model exported by napari-asymseg (classes: background, {", ".join(classes)}).
Input: one-channel float32 image `[B, 1, Z, Y, X]`, normalised as `configs/asymseg.json`
(`config.data`: z-score over the scan, or a CT window); output: logits `[B, C, Z, Y, X]`.
Any size divisible by the network's strides works; the training patch was ({patch}).

```python
# with napari-asymseg: predict a scan, or fine-tune further
#   asymseg predict case.zarr --model {name}
#   asymseg train case.zarr --init {name} --out finetuned

# plain torch (TorchScript), no plugin needed
import torch
net = torch.jit.load("{name}/models/model.ts")
logits = net(torch.zeros(1, 1, {patch}))

# onnxruntime
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("{name}/models/model.onnx")
(logits,) = session.run(None, {{"image": np.zeros((1, 1, {patch}), np.float32)}})

# MONAI: build the network from configs/inference.json, load the weights
from monai.bundle import ConfigParser
parser = ConfigParser()
parser.read_config("{name}/configs/inference.json")
net = parser.get_parsed_content("network_def")
net.load_state_dict(torch.load("{name}/models/model.pt", weights_only=True))
```
"""


# --------------------------------------------------------------------------------- loading
def load_bundle(path: str | os.PathLike) -> dict[str, Any]:
    """A bundle (folder or zip) as a checkpoint dictionary that the engine can use."""
    path = Path(path)
    if path.is_file():
        return _load_zip(path)
    weights = path / "models" / "model.pt"
    meta, info = _read_configs(path, weights)
    expected = (meta["asymseg"].get("files_sha256") or {}).get("models/model.pt")
    if expected and _sha256(weights) != expected:
        raise ScanError(
            f"the weights in {path} do not match their checksum: the bundle is damaged; "
            "copy or export it again"
        )
    state = read_checkpoint(weights, "the bundle is damaged; export it again")
    if not isinstance(state, dict):
        raise ScanError(f"{weights} holds no weights: the bundle is damaged; export it again")
    plain = ("classes", "spacing", "seed", "annotations_hash", "step", "best_dsc")
    return {
        "model": state,
        **{k: info[k] for k in ("config", "plan", "num_classes")},
        **{k: info.get(k) for k in plain},
        "history": info.get("history", []),
        "best_step": info.get("best_step", -1),
        "versions": info.get("versions", {}),
        "scan": info.get("trained_on"),
        "bundle": str(path),
    }


def _read_configs(path: Path, weights: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``metadata.json`` and ``asymseg.json`` of a complete bundle of a format this reads."""
    meta_file = path / "configs" / "metadata.json"
    info_file = path / "configs" / "asymseg.json"
    for f in (meta_file, info_file, weights):
        if not f.is_file():
            raise ScanError(
                f"{path} is not a complete asymseg bundle ({f.relative_to(path)} is missing): "
                "export it again with asymseg bundle"
            )
    try:
        meta = json.loads(meta_file.read_text())
        info = json.loads(info_file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScanError(f"the bundle {path} is damaged ({exc}): export it again") from None
    fmt = (meta.get("asymseg") or {}).get("bundle_format")
    if fmt is None:
        raise ScanError(
            f"{path} is a MONAI bundle but not one made by napari-asymseg: load its "
            "models/model.pt with MONAI instead"
        )
    if int(fmt) > BUNDLE_FORMAT:
        raise ScanError(
            f"{path} was made by a newer napari-asymseg (bundle format {fmt}, this version "
            f"reads {BUNDLE_FORMAT}): upgrade napari-asymseg"
        )
    return meta, info


def _load_zip(path: Path) -> dict[str, Any]:
    if not zipfile.is_zipfile(path):
        raise ScanError(f"{path} is not a zip file: pass a bundle folder or its .zip")
    with tempfile.TemporaryDirectory(prefix="asymseg-bundle-") as tmp:
        try:
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():  # refuse paths that climb out of the folder
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise ScanError(f"{path} holds an unsafe path {member!r}: not a bundle")
                zf.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ScanError(f"the bundle {path} is damaged ({exc}): export it again") from None
        roots = [p for p in Path(tmp).iterdir() if (p / "configs" / "metadata.json").is_file()]
        root = roots[0] if roots else Path(tmp)
        ckpt = load_bundle(root)
    ckpt["bundle"] = str(path)
    return ckpt
