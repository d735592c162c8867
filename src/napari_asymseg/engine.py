"""The training and prediction engine: plain generators that yield typed events.

``fit`` and ``predict`` are generators. The CLI iterates them with a progress bar; the dock
hands them to napari's thread worker. Every ``yield`` is a cancel point: closing the generator
(``gen.close()``) stops the work at once, keeps the best model saved so far, and releases the
model's memory (GPU memory too).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import gc
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_asymseg import __version__, distributed
from napari_asymseg.config import Config, check_config, config_from_dict, config_to_dict
from napari_asymseg.data import IGNORE, PatchSampler, ScanData, intensity_stats, normalise
from napari_asymseg.losses import build_loss
from napari_asymseg.metrics import (
    class_scores,
    foreground_margins,
    histogram,
    logit_shift,
    mean_scores,
)
from napari_asymseg.models import NetworkPlan, build_model, count_parameters, plan_network
from napari_asymseg.risk import (
    KAPPA,
    SIGMA_MM,
    calibration_from_history,
    fit_calibration,
    foreground_margin,
    risk_map,
)
from napari_asymseg.sliding import SlidingWindow, chunk_ranges, smoothing_radius
from napari_asymseg.store import Scan, read
from napari_asymseg.volumes import ClearError, ScanError, is_zarr_folder, make_folder

CHECKPOINT = "checkpoint.pt"  # the latest state, for resuming
BEST = "best.pt"  # the best model by validation DSC, for predicting and fine-tuning


class TrainingError(ClearError, RuntimeError):
    """Training cannot go on (NaN loss, out of memory); the message says what to change."""


# ------------------------------------------------------------------------------------ events
@dataclass(frozen=True)
class Started:
    device: str
    amp: str
    parameters: int
    patch_size: tuple[int, int, int]
    steps: int
    start_step: int
    train_voxels: int
    val_voxels: int


@dataclass(frozen=True)
class StepEnd:
    step: int
    steps: int
    loss: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class EpochEnd:
    """A validation: one point on every curve."""

    step: int
    epoch: int
    train_loss: float
    val_loss: float
    dsc: float
    sensitivity: float
    precision: float
    fbeta: float
    logit_shift: float
    train_margin: float
    val_margin: float
    train_hist: list[int] = field(default_factory=list)
    val_hist: list[int] = field(default_factory=list)
    best: bool = False
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)
    preview: np.ndarray | None = field(default=None, compare=False, repr=False)
    """Foreground probability of the validated slab, for a live overlay."""
    preview_z0: int = 0
    calibration: dict[str, float] | None = None
    """Platt fit of P(foreground | margin) on the held-out voxels (for the risk map)."""


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the run (e.g. a memory fallback)."""

    message: str


@dataclass(frozen=True)
class Finished:
    model_dir: str
    best_step: int
    best_dsc: float
    steps_done: int
    stopped_early: bool
    seconds: float


@dataclass(frozen=True)
class WindowDone:
    done: int
    total: int


@dataclass(frozen=True)
class PredictionDone:
    scan: str
    seconds: float
    foreground_voxels: int


