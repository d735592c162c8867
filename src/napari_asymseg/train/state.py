"""The state of one training run (:class:`Run`), how a run is set up (:func:`prepare`:
data, network, optimizer, resume) and the one dict that every checkpoint of it holds
(:func:`checkpoint_state`)."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_asymseg.config import Config, check_config, config_to_dict
from napari_asymseg.errors import ScanError
from napari_asymseg.model.checkpoint import (
    BEST,
    CHECKPOINT,
    model_from_checkpoint,
    plan_dict,
    versions,
)
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.model.losses import build_loss
from napari_asymseg.model.networks import NetworkPlan, build_model, plan_network
from napari_asymseg.store.atomic import make_folder
from napari_asymseg.store.scan import Scan
from napari_asymseg.train import distributed, runs
from napari_asymseg.train.data import PatchSampler, ScanData
from napari_asymseg.train.device import autocast_dtype, memory_format, select_device
from napari_asymseg.train.plan import CANDIDATES, plan_voxels
from napari_asymseg.train.step import _make_step
from napari_asymseg.train.study_data import StudyData, StudySampler

StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[float, torch.Tensor]]


@dataclass
class Run:
    """Everything one training run holds, handed from step to step."""

    cfg: Config  # the run's own copy: an out-of-memory fallback changes it
    data: ScanData | StudyData
    plan: NetworkPlan
    model: torch.nn.Module  # validates and is saved
    net: torch.nn.Module  # trains: ``model``, or its DistributedDataParallel copy (torchrun)
    optimizer: torch.optim.Optimizer
    loss_fn: torch.nn.Module
    sampler: PatchSampler
    device: torch.device
    amp_dtype: torch.dtype | None
    out: Path
    meta: dict[str, Any]  # what every checkpoint says about the run
    world: distributed.Group | None
    fine_tune: bool
    step: int = 0
    best_dsc: float = -1.0
    best_step: int = -1
    baseline_dsc: float = float("nan")  # the model current at the start, on our held-out slices
    history: list[dict[str, Any]] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)  # since the last validation
    train_margins: list[np.ndarray] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)
    step_fn: StepFn = field(init=False)
    layout: torch.memory_format = field(init=False)  # of the patches (train/device.py)

    def __post_init__(self) -> None:
        self.new_step()

    def new_step(self) -> None:
        """The optimisation step (and the patches' layout) for the current device, precision
        and batch."""
        self.layout = memory_format(self.device, self.amp_dtype)
        self.step_fn = _make_step(
            self.net,
            self.optimizer,
            self.loss_fn,
            self.cfg,
            self.data.num_classes,
            self.device,
            self.amp_dtype,
        )

    @property
    def writes(self) -> bool:
        """Only rank 0 writes the model folder under torchrun."""
        return self.world is None or self.world.is_main


def prepare(
    scan: Scan | str | os.PathLike,
    config: Config | None,
    model_dir: str | os.PathLike,
    *,
    init: str | os.PathLike | None,
    resume: bool,
    world: distributed.Group | None,
    annotations: np.ndarray | None = None,
    overwrite: bool = False,
    study: StudyData | None = None,
) -> Run:
    """Set up a run: data (``study``: several scans, prepared; ``scan`` is then its first),
    the network (new, or the one of ``init``), optimizer, resume."""
    scan = scan if isinstance(scan, Scan) else Scan.open(scan)
    cfg = copy.deepcopy(config) if config is not None else Config()  # never the caller's
    check_config(cfg)
    device = world.device if world is not None else select_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    data: ScanData | StudyData = study or ScanData.from_scan(
        scan, cfg.data, seed=cfg.train.seed, annotations=annotations
    )
    start = load_checkpoint(init) if init else None
    out = model_folder(model_dir, resume=resume, overwrite=overwrite, world=world)  # inputs good
    amp_dtype = autocast_dtype(device, cfg.train.amp)
    if resume:  # the steps and the patch the run planned, not a new plan
        _restore_plan(cfg, out / CHECKPOINT)
    if start is None and not cfg.data.patch_voxels and cfg.data.patch_size is None:
        _plan_patch(cfg, data, device, amp_dtype, world)
    model, plan = network_for(start, cfg, data, device)
    model.to(device)
    layout = memory_format(device, amp_dtype)
    if layout != torch.contiguous_format:  # Module.to's memory_format is untyped in torch
        model.to(memory_format=layout)  # type: ignore[call-overload]
    optimizer = _optimizer(model, cfg)
    resumed = _resumed(out / CHECKPOINT, data, model, optimizer) if resume else {}
    # under torchrun: every rank holds the same state here (same seed, init or checkpoint);
    # DDP's constructor makes sure of it, then each rank draws its own patches and noise
    rank = world.rank if world is not None else 0
    net = world.wrap(model) if world is not None else model
    if world is not None:
        torch.manual_seed(cfg.train.seed + rank)
    seed = cfg.train.seed + resumed.get("step", 0) + rank
    return Run(
        cfg=cfg,
        data=data,
        plan=plan,
        model=model,
        net=net,
        optimizer=optimizer,
        loss_fn=build_loss(cfg.loss.name, **cfg.loss.params),
        sampler=_sampler(data, plan, cfg, seed),
        device=device,
        amp_dtype=amp_dtype,
        out=out,
        meta=_meta(scan, cfg, plan, data, init),
        world=world,
        fine_tune=start is not None,
        **resumed,
    )


def _plan_patch(
    cfg: Config,
    data: ScanData | StudyData,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    world: distributed.Group | None,
) -> None:
    """The patch planned for this device; the run's config (and checkpoints) say what was
    chosen. Under torchrun every rank must train the same patch: the smallest of the ranks'."""
    voxels = plan_voxels(cfg, data.spacing, data.shape, device, amp_dtype is not None)
    cfg.data.patch_voxels = _smallest(world, voxels) if world is not None else voxels


def _sampler(data: ScanData | StudyData, plan: NetworkPlan, cfg: Config, seed: int) -> PatchSampler:
    if isinstance(data, StudyData):
        return StudySampler(data, plan.patch_size, cfg.data, seed=seed)
    return PatchSampler(data, plan.patch_size, cfg.data, seed=seed)


def model_folder(
    model_dir: str | os.PathLike,
    *,
    resume: bool,
    overwrite: bool,
    world: distributed.Group | None = None,
) -> Path:
    """The run's folder, made. One that holds a model is the run's to continue (``resume``)
    or, when the user said so (``overwrite``), emptied of the earlier run's files; otherwise
    refused: training never replaces a model unasked."""
    out = Path(model_dir)
    held = [name for name in (BEST, CHECKPOINT) if (out / name).is_file()]
    if held and not resume:
        if not overwrite:
            raise ScanError(
                f"{out} already holds a model ({held[0]}): train into another folder (--out), "
                "continue it (--resume) or replace it (--overwrite)"
            )
        if world is None or world.is_main:  # under torchrun rank 0 writes the folder
            for name in (BEST, CHECKPOINT, runs.SUMMARY, runs.QUALITY, runs.QUALITY_CV):
                (out / name).unlink(missing_ok=True)
    return make_folder(out)


def network_for(
    start: dict[str, Any] | None, cfg: Config, data: ScanData | StudyData, device: torch.device
) -> tuple[torch.nn.Module, NetworkPlan]:
    """The network of the starting checkpoint (``cfg.model`` becomes its), else a new one."""
    if start is None:
        plan = plan_network(
            data.spacing,
            data.shape,
            len(cfg.model.filters),
            cfg.data.patch_size,
            max_voxels=cfg.data.patch_voxels or CANDIDATES[-1],
        )
        return build_model(cfg.model, plan, out_channels=data.num_classes), plan
    model, base_cfg, plan = model_from_checkpoint(start)  # fine-tuning keeps its architecture
    if int(start["num_classes"]) != data.num_classes:
        raise ScanError(
            f"the model predicts {int(start['num_classes']) - 1} class(es), the scan has "
            f"{data.num_classes - 1}: train a new model instead of fine-tuning"
        )
    cfg.model = base_cfg.model
    return model, plan


def _smallest(world: distributed.Group, voxels: int) -> int:
    """The smallest of the ranks' planned ``voxels`` (the candidate furthest down the list)."""
    return CANDIDATES[round(world.most(CANDIDATES.index(voxels)))]


def _restore_plan(cfg: Config, checkpoint: Path) -> None:
    """What a resumed run planned (its steps, its patch voxels), from its checkpoint, where
    ``cfg`` leaves them to a plan."""
    if not checkpoint.is_file():
        return
    saved = load_checkpoint(checkpoint)["config"]
    if not cfg.data.patch_voxels:
        cfg.data.patch_voxels = int(saved.get("data", {}).get("patch_voxels", 0))
    if not cfg.train.steps and saved["train"].get("steps"):  # 0 there: killed before its plan
        cfg.train.steps, cfg.train.val_every = saved["train"]["steps"], saved["train"]["val_every"]


def _optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    if cfg.regularizers.sam != "off":
        from napari_asymseg.model.sam import SAM

        optimizer = SAM(None, optimizer, rho=cfg.regularizers.sam_rho)
    return optimizer


def _resumed(
    last: Path, data: ScanData | StudyData, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Load ``checkpoint.pt`` into the model and optimizer; the run's counters from it."""
    if not last.is_file():
        return {}
    ckpt = load_checkpoint(last)
    if ckpt.get("annotations_hash") != data.annotations_hash:
        raise ScanError(
            f"{last} was trained on other annotations: start a new run (without --resume) "
            "or fine-tune from it with --init"
        )
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return {k: ckpt[k] for k in ("step", "best_dsc", "best_step", "history")}


def _meta(
    scan: Scan,
    cfg: Config,
    plan: NetworkPlan,
    data: ScanData | StudyData,
    init: str | os.PathLike | None,
) -> dict[str, Any]:
    learned = (
        data.learned_from()
        if isinstance(data, StudyData)
        else [{"scan": str(scan.path), "annotations_hash": data.annotations_hash}]
    )
    return {
        "init": str(init) if init is not None else None,
        "config": config_to_dict(cfg),
        "plan": plan_dict(plan),
        "num_classes": data.num_classes,
        "classes": list(scan.classes),
        "spacing": list(data.spacing),
        "annotations_hash": data.annotations_hash,
        "seed": cfg.train.seed,
        "versions": versions(),
        "scan": str(scan.path),
        "scans": learned,  # which scans and which annotations the run learned from
    }


def checkpoint_state(run: Run, *, optimizer: bool) -> dict[str, Any]:
    """The one dict every checkpoint holds: the run's meta, the weights and its progress."""
    state = {
        **run.meta,
        "model": run.model.state_dict(),
        "step": run.step,
        "best_dsc": run.best_dsc,
        "best_step": run.best_step,
        "history": run.history,
    }
    if optimizer:
        state["optimizer"] = run.optimizer.state_dict()
    return state
