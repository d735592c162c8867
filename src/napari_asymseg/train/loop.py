"""train.loop."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import time
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np
import torch

from napari_asymseg.config import Config, check_config, config_to_dict
from napari_asymseg.errors import ScanError, TrainingError
from napari_asymseg.evaluate.metrics import (
    foreground_margins,
)
from napari_asymseg.model.checkpoint import (
    BEST,
    CHECKPOINT,
    _plan_dict,
    _versions,
    model_from_checkpoint,
    save_atomic,
)
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.model.losses import build_loss
from napari_asymseg.model.networks import build_model, count_parameters, plan_network
from napari_asymseg.store.atomic import make_folder
from napari_asymseg.store.scan import Scan
from napari_asymseg.train import distributed
from napari_asymseg.train.data import PatchSampler, ScanData
from napari_asymseg.train.device import autocast_dtype, release, select_device
from napari_asymseg.train.events import EpochEnd, Finished, Notice, Started, StepEnd
from napari_asymseg.train.step import _make_step
from napari_asymseg.train.validate import _best_index, _history_row, _validate, _with_best


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
        from napari_asymseg.model.sam import SAM

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