# ------------------------------------------------------------------------------------ device
def select_device(name: str = "auto") -> torch.device:
    """CUDA when present, then Apple MPS, then the CPU; or exactly what is asked."""
    if name != "auto":
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ScanError(f"device {name!r} asked for, but CUDA is not available: use cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None = full precision).

    ``auto`` uses bf16 on CUDA GPUs that support it (no loss scaling needed), else fp16; on
    the CPU it uses bf16 where the processor computes it natively (AVX512-BF16 or AMX; measured
    on 2 Zen 4 cores: training steps 2.5x faster than fp32, ``benchmarks/training_throughput.py``,
    whole-scan prediction 2.0x, ``benchmarks/prediction.py``, validation DSC unchanged,
    ``benchmarks/bf16_quality.py``), and full precision elsewhere, where emulated bf16 is slower
    than fp32.
    """
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    raise ScanError(f"unknown amp {amp!r}: use auto, off, bf16 or fp16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 instructions (x86 AVX512-BF16 or AMX-BF16; Linux flags).

    ``ASYMSEG_CPU_BF16=0`` or ``1`` overrides the detection.
    """
    forced = os.environ.get("ASYMSEG_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def release(device: torch.device) -> None:
    """Give the memory of dropped models back to the GPU driver (CUDA only).

    On the CPU, dropping the last reference frees the memory already; a full ``gc.collect()``
    would hold the GIL for hundreds of milliseconds and stall napari's event loop.
    """
    if device.type == "cuda":
        gc.collect()  # reference cycles can keep CUDA tensors alive
        torch.cuda.empty_cache()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c") if sys.platform == "linux" else None
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # another libc than glibc: nothing to do
        return None


def release_freed_memory() -> None:
    """Give the memory that freed slabs leave in glibc's heap back to the system (Linux).

    Prediction allocates and frees slabs of a few MiB again and again; glibc serves them from
    its heap and keeps what they leave resident. Trimming after each written piece keeps the
    process at what it holds (``benchmarks/prediction_memory.py``: the peak above the baseline
    on a 512³ scan falls from 530 MiB without it). It changes no allocator setting.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# ------------------------------------------------------------------------------------ checkpoints
def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a torn checkpoint."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file, the best model of a model folder, or a model bundle (folder or
    zip, :mod:`napari_asymseg.bundle`); clear errors if broken."""
    from napari_asymseg.bundle import is_bundle, load_bundle

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


# ------------------------------------------------------------------------------------ training
@contextlib.contextmanager
def _torch_settings(cfg: Config) -> Iterator[None]:
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _lr_at(step: int, steps: int, lr: float) -> float:
    """Short linear warm-up, then cosine decay to 5% of the peak."""
    warm = max(1, min(20, steps // 10))
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def fit(
    scan: Scan | str | os.PathLike,
    config: Config | None = None,
    model_dir: str | os.PathLike = "asymseg-model",
    *,
    init: str | os.PathLike | None = None,
    resume: bool = False,
) -> Generator[Started | StepEnd | EpochEnd | Notice | Finished, None, Finished]:
    """Train from scratch, fine-tune (``init``) or resume (``resume``) on a scan's annotations.

    Parameters
    ----------
    scan
        The scan (or its path); its annotations are the training data.
    config
        The run's configuration (defaults otherwise). Fine-tuning keeps the network of ``init``.
    model_dir
        Folder for ``checkpoint.pt`` (latest, to resume) and ``best.pt`` (best validation DSC).
    init
        A checkpoint or model folder to start from (fine-tuning, warm start).
    resume
        Continue from ``model_dir/checkpoint.pt`` when it belongs to the same annotations.

    Yields
    ------
    Started, then StepEnd per step and EpochEnd per validation, then Finished; a Notice when
    the run had to change course (out of GPU memory: a smaller batch, then the CPU).

    Under ``torchrun`` with several processes (:mod:`napari_asymseg.distributed`) every rank
    trains a DistributedDataParallel copy on its own patches (``batch_size`` per rank), all
    ranks validate and take the same decisions, and only rank 0 writes the model folder.
    """
    device_name = config.train.device if config is not None else "auto"
    with distributed.session(device_name) as world:
        return (yield from _fit(scan, config, model_dir, init=init, resume=resume, world=world))


def _fit(
    scan: Scan | str | os.PathLike,
    config: Config | None,
    model_dir: str | os.PathLike,
    *,
    init: str | os.PathLike | None,
    resume: bool,
    world: distributed.Group | None,
) -> Generator[Started | StepEnd | EpochEnd | Notice | Finished, None, Finished]:
    """:func:`fit` in this process; ``world`` is the torchrun process group (or None)."""
    scan = scan if isinstance(scan, Scan) else Scan.open(scan)
    cfg = copy.deepcopy(config) if config is not None else Config()  # never the caller's
    check_config(cfg)
    device = world.device if world is not None else select_device(cfg.train.device)
    amp_dtype = autocast_dtype(device, cfg.train.amp)
    torch.manual_seed(cfg.train.seed)
    data = ScanData.from_scan(scan, cfg.data, seed=cfg.train.seed)
    start = load_checkpoint(init) if init else None
    out = make_folder(model_dir)  # only once the inputs are known to be good
    if start is not None:  # fine-tuning keeps the architecture it starts from
        model, base_cfg, plan = model_from_checkpoint(start)
        if int(start["num_classes"]) != data.num_classes:
            raise ScanError(
                f"the model predicts {int(start['num_classes']) - 1} class(es), the scan has "
                f"{data.num_classes - 1}: train a new model instead of fine-tuning"
            )
        cfg.model = base_cfg.model
    else:
        max_voxels = 64**3 if device.type == "cuda" else 2**16
        plan = plan_network(
            data.spacing,
            data.image.shape,
            len(cfg.model.filters),
            cfg.data.patch_size,
            max_voxels=max_voxels,
        )
        model = build_model(cfg.model, plan, out_channels=data.num_classes)
    model.to(device)
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    if cfg.regularizers.sam != "off":
        from napari_asymseg.regularizers import SAM

        optimizer = SAM(None, optimizer, rho=cfg.regularizers.sam_rho)
    history: list[dict[str, Any]] = []
    step, best_dsc, best_step = 0, -1.0, -1
    last = out / CHECKPOINT
    if resume and last.is_file():
        ckpt = load_checkpoint(last)
        if ckpt.get("annotations_hash") != data.annotations_hash:
            raise ScanError(
                f"{last} was trained on other annotations: start a new run (without --resume) "
                "or fine-tune from it with --init"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, best_dsc, best_step = ckpt["step"], ckpt["best_dsc"], ckpt["best_step"]
        history = ckpt["history"]

    # under torchrun: every rank holds the same state here (same seed, init or checkpoint);
    # DDP's constructor makes sure of it, then each rank draws its own patches and noise
    rank, writes = (world.rank, world.is_main) if world is not None else (0, True)
    net = world.wrap(model) if world is not None else model  # trains; `model` validates
    if world is not None:
        torch.manual_seed(cfg.train.seed + rank)
    sampler = PatchSampler(data, plan.patch_size, cfg.data, seed=cfg.train.seed + step + rank)
    loss_fn = build_loss(cfg.loss.name, **cfg.loss.params)
    step_fn = _make_step(net, optimizer, loss_fn, cfg, data.num_classes, device, amp_dtype)
    meta = {
        "config": config_to_dict(cfg),
        "plan": _plan_dict(plan),
        "num_classes": data.num_classes,
        "classes": list(scan.classes),
        "spacing": list(data.spacing),
        "annotations_hash": data.annotations_hash,
        "seed": cfg.train.seed,
        "versions": _versions(),
        "scan": str(scan.path),
    }
    t0 = time.perf_counter()
    yield Started(
        device=str(device),
        amp=str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
        parameters=count_parameters(model),
        patch_size=plan.patch_size,
        steps=cfg.train.steps,
        start_step=step,
        train_voxels=int((data.train >= 0).sum()),
        val_voxels=int((data.val >= 0).sum()) if data.val is not None else 0,
    )
    stopped_early = False
    try:
        with _torch_settings(cfg):
            train_losses: list[float] = []
            train_margins: list[np.ndarray] = []
            if start is not None and step == 0 and data.val is not None:
                # a fine-tune is never worse than where it started: score the starting model
                # first; it stays best.pt until a validation beats it
                event = _validate(model, data, plan, cfg, device, amp_dtype, loss_fn, 0, 0, [], [])
                if world is not None:
                    event = dataclasses.replace(event, dsc=world.agree(model, event.dsc))
                best_dsc = event.dsc if math.isfinite(event.dsc) else -1.0
                best_step = 0
                event = _with_best(event)
                history.append(_history_row(event))
                if writes:  # rank 0 only under torchrun
                    save_atomic(
                        {
                            **meta,
                            "model": model.state_dict(),
                            "step": 0,
                            "best_dsc": best_dsc,
                            "best_step": 0,
                            "history": history,
                        },
                        out / BEST,
                    )
                yield event
            while step < cfg.train.steps:
                ts = time.perf_counter()
                lr = _lr_at(step, cfg.train.steps, cfg.train.lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y = sampler.sample(cfg.train.batch_size)
                try:
                    loss, logits = step_fn(x.to(device), y.to(device))
                except torch.cuda.OutOfMemoryError:
                    if world is not None:  # the ranks must stay in step: stop (TrainingError)
                        raise
                    # fall back instead of failing: a smaller batch, then the CPU
                    del x, y
                    notice = _fall_back(cfg, device, model, optimizer)
                    device = select_device(cfg.train.device)
                    amp_dtype = autocast_dtype(device, cfg.train.amp)
                    step_fn = _make_step(
                        model, optimizer, loss_fn, cfg, data.num_classes, device, amp_dtype
                    )
                    yield notice
                    continue
                if world is not None:  # the mean over the ranks: a NaN stops every rank
                    loss = world.mean(loss)
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"the loss became {loss} at step {step + 1}: lower the learning rate "
                        f"(now {cfg.train.lr:g}) or choose another loss; the best model so far "
                        f"is kept in {out / BEST}"
                    )
                step += 1
                train_losses.append(loss)
                train_margins.append(foreground_margins(logits, y.to(device), limit=2000))
                yield StepEnd(step, cfg.train.steps, loss, lr, time.perf_counter() - ts)
                if step % cfg.train.val_every and step < cfg.train.steps:
                    continue
                event = _validate(
                    model,
                    data,
                    plan,
                    cfg,
                    device,
                    amp_dtype,
                    loss_fn,
                    step,
                    len(history) + 1,
                    train_losses,
                    train_margins,
                )
                if world is not None:  # the same decisions on every rank
                    event = dataclasses.replace(event, dsc=world.agree(model, event.dsc))
                train_losses, train_margins = [], []
                # without held-out slices there is no score: the latest model is the best
                improved = event.dsc > best_dsc or math.isnan(event.dsc)
                if improved:
                    best_dsc, best_step = event.dsc, step
                    event = _with_best(event)
                history.append(_history_row(event))
                state = {
                    **meta,
                    "model": model.state_dict(),
                    "step": step,
                    "best_dsc": best_dsc,
                    "best_step": best_step,
                    "history": history,
                }
                if improved and writes:
                    save_atomic(state, out / BEST)
                if writes:
                    save_atomic({**state, "optimizer": optimizer.state_dict()}, last)
                yield event
                patience = cfg.train.patience
                if patience and len(history) - 1 - _best_index(history) >= patience:
                    stopped_early = True
                    break
    except torch.cuda.OutOfMemoryError:
        raise TrainingError(
            f"the GPU ran out of memory: lower the batch size (now {cfg.train.batch_size}) or "
            "the patch size, or train on the CPU (device cpu)"
        ) from None
    finally:
        del model, net, optimizer, step_fn
        release(device)
    if world is not None:  # the others wait until rank 0 has written the last checkpoint
        world.barrier()
    done = Finished(str(out), best_step, best_dsc, step, stopped_early, time.perf_counter() - t0)
    yield done
    return done


def _fall_back(cfg: Config, device: torch.device, model, optimizer) -> Notice:
    """After running out of GPU memory in a step: halve the batch, or at batch 1 move the run
    to the CPU (``cfg`` is changed in place); :class:`TrainingError` when neither is left."""
    release(device)
    batch = cfg.train.batch_size
    if batch > 1:
        cfg.train.batch_size = batch // 2
        return Notice(
            f"the GPU ran out of memory at batch {batch}: continuing with batch "
            f"{cfg.train.batch_size} (a smaller patch would keep the batch)"
        )
    if device.type != "cpu":
        cfg.train.device = "cpu"
        model.to("cpu")
        for opt in (optimizer, getattr(optimizer, "base_optimizer", None)):
            for state in opt.state.values() if opt is not None else ():
                for key, value in state.items():
                    if isinstance(value, torch.Tensor):
                        state[key] = value.to("cpu")
        return Notice(
            "the GPU ran out of memory even at batch 1: continuing on the CPU (slower); "
            "a smaller patch would fit the GPU"
        )
    raise TrainingError(
        "out of memory at batch 1 on the CPU: choose a smaller patch size or close other programs"
    )


def _with_best(event: EpochEnd) -> EpochEnd:
    return dataclasses.replace(event, best=True)


def _best_index(history: list[dict[str, Any]]) -> int:
    dscs = [h["dsc"] if not math.isnan(h["dsc"]) else -1 for h in history]
    return int(np.argmax(dscs))


def _history_row(event: EpochEnd) -> dict[str, Any]:
    keys = (
        "step",
        "epoch",
        "train_loss",
        "val_loss",
        "dsc",
        "sensitivity",
        "precision",
        "fbeta",
        "logit_shift",
        "train_margin",
        "val_margin",
        "best",
        "calibration",
    )
    return {k: getattr(event, k) for k in keys}


def _plan_dict(plan: NetworkPlan) -> dict[str, Any]:
    return {
        "patch_size": list(plan.patch_size),
        "kernels": [list(k) for k in plan.kernels],
        "strides": [list(s) for s in plan.strides],
    }


def _make_step(model, optimizer, loss_fn, cfg: Config, num_classes: int, device, amp_dtype):
    """One optimisation step with the configured regularisers; returns (loss, logits)."""
    from napari_asymseg import regularizers as reg

    rc = cfg.regularizers
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    sam = rc.sam != "off"

    def _smoothed(y: torch.Tensor) -> torch.Tensor:
        if not rc.label_smoothing:
            return y
        eps = list(rc.label_smoothing)
        return reg.smooth_labels(y, num_classes, eps if len(eps) > 1 else eps[0])

    def total_loss(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = _smoothed(y)
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(x).float()  # the loss in fp32 under autocast
            loss = loss_fn(logits, target)
            if rc.adversarial:
                r = reg.adversarial_perturbation(
                    model, x, y, eps=rc.adversarial_eps, asymmetric=rc.adversarial_asymmetric
                )
                loss = loss + loss_fn(model(x + r).float(), target)
            if rc.mixup:
                xb, yb = reg.mixup_partner(x, y)
                lam = reg.sample_lambda(rc.mixup_alpha)
                xm, ym = reg.mixup(
                    x,
                    y,
                    xb,
                    yb,
                    lam,
                    margin=rc.mixup_margin,
                    asymmetric=rc.mixup_asymmetric,
                    num_classes=num_classes,
                )
                loss = loss + loss_fn(model(xm).float(), ym)
        return loss, logits

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        model.train()
        if sam:
            # SAM perturbs the weights around the plain loss; the other regularisers are
            # terms of their own and are not combined with it
            seen: list[torch.Tensor] = []
            target = _smoothed(y)

            def plain(logits: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
                seen.append(logits.detach())
                return loss_fn(logits, target)

            loss = reg.sam_step(model, optimizer, x, y, plain, adaptive_weights=rc.sam == "sam_a")
            return float(loss), seen[0]
        optimizer.zero_grad(set_to_none=True)
        loss, logits = total_loss(x, y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return float(loss.detach()), logits.detach()

    return step


def _validate(
    model,
    data: ScanData,
    plan: NetworkPlan,
    cfg: Config,
    device,
    amp_dtype,
    loss_fn,
    step: int,
    epoch: int,
    train_losses: list[float],
    train_margins: list[np.ndarray],
) -> EpochEnd:
    """Predict the slab around the held-out slices and score the held-out voxels."""
    tm = np.concatenate(train_margins) if train_margins else np.zeros(0, np.float32)
    train_loss = float(np.mean(train_losses)) if train_losses else float("nan")
    nan = float("nan")
    if data.val is None:
        return EpochEnd(
            step,
            epoch,
            train_loss,
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            float(tm.mean()) if tm.size else nan,
            nan,
            histogram(tm),
            [],
        )
    zs = np.flatnonzero((data.val >= 0).any(axis=(1, 2)))
    half = plan.patch_size[0] // 2
    z0, z1 = max(0, int(zs[0]) - half), min(data.image.shape[0], int(zs[-1]) + half + 1)
    logits = sliding_logits(model, data.image[z0:z1], plan, cfg, device, amp_dtype)
    target = torch.from_numpy(data.val[z0:z1].astype(np.int64))[None]
    with torch.no_grad():
        val_loss = float(loss_fn(logits, target))
    pred = logits.argmax(1)
    scores = class_scores(pred, target, data.num_classes)
    mean = mean_scores(scores)
    vm = foreground_margins(logits, target)
    prob = 1 - torch.softmax(logits, 1)[0, 0]
    annotated = target[0] >= 0
    fit = fit_calibration(
        foreground_margin(logits[0], 0)[annotated].numpy(), (target[0] >= 1)[annotated].numpy()
    )
    return EpochEnd(
        step=step,
        epoch=epoch,
        train_loss=train_loss,
        val_loss=val_loss,
        dsc=mean["dsc"],
        sensitivity=mean["sensitivity"],
        precision=mean["precision"],
        fbeta=mean["fbeta"],
        logit_shift=logit_shift(tm, vm),
        train_margin=float(tm.mean()) if tm.size else nan,
        val_margin=float(vm.mean()) if vm.size else nan,
        train_hist=histogram(tm),
        val_hist=histogram(vm),
        per_class={
            c: {"dsc": s.dsc, "sensitivity": s.sensitivity, "precision": s.precision}
            for c, s in scores.items()
        },
        preview=prob.numpy().astype(np.float16),
        preview_z0=z0,
        calibration={"scale": fit.scale, "bias": fit.bias} if fit else None,
    )


def sliding_logits(
    model,
    image: np.ndarray,
    plan: NetworkPlan,
    cfg: Config,
    device,
    amp_dtype,
    *,
    spread: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits ``[1, C, *image.shape]`` (float32, on the CPU) by MONAI's sliding window.

    With test-time flips and a ``spread`` list, the standard deviation over the flips of the
    foreground margin (``[*image.shape]``) is appended to it, for the risk map.
    """
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(device)
    pad = [max(0, p - n) for p, n in zip(plan.patch_size, image.shape, strict=True)]
    model.eval()
    flips: list[tuple[int, ...]] = [()] + ([(3,), (4,), (3, 4)] if cfg.predict.tta else [])
    total = None
    m_sum: torch.Tensor | None = None
    m_sq: torch.Tensor | None = None
    with (
        torch.no_grad(),
        torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ),
    ):
        for dims in flips:
            xi = torch.flip(x, dims) if dims else x
            out = sliding_window_inference(
                xi,
                roi_size=plan.patch_size,
                sw_batch_size=cfg.predict.sw_batch_size,
                predictor=model,
                overlap=cfg.predict.overlap,
                mode="gaussian",
                padding_mode="replicate" if any(pad) else "constant",
            )
            assert isinstance(out, torch.Tensor)  # the model returns one tensor
            out = torch.flip(out, dims) if dims else out
            total = out.float() if total is None else total + out.float()
            if spread is not None and len(flips) > 1:
                m = foreground_margin(out[0], 0).cpu()
                m_sum = m if m_sum is None else m_sum + m
                m_sq = m * m if m_sq is None else m_sq + m * m
    assert total is not None
    if m_sum is not None and m_sq is not None and spread is not None:
        n = len(flips)
        spread.append(((m_sq / n - (m_sum / n) ** 2).clamp(min=0) * n / (n - 1)).sqrt())
    return (total / len(flips)).cpu()


# ------------------------------------------------------------------------------------ prediction
RESULT_DTYPES = {"prediction": np.uint8, "probability": np.float16, "risk": np.float16}


@dataclass
class Predictor:
    """A model ready to predict one scan: the network, its window stream and the risk's
    calibration. The single-process :func:`predict` and the dask path
    (:mod:`napari_asymseg.scaleout`) compute every slice with :meth:`results`."""

    window: SlidingWindow
    cfg: Config
    stats: tuple[float, float]
    calibration: Any
    spacing: tuple[float, float, float]

    @classmethod
    def load(
        cls,
        ckpt: dict[str, Any],
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
        stats: tuple[float, float],
        config: Config | None = None,
    ) -> Predictor:
        net, train_cfg, plan = model_from_checkpoint(ckpt)
        cfg = config or train_cfg
        check_config(cfg)
        device = select_device(cfg.train.device)
        net.to(device).eval()
        window = SlidingWindow(
            net,
            plan.patch_size,
            shape,
            int(ckpt["num_classes"]),
            overlap=cfg.predict.overlap,
            batch=cfg.predict.sw_batch_size,
            device=device,
            amp_dtype=autocast_dtype(device, cfg.train.amp),
            flips=cfg.predict.tta,
        )
        calibration = calibration_from_history(ckpt.get("history", []), ckpt.get("best_step", -1))
        return cls(window, cfg, stats, calibration, spacing)

    @classmethod
    def for_scan(
        cls, scan: Scan, model: str | os.PathLike, config: Config | None = None
    ) -> Predictor:
        """The predictor of a model (folder, checkpoint or bundle) for ``scan``; a clear
        error when the model was trained for other classes."""
        ckpt = load_checkpoint(model)
        num_classes = int(ckpt["num_classes"])
        if num_classes != scan.num_classes:
            raise ScanError(
                f"the model predicts {num_classes - 1} class(es) but {scan.path.name} has "
                f"{scan.num_classes - 1}: use a model trained for these classes"
            )
        stats = intensity_stats(scan.image)
        return cls.load(ckpt, scan.shape, scan.spacing, stats, config)

    @property
    def radius(self) -> int:
        """Slices on each side that the risk map's smoothing needs."""
        return smoothing_radius(SIGMA_MM, self.spacing[0])

    def results(
        self,
        read_image: Callable[[int, int], np.ndarray],
        read_annotations: Callable[[int, int], np.ndarray],
        z0: int,
        z1: int,
        step: int,
    ) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
        """Prediction, foreground probability and risk of slices ``z0:z1``, in pieces cut at
        the multiples of ``step`` (the results' chunk depth: each piece fills whole chunks).

        ``read_image(a, b)`` gives raw image slices, ``read_annotations(a, b)`` annotations.
        The window rows and the risk's smoothing see exactly the slices they would see on the
        whole volume, so pieces computed apart equal one run over the scan.
        """
        depth, r = self.window.shape[0], self.radius
        c0, c1 = max(0, z0 - r), min(depth, z1 + r)
        data = self.cfg.data

        def read(a: int, b: int) -> np.ndarray:
            return normalise(read_image(a, b), data, stats=self.stats)

        _, ny, nx = self.window.shape
        held = _Held(2 * r + step + self.window.patch[0] + 1, (ny, nx), c0)
        pieces = chunk_ranges(z0, z1, step)
        e0, e1 = next(pieces)
        for slab in self.window.stream(read, c0, c1):
            held.add(slab.scores)
            while e1 > 0 and slab.z1 >= min(depth, e1 + r):
                a, b = max(0, e0 - r), min(depth, e1 + r)
                keep = slice(e0 - a, e1 - a)
                margin, labels = _margin_labels(held.get(a, b))
                risk = self._risk(margin, labels, read_annotations(a, b), keep)
                yield (
                    e0,
                    e1,
                    {
                        "prediction": labels[keep],
                        "probability": _probability(held.get(e0, e1)),
                        "risk": risk,
                    },
                )
                del margin, labels
                held.drop_below(e1 - r)  # what no later piece's smoothing reads
                e0, e1 = next(pieces, (0, 0))

    def _risk(
        self, margin: np.ndarray, labels: np.ndarray, annotations: np.ndarray, keep: slice
    ) -> np.ndarray:
        """The risk map of the slices ``keep`` of a block, in bands of rows (each with the
        smoothing's context: the same numbers as the whole plane, a fraction of the memory)."""
        # no flip spread: its weight KAPPA is 0 (it only lowered the AUPRC, risk_quality.py)
        assert KAPPA == 0, "the streamed prediction does not compute the flip spread"
        _, ny, nx = margin.shape
        ry = smoothing_radius(SIGMA_MM, self.spacing[1])
        out = np.empty((keep.stop - keep.start, ny, nx), np.float16)
        for y0 in range(0, ny, RISK_BAND):
            y1 = min(ny, y0 + RISK_BAND)
            a, b = max(0, y0 - ry), min(ny, y1 + ry)
            band = risk_map(
                margin[:, a:b],
                labels[:, a:b],
                self.calibration,
                annotations=annotations[:, a:b],
                spacing=self.spacing,
            )
            out[:, y0:y1] = band[keep, y0 - a : y1 - a]
        return out


RISK_BAND = 128
"""Rows per band of the risk map's computation."""


class _Held:
    """Blended scores of finished slices that the risk map's smoothing still reads:
    preallocated and shifted in place as the pieces move on (one channel for two classes)."""

    def __init__(self, capacity: int, plane: tuple[int, int], z0: int) -> None:
        self.capacity, self.plane = capacity, plane
        self.scores: np.ndarray | None = None  # [C', capacity, Y, X], made by the first add
        self.z0, self.n = z0, 0  # scores[:, :n] hold slices z0:z0+n

    def add(self, scores: torch.Tensor) -> None:
        k = scores.shape[1]
        if self.scores is None:
            self.scores = np.empty((scores.shape[0], self.capacity, *self.plane), np.float32)
        if self.n + k > self.scores.shape[1]:  # never with the planned capacity; stay correct
            self.scores = np.concatenate([self.scores[:, : self.n], scores.numpy()], axis=1)
        else:
            self.scores[:, self.n : self.n + k] = scores.numpy()
        self.n += k

    def get(self, a: int, b: int) -> torch.Tensor:
        assert self.scores is not None and self.z0 <= a <= b <= self.z0 + self.n
        return torch.from_numpy(self.scores[:, a - self.z0 : b - self.z0])

    def drop_below(self, z: int) -> None:
        d = min(self.n, max(0, z - self.z0))
        if d and self.scores is not None:
            for i in range(0, self.n - d, d):  # blocks of d never overlap: no temporary copy
                j = min(i + d, self.n - d)
                self.scores[:, i:j] = self.scores[:, i + d : j + d]
            self.z0, self.n = self.z0 + d, self.n - d


def _margin_labels(scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Foreground margin (float32) and labels (uint8) of blended scores (the margin itself
    for two classes, else the logits)."""
    if scores.shape[0] == 1:
        margin = scores[0]
        return margin.numpy(), (margin > 0).numpy().astype(np.uint8)
    return foreground_margin(scores, 0).numpy(), scores.argmax(0).numpy().astype(np.uint8)


def _probability(scores: torch.Tensor) -> np.ndarray:
    """Foreground probability (float16) of blended scores."""
    if scores.shape[0] == 1:
        return torch.sigmoid(scores[0]).numpy().astype(np.float16)
    return (1 - torch.softmax(scores, 0)[0]).numpy().astype(np.float16)


def predict(
    scan: Scan | str | os.PathLike,
    model: str | os.PathLike,
    *,
    config: Config | None = None,
) -> Generator[WindowDone | PredictionDone, None, PredictionDone]:
    """Predict a scan with a streamed sliding window and write the results into its store.

    Memory is bounded by one window's depth of slices, not the volume
    (:class:`~napari_asymseg.sliding.SlidingWindow`): the image is read from zarr as the
    windows reach it, and each run of finished slices is written to ``results/prediction``
    (uint8), ``results/probability`` (float16) and ``results/risk`` (float16, the
    false-negative heatmap of :mod:`napari_asymseg.risk`). The results replace the old ones
    only when every slice is done; a cancel leaves the old ones.
    """
    scan = scan if isinstance(scan, Scan) else Scan.open(scan)
    predictor = Predictor.for_scan(scan, model, config)
    device = predictor.window.device
    depth = scan.shape[0]
    t0 = time.perf_counter()
    fg_voxels = 0
    try:
        with scan.writing_results(RESULT_DTYPES) as out:
            step = out["prediction"].chunks[0]
            pieces = predictor.results(
                lambda a, b: read(scan.image, slice(a, b)),
                lambda a, b: read(scan.annotations, slice(a, b)),
                0,
                depth,
                step,
            )
            for z0, z1, res in pieces:
                for name, values in res.items():
                    out[name][z0:z1] = values
                fg_voxels += int((res["prediction"] > 0).sum())
                del res
                release_freed_memory()
                yield WindowDone(z1, depth)
    finally:
        del predictor
        release(device)
    done = PredictionDone(str(scan.path), time.perf_counter() - t0, fg_voxels)
    yield done
    return done


__all__ = [
    "BEST",
    "CHECKPOINT",
    "IGNORE",
    "EpochEnd",
    "Finished",
    "PredictionDone",
    "Started",
    "StepEnd",
    "TrainingError",
    "WindowDone",
    "fit",
    "load_checkpoint",
    "Predictor",
    "predict",
    "select_device",
]
