"""Predict every scan of a study with one model: the unannotated scans included.

Each scan goes through the single-scan path (:func:`napari_asymseg.infer.predict.predict`, or
:func:`napari_asymseg.infer.scaleout.predict_dask` where a dask scheduler is given), so its
results, risk map and quality figure are what ``asymseg predict SCAN`` writes. The events are
that path's, each scan announced by a :class:`ScanStarts`; closing the generator cancels the
scan being predicted (its old results stay) and the ones after it.

A scan that cannot be predicted does not stop the others: a missing scan folder, a damaged
scan or one held by another writer is reported as a :class:`ScanSkipped` (one line naming it)
and in the list returned at the end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from napari_asymseg.config import Config
from napari_asymseg.errors import ClearError, ScanError
from napari_asymseg.infer.predict import PredictionDone, WindowDone
from napari_asymseg.store.lock import ScanLock, held_here

if TYPE_CHECKING:
    from napari_asymseg.study.study import Study


@dataclass(frozen=True)
class ScanStarts:
    """Scan ``index`` of ``total`` (from 1) is predicted next."""

    name: str
    index: int
    total: int

    def line(self) -> str:
        return f"scan {self.index} of {self.total}: {self.name}"


@dataclass(frozen=True)
class ScanSkipped:
    """A scan that was not predicted, and why (one line: the problem and the fix)."""

    name: str
    problem: str

    def line(self) -> str:
        return f"{self.name} skipped: {self.problem}"


class ScanOutcome(NamedTuple):
    """How predicting one scan of the study ended: ``done`` when predicted, else ``problem``."""

    name: str
    done: PredictionDone | None
    problem: str = ""

    def line(self) -> str:
        """``brain2: 2 lesion(s), 0.41 mL in all; DSC ... `` or ``brain3: skipped: ...``."""
        if self.done is None:
            return f"{self.name}: skipped: {self.problem}"
        text = f"{self.name}: {self.done.summary()}"
        return text + (f"; {self.done.figure.line()}" if self.done.figure is not None else "")


StudyEvent = ScanStarts | ScanSkipped | WindowDone | PredictionDone


def open_study(study: Study | str | os.PathLike) -> Study:
    """``study`` itself, or the study at that path (a clear error if it is not one)."""
    from napari_asymseg.study.study import Study

    return study if isinstance(study, Study) else Study.open(study)


def study_model(study: Study) -> Path:
    """The study's current model: the one that predicts when no other is named."""
    from napari_asymseg.train.runs import current_model

    model = current_model(study.path)
    if model is None:
        raise ScanError(
            f"the study {study.path.name} has no model yet: train one (asymseg train "
            f"{study.path}) or name one with --model"
        )
    return model


def selected(study: Study, names: Sequence[str] | None) -> list[str]:
    """``names`` in the study's order (all of its scans when None); unknown ones refused."""
    if names is None:
        return list(study.names)
    unknown = [n for n in names if n not in study.names]
    if unknown:
        raise ScanError(
            f"the study {study.path.name} has no scan {unknown[0]}: see its scans with "
            f"asymseg study status {study.path}"
        )
    return [n for n in study.names if n in set(names)]


@contextlib.contextmanager
def scan_lock(path: Path, owner: str | None) -> Iterator[None]:
    """The scan's write lock for ``owner`` (none when None, or when this process holds it
    already: the dock that has the scan open)."""
    if owner is None or held_here(path):
        yield
        return
    with ScanLock(path, owner):
        yield


def predict_study(
    study: Study | str | os.PathLike,
    model: str | os.PathLike | None = None,
    *,
    scheduler: str | None = None,
    names: Sequence[str] | None = None,
    config: Config | None = None,
    lock: str | None = None,
) -> Generator[StudyEvent, None, list[ScanOutcome]]:
    """Predict the study's scans (``names``, or all) with ``model`` (the study's current
    model when None); returns each scan's :class:`ScanOutcome`, in the study's order.

    ``scheduler``: the address of a dask.distributed scheduler (``local``: a cluster on this
    machine), as ``asymseg predict --dask``; ``config``: the prediction settings (the model's
    when None); ``lock``: the owner each scan's write lock is taken for while it is predicted
    (the CLI's; none when None). A missing or failing scan is skipped, never the rest.
    """
    from napari_asymseg.model.load import load_checkpoint

    study = open_study(study)
    chosen = selected(study, names)
    model = Path(model) if model is not None else study_model(study)
    load_checkpoint(model)  # a broken model fails once, before any scan is touched
    if scheduler not in (None, "", "local"):
        from napari_asymseg.infer.scaleout import dask_client

        with dask_client(scheduler):  # so does a scheduler out of reach
            pass
    outcomes: list[ScanOutcome] = []
    for index, name in enumerate(chosen, 1):
        yield ScanStarts(name, index, len(chosen))
        try:
            done = yield from _predict_one(study, name, model, scheduler, config, lock)
        except ClearError as exc:
            problem = str(exc)
        else:
            outcomes.append(ScanOutcome(name, done))
            continue
        outcomes.append(ScanOutcome(name, None, problem))
        yield ScanSkipped(name, problem)
    return outcomes


def _predict_one(
    study: Study,
    name: str,
    model: Path,
    scheduler: str | None,
    config: Config | None,
    lock: str | None,
) -> Generator[WindowDone | PredictionDone, None, PredictionDone]:
    from napari_asymseg.store.scan import Scan

    path = study.scan_path(name)
    if not path.is_dir():
        raise ScanError(
            f"its folder {path} is missing: put the scan back, or add it again with asymseg "
            f"study add {study.path}"
        )
    with scan_lock(path, lock):
        scan = Scan.open(path)
        if scheduler is not None:
            from napari_asymseg.infer.scaleout import predict_dask

            events = predict_dask(scan, model, config=config, address=scheduler)
        else:
            from napari_asymseg.infer.predict import predict

            events = predict(scan, model, config=config)
        return (yield from events)
