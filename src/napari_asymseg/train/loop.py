"""The training loop: :func:`fit` = :func:`prepare`, then :func:`train_step` until the last
step, :func:`validate` every ``val_every`` steps (which keeps the best model and saves both
checkpoints through :func:`save`), until the steps or the patience run out.

Every named step works on one :class:`~napari_asymseg.train.state.Run`, the state of the
run; :func:`_fit` reads top to bottom in the order of the events a caller sees: Started,
StepEnd per step (a Notice when the run had to change course), EpochEnd per validation,
Finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Generator, Iterator, Sequence

import numpy as np
import torch

from napari_asymseg.config import Config
from napari_asymseg.errors import TrainingError
from napari_asymseg.evaluate.metrics import foreground_margins
from napari_asymseg.model.checkpoint import BEST, CHECKPOINT, save_atomic
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.model.networks import count_parameters
from napari_asymseg.train import distributed, runs
from napari_asymseg.train.budget import Clock
from napari_asymseg.train.device import autocast_dtype, release, select_device
from napari_asymseg.train.events import EpochEnd, Finished, Notice, Started, StepEnd
from napari_asymseg.train.state import Run, checkpoint_state, prepare
from napari_asymseg.train.step import _fall_back, _lr_at
from napari_asymseg.train.study_data import (
    Source,
    StudyData,
    preparing,
    scans_of,
    study_removed_on_error,
)
from napari_asymseg.train.validate import (
    _best_index,
    _history_row,
    _unlearned,
    _validate,
    _with_best,
    score_other,
)

Event = Started | StepEnd | EpochEnd | Notice | Finished


def fit(
    scan: Source | Sequence[Source],
    config: Config | None = None,
    model_dir: str | os.PathLike = "asymseg-model",
    *,
    init: str | os.PathLike | None = None,
    resume: bool = False,
    annotations: np.ndarray | None = None,
    compare: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Generator[Event, None, Finished]:
    """Train from scratch, fine-tune (``init``) or resume (``resume``) on a scan's annotations.

    Parameters
    ----------
    scan
        The scan (or its path), several scans, or a study folder (its annotated scans): their
        annotations are the training data (:mod:`~napari_asymseg.train.study_data`).
    config
        The run's configuration (defaults otherwise). Fine-tuning keeps the network of ``init``.
    model_dir
        Folder for ``checkpoint.pt`` (latest, to resume) and ``best.pt`` (best validation DSC).
    init
        A checkpoint or model folder to start from (fine-tuning, warm start).
    resume
        Continue from ``model_dir/checkpoint.pt`` when it belongs to the same annotations.
        Without it (or ``overwrite``) a ``model_dir`` that holds a model is refused
        (ScanError): an earlier model is never replaced unasked.
    annotations
        Train on these annotation codes instead of the scan's (cross-validation folds).
    compare
        A model (the scan's current one) to score on this run's held-out slices before
        training: ``Finished.baseline_dsc``, so that the two runs are compared on the same
        voxels. A fine-tune's baseline is its starting model's score.

    Yields
    ------
    Started, then StepEnd per step and EpochEnd per validation, then Finished; a Notice when
    the run had to change course (out of GPU memory: a smaller batch, then the CPU).
    ``model_dir/run.json`` says how the run ended (:mod:`napari_asymseg.train.runs`).

    Under ``torchrun`` with several processes (:mod:`napari_asymseg.train.distributed`) every rank
    trains a DistributedDataParallel copy on its own patches (``batch_size`` per rank), all
    ranks validate and take the same decisions, and only rank 0 writes the model folder.
    """
    device_name = config.train.device if config is not None else "auto"
    with distributed.session(device_name) as world:
        return (
            yield from _fit(
                scan,
                config,
                model_dir,
                init=init,
                resume=resume,
                world=world,
                annotations=annotations,
                compare=compare,
                overwrite=overwrite,
            )
        )


def _fit(
    scan: Source | Sequence[Source],
    config: Config | None,
    model_dir: str | os.PathLike,
    *,
    init: str | os.PathLike | None,
    resume: bool,
    world: distributed.Group | None,
    annotations: np.ndarray | None = None,
    compare: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Generator[Event, None, Finished]:
    """:func:`fit` in this process; ``world`` is the torchrun process group (or None)."""
    asked = time.perf_counter()  # a budget counts the reading of the scans and the forest
    scans, cfg = scans_of(scan), config or Config()
    study = yield from preparing(scans, cfg.data, cfg.train.seed)
    with study_removed_on_error(study):
        run = prepare(
            scans[0], config, model_dir, init=init, resume=resume, world=world,
            annotations=annotations, overwrite=overwrite, study=study,
        )  # fmt: skip
    run.t0 = asked
    _repair_best(run)
    _write_summary(run, runs.RUNNING)  # a kill leaves it so: the run is listed as unfinished
    clock = Clock.for_run(run)  # a planned run (steps 0) aims at the floor until its plan
    yield _started(run)
    stopped_early, status = False, runs.FAILED
    try:
        with _torch_settings(run.cfg):
            start = _baseline(run, compare)
            if start is not None:
                yield start
            status = runs.CANCELLED  # until the loop ends: a closed generator stops in it
            stopped_early = yield from _steps(run, clock)
            status = runs.FINISHED
    except torch.cuda.OutOfMemoryError:
        raise TrainingError(
            f"the GPU ran out of memory: lower the batch size (now {run.cfg.train.batch_size}) "
            "or the patch size, or train on the CPU (device cpu)"
        ) from None
    finally:  # also when the caller closes the generator (a cancel)
        _release(run)
        _write_summary(run, status, stopped_early)
    if world is not None:  # the others wait until rank 0 has written the last checkpoint
        world.barrier()
    unlearned = _unlearned(run)
    if unlearned is not None:
        yield unlearned
    done = Finished(
        model_dir=str(run.out),
        best_step=run.best_step,
        best_dsc=run.best_dsc,
        steps_done=run.step,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - run.t0,
        baseline_dsc=run.baseline_dsc,
    )
    yield done
    return done


def _steps(run: Run, clock: Clock | None) -> Generator[Event, None, bool]:
    """The steps and validations until the steps run out (True: the patience ran out first).

    With a ``clock`` the steps are planned after the first validation (:mod:`budget`).
    """
    while run.step < run.cfg.train.steps:
        event = train_step(run)
        yield event
        if clock is not None and isinstance(event, StepEnd):
            clock.step(event.seconds)
            clock.stop_at_budget(run)  # then the last validation, and done
        if isinstance(event, Notice) or not _validates_now(run):
            continue
        t_val = time.perf_counter()
        yield validate(run)
        if clock is not None and run.step < run.cfg.train.steps:
            notice = clock.after_validation(run, time.perf_counter() - t_val)
            if notice is not None:
                yield notice
        if _patience_ran_out(run):
            return True
    return False


def _repair_best(run: Run) -> None:
    """A resumed run whose checkpoint is its best model: make sure ``best.pt`` holds it (a kill
    between a validation's two saves leaves it one validation behind)."""
    if not run.step or run.best_step != run.step or not run.writes:
        return
    best = run.out / BEST
    if not best.is_file() or load_checkpoint(best).get("step") != run.step:
        save(run, BEST)


def _baseline(run: Run, compare: str | os.PathLike | None) -> EpochEnd | None:
    """Score the model current at the start on this run's held-out slices (``run.baseline_dsc``):
    a fine-tune's starting model (its step-0 validation, returned), or ``compare``."""
    if run.fine_tune and run.step == 0 and run.data.val is not None:
        start = score_start(run)
        run.baseline_dsc = start.dsc
        return start
    if compare is not None and run.step == 0:
        run.baseline_dsc = score_other(run, compare)
    return None


def _write_summary(run: Run, status: str, stopped_early: bool = False) -> None:
    """Write ``run.json`` (rank 0 only): what :mod:`napari_asymseg.train.runs` reads."""
    if run.writes:
        runs.write_summary(run.out, _summary(run, status, stopped_early))


def _summary(run: Run, status: str, stopped_early: bool) -> dict:
    """What ``run.json`` holds (see :mod:`napari_asymseg.train.runs`)."""
    return {
        "status": status,
        "kind": "fine-tune" if run.fine_tune else "new",
        "init": run.meta.get("init"),
        "annotations_hash": run.data.annotations_hash,
        "steps": run.cfg.train.steps,
        "steps_done": run.step,
        "best_dsc": run.best_dsc if run.best_step >= 0 else math.nan,
        "best_step": run.best_step,
        "baseline_dsc": run.baseline_dsc,
        "stopped_early": stopped_early,
        "loss": run.cfg.loss.name,
        "seed": run.cfg.train.seed,
        "seconds": time.perf_counter() - run.t0,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _started(run: Run) -> Started:
    data, amp = run.data, run.amp_dtype
    return Started(
        device=str(run.device),
        amp=str(amp).replace("torch.", "") if amp else "off",
        parameters=count_parameters(run.model),
        patch_size=run.plan.patch_size,
        steps=run.cfg.train.steps,
        start_step=run.step,
        train_voxels=data.train_voxels,
        val_voxels=int((data.val >= 0).sum()) if data.val is not None else 0,
    )


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


# ------------------------------------------------------------------------------ the steps
def train_step(run: Run) -> StepEnd | Notice:
    """One optimisation step at the scheduled learning rate; a Notice instead when the GPU ran
    out of memory and the run fell back to a smaller batch or the CPU (the step is redone)."""
    ts = time.perf_counter()
    cfg = run.cfg
    lr = _lr_at(run.step, cfg.train.steps, cfg.train.lr)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    x, y = run.sampler.sample(cfg.train.batch_size)
    try:
        x = x.to(run.device, memory_format=run.layout)
        loss, logits = run.step_fn(x, y.to(run.device))
    except torch.cuda.OutOfMemoryError:
        if run.world is not None:  # the ranks must stay in step: stop (TrainingError)
            raise
        # fall back instead of failing: a smaller batch, then the CPU
        del x, y
        notice = _fall_back(run.cfg, run.device, run.model, run.optimizer)
        run.device = select_device(cfg.train.device)
        run.amp_dtype = autocast_dtype(run.device, cfg.train.amp)
        run.new_step()
        return notice
    if run.world is not None:  # the mean over the ranks: a NaN stops every rank
        loss = run.world.mean(loss)
    if not math.isfinite(loss):
        raise TrainingError(
            f"the loss became {loss} at step {run.step + 1}: lower the learning rate "
            f"(now {cfg.train.lr:g}) or choose another loss; the best model so far "
            f"is kept in {run.out / BEST}"
        )
    run.step += 1
    run.train_losses.append(loss)
    run.train_margins.append(foreground_margins(logits, y.to(run.device), limit=2000))
    return StepEnd(
        step=run.step,
        steps=cfg.train.steps,
        loss=loss,
        lr=lr,
        seconds=time.perf_counter() - ts,
    )


def _validates_now(run: Run) -> bool:
    """Every ``val_every`` steps, and after the last."""
    return run.step % run.cfg.train.val_every == 0 or run.step >= run.cfg.train.steps


def score_start(run: Run) -> EpochEnd:
    """A fine-tune is never worse than where it started: score the starting model first; it
    stays ``best.pt`` until a validation beats it."""
    event = _scored(run, epoch=0)
    run.best_dsc = event.dsc if math.isfinite(event.dsc) else -1.0
    run.best_step = 0
    event = _with_best(event)
    run.history.append(_history_row(event))
    save(run, BEST)
    return event


def validate(run: Run) -> EpochEnd:
    """Score the model on the held-out slices, keep it when it is the best so far, and save
    the checkpoint to resume from."""
    event = _scored(run, epoch=len(run.history) + 1)
    run.train_losses, run.train_margins = [], []
    # without held-out slices there is no score: the latest model is the best
    improved = event.dsc > run.best_dsc or math.isnan(event.dsc)
    if improved:
        run.best_dsc, run.best_step = event.dsc, run.step
        event = _with_best(event)
    run.history.append(_history_row(event))
    # checkpoint.pt first: a kill between the two saves leaves best.pt no newer than it, and
    # resuming writes the best model that best.pt then lacks (_repair_best)
    save(run, CHECKPOINT, optimizer=True)
    if improved:
        save(run, BEST)
    _write_summary(run, runs.RUNNING)  # its steps so far, should it be killed now
    return event


def _scored(run: Run, epoch: int) -> EpochEnd:
    """The validation of the model as it is now (under torchrun: rank 0's score, so that
    every rank takes the same decisions)."""
    event = _validate(
        run.model,
        run.data,
        run.plan,
        run.cfg,
        run.device,
        run.amp_dtype,
        run.loss_fn,
        step=run.step,
        epoch=epoch,
        train_losses=run.train_losses,
        train_margins=run.train_margins,
    )
    if run.world is not None:
        event = dataclasses.replace(event, dsc=run.world.agree(run.model, event.dsc))
    return event


def _patience_ran_out(run: Run) -> bool:
    """Whether ``patience`` validations have passed without a better score."""
    patience = run.cfg.train.patience
    return bool(patience) and len(run.history) - 1 - _best_index(run.history) >= patience


def save(run: Run, name: str, *, optimizer: bool = False) -> None:
    """Write ``name`` into the model folder (rank 0 only under torchrun); ``optimizer`` adds
    the optimizer's state, which resuming needs."""
    if run.writes:
        save_atomic(checkpoint_state(run, optimizer=optimizer), run.out / name)


def _release(run: Run) -> None:
    """Drop the networks and the optimizer and give their memory back to the GPU driver."""
    del run.model, run.net, run.optimizer, run.step_fn
    release(run.device)
    if isinstance(run.data, StudyData):
        run.data.remove()
