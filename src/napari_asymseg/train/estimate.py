"""How good is the model on the slices nobody painted? Cross-validation over painted slices
(opt-in, ``train.estimate``), and what one Train does (:func:`train_and_estimate`).

A validation DSC on held-out painted slices lied on real scans: brain1, painted on 2 slices,
showed 0.72 while the unpainted slices scored 0.03, because the one held-out slice lay next to
the trained one and nothing looked at the anatomy far from the paint. And with two painted
lesion slices there is nothing to spare for validation (:data:`MIN_FG_GROUPS_TO_VALIDATE`).

:func:`estimate_quality` repeats the training recipe once per fold, each time without one
group of painted lesion slices (and a share of the painted slices without lesion), scores
the fold's model on what it did not see, and pools the counts over the folds into one DSC,
sensitivity and precision. The estimate is of the recipe with one fold less paint, so it
errs low (by up to 0.54 on the real scans) and costs a training per fold: since issue 35 the
figure shown after every prediction is :mod:`napari_asymseg.evaluate.figure`'s, in seconds,
and this cross-validation runs only where asked for (``quality-cv.json``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_asymseg.config import Config
from napari_asymseg.errors import ScanError
from napari_asymseg.evaluate.figure import Figure, unknown
from napari_asymseg.store import annotations as codes
from napari_asymseg.store.atomic import without_nan, write_json
from napari_asymseg.store.scan import Scan, read
from napari_asymseg.train.data import normalise
from napari_asymseg.train.events import Finished, StepEnd
from napari_asymseg.train.loop import fit
from napari_asymseg.train.runs import QUALITY_CV
from napari_asymseg.train.study_data import Source, scans_of

NAN = float("nan")
MAX_FOLDS = 3


@dataclass(frozen=True)
class FoldDone:
    """One fold of the estimate is scored."""

    fold: int
    folds: int
    dsc: float


@dataclass(frozen=True)
class QualityEstimate:
    """The estimated quality on unpainted slices (NaN where it cannot be estimated)."""

    dsc: float
    sensitivity: float
    precision: float
    folds: int
    note: str
    """How it was estimated, or what to paint so that it can be."""
    seconds: float = 0.0

    def line(self) -> str:
        """One line for a status bar or a terminal."""
        if math.isnan(self.dsc):
            return f"quality on unpainted slices unknown: {self.note}"
        return (
            f"estimated DSC on unpainted slices {self.dsc:.2f} (sensitivity "
            f"{self.sensitivity:.2f}, precision {self.precision:.2f}; {self.note})"
        )


def folds_of(annotations: np.ndarray, max_folds: int = MAX_FOLDS) -> list[list[int]]:
    """The painted slices each fold leaves out: runs of adjacent lesion slices, at most
    ``max_folds`` (joined round-robin), with the slices painted without lesion shared out
    round-robin; ``[]`` with fewer than two runs of lesion slices."""
    ann = np.asarray(annotations)
    painted = np.flatnonzero(codes.is_annotated(ann).any(axis=(1, 2)))
    lesion = set(np.flatnonzero(codes.is_foreground(ann).any(axis=(1, 2))).tolist())
    runs: list[list[int]] = []
    for z in (int(z) for z in painted if z in lesion):
        if runs and z == runs[-1][-1] + 1:
            runs[-1].append(z)
        else:
            runs.append([z])
    if len(runs) < 2:
        return []
    folds: list[list[int]] = [[] for _ in range(min(max_folds, len(runs)))]
    for i, run in enumerate(runs):
        folds[i % len(folds)].extend(run)
    empty = [int(z) for z in painted if z not in lesion]
    for i, z in enumerate(empty):
        folds[(i + 1) % len(folds)].append(z)  # fold 0 keeps every slice without lesion
    return [sorted(f) for f in folds]


def estimate_quality(
    scan: Scan | str | os.PathLike,
    config: Config | None = None,
    *,
    init: str | os.PathLike | None = None,
    model_dir: str | os.PathLike | None = None,
) -> Generator[StepEnd | FoldDone | QualityEstimate, None, QualityEstimate]:
    """Cross-validate the training recipe over the painted slices (see the module's text).

    Yields every fold's StepEnd (progress), a FoldDone per fold, then the estimate, which it
    also writes to ``model_dir/quality.json`` when given. A time-budgeted config trains the
    steps ``model_dir``'s run planned.
    """
    estimate = yield from _cross_validate(scan, as_planned(config, model_dir), init)
    if model_dir is not None and Path(model_dir).is_dir():
        write_json(Path(model_dir) / QUALITY_CV, without_nan(dataclasses.asdict(estimate)))
    yield estimate
    return estimate


def _cross_validate(
    scan: Scan | str | os.PathLike, config: Config | None, init: str | os.PathLike | None
) -> Generator[StepEnd | FoldDone, None, QualityEstimate]:
    scan = scan if isinstance(scan, Scan) else Scan.open(scan, mode="r")
    cfg = copy.deepcopy(config) if config is not None else Config()
    cfg.data.val_fraction = 0.0
    t0 = time.perf_counter()
    ann = scan.read_annotations()
    folds = folds_of(ann)
    if not folds:
        return QualityEstimate(
            NAN,
            NAN,
            NAN,
            0,
            "paint the lesion on a second slice, away from the first, to estimate it",
        )
    image = normalise(read(scan.image), cfg.data)
    tp = fp = fn = 0
    for k, held in enumerate(folds):
        fold_ann = ann.copy()
        fold_ann[held] = codes.NOT_ANNOTATED
        with tempfile.TemporaryDirectory(prefix="asymseg-fold-") as tmp:
            try:
                for event in fit(scan, cfg, tmp, init=init, annotations=fold_ann):
                    if isinstance(event, StepEnd):
                        yield event
            except ScanError as exc:  # e.g. the other folds hold no background
                return QualityEstimate(NAN, NAN, NAN, 0, f"fold {k + 1} cannot train: {exc}")
            pred = predicted_classes(tmp, image)
        a, b, c = (int(n) for n in painted_counts(pred[held], ann[held]))
        tp, fp, fn = tp + a, fp + b, fn + c
        yield FoldDone(k + 1, len(folds), 2 * a / (2 * a + b + c) if a + b + c else NAN)
    return QualityEstimate(
        dsc=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else NAN,
        sensitivity=tp / (tp + fn) if tp + fn else NAN,
        precision=tp / (tp + fp) if tp + fp else NAN,
        folds=len(folds),
        note=(
            f"{len(folds)}-fold cross-validation over the painted slices; it tends to err low: "
            "each fold learns from less paint than the model"
        ),
        seconds=time.perf_counter() - t0,
    )


def painted_counts(pred: np.ndarray, annotations: np.ndarray) -> np.ndarray:
    """True positives, false positives, false negatives of the predicted classes ``pred`` on
    the painted voxels of ``annotations`` (the only truth a scan has)."""
    truth = codes.to_target(annotations)
    seen = truth >= 0
    p, t = (pred > 0) & seen, (truth > 0) & seen
    return np.array([(p & t).sum(), (p & ~t).sum(), (~p & t).sum()], np.int64)


def predicted_classes(model_dir: str, image: np.ndarray) -> np.ndarray:
    """The class of every voxel of the normalised ``image``, by the model in ``model_dir``."""
    from napari_asymseg.model.checkpoint import model_from_checkpoint
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.train.device import autocast_dtype, select_device
    from napari_asymseg.train.validate import volume_logits

    net, cfg, plan = model_from_checkpoint(load_checkpoint(model_dir))
    device = select_device(cfg.train.device)
    net.to(device)
    logits = volume_logits(net, image, plan, cfg, device, autocast_dtype(device, cfg.train.amp))
    return logits[0].argmax(0).numpy()


def train_and_estimate(
    scan: Source | Sequence[Source],
    config: Config | None = None,
    model_dir: str | os.PathLike = "asymseg-model",
    *,
    init: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Generator[Any, None, Figure]:
    """What one Train click does: :func:`~napari_asymseg.train.loop.fit`, the prediction of
    the scan (written to it) and its quality figure on the unpainted voxels (seconds,
    :mod:`~napari_asymseg.evaluate.figure`; in the ``PredictionDone`` event and the model's
    ``quality.json``); with ``train.estimate`` also the cross-validation above (2-3 more
    trainings, written to ``quality-cv.json``). Several scans (or a study folder): the
    training only; its scans are predicted with ``asymseg predict STUDY`` or one at a time,
    and the quality on the next patient is :mod:`~napari_asymseg.train.loso`'s."""
    from napari_asymseg.infer.predict import PredictionDone, predict

    scans = scans_of(scan)
    if len(scans) > 1:
        yield from fit(scans, config, model_dir, init=init, resume=resume, overwrite=overwrite)
        return unknown("predict a scan of the study to see its figure")
    scan = scans[0] if isinstance(scans[0], Scan) else Scan.open(scans[0])
    done: Finished = yield from fit(
        scan, config, model_dir, init=init, resume=resume, overwrite=overwrite
    )
    predicted: PredictionDone = yield from predict(scan, done.model_dir)
    if config is not None and config.train.estimate:
        yield from estimate_quality(scan, config, init=init, model_dir=done.model_dir)
    return predicted.figure if predicted.figure is not None else unknown("predict the scan")


def as_planned(config: Config | None, model_dir: str | os.PathLike | None) -> Config | None:
    """``config`` as the model's run planned it: the folds train its steps (``train.steps`` 0:
    not a budget each) and its patch (``data.patch_voxels`` 0: not a probe each)."""
    if config is None or model_dir is None:
        return config
    if config.train.steps and (config.data.patch_voxels or config.data.patch_size):
        return config
    from napari_asymseg.model.load import load_checkpoint

    config = copy.deepcopy(config)
    planned = load_checkpoint(model_dir)["config"]
    if not config.train.steps:
        config.train.steps = planned["train"]["steps"]
        config.train.val_every = planned["train"]["val_every"]
    if not config.data.patch_voxels:
        config.data.patch_voxels = int(planned["data"].get("patch_voxels", 0))
    return config
