"""Where the models trained on a scan live: one folder per run, beside the scan, and which
one is current.

``case.zarr`` keeps its models in ``case-models/run-YYYYmmdd-HHMMSS/``. A run never reuses a
folder, so training again (or loading a bundle) never overwrites an earlier model. Each run's
``run.json`` (written by :func:`napari_asymseg.train.loop.fit`) says how it ended: finished or
cancelled, its steps, its best validation DSC, and the DSC of the model that was current when
it started on the same held-out slices (its baseline). A run writes it when it starts and at
every validation with the status ``running``: a run killed or crashed (no ``finally`` ran) stays
``running`` on disk and is listed as unfinished, never as a finished model.
``case-models/current.json`` names the current run: the model that predicts, is fine-tuned from
and is exported. A run becomes current only when :func:`verdict` says so, or when the user
chooses it (:func:`set_current`); without ``current.json`` (models from before it) the newest
finished run is.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_asymseg.errors import ScanError
from napari_asymseg.model.checkpoint import BEST
from napari_asymseg.store.atomic import write_json
from napari_asymseg.store.scan import Scan

RUN_PREFIX = "run-"
SUMMARY = "run.json"
"""A run's summary, in its folder."""
QUALITY = "quality.json"
"""The quality figure of a run's model on its scan's unpainted voxels (evaluate/figure.py)."""
QUALITY_CV = "quality-cv.json"
"""The cross-validation over the painted slices, where asked for (train/estimate.py)."""
CURRENT = "current.json"
"""Which run is current, in the scan's model folder."""
FINISHED, CANCELLED, FAILED = "finished", "cancelled", "failed"
RUNNING = "running"
"""On disk while a run trains; left so by a kill or a crash: the run did not finish."""


def model_root(scan_path: str | os.PathLike) -> Path:
    """Models trained on a scan live beside it: ``case.zarr`` -> ``case-models/``; a study's
    (:mod:`napari_asymseg.study`) in its ``models/``, which its scans share: a scan of a study
    is predicted with the study's current model."""
    from napari_asymseg.study.study import Study, is_study, study_of

    scan_path = Path(scan_path)
    study = Study.open(scan_path) if is_study(scan_path) else study_of(scan_path)
    if study is not None:
        return study.models
    return scan_path.with_name(scan_path.name.removesuffix(".zarr") + "-models")


def latest_model(scan_path: str | os.PathLike) -> Path | None:
    """The newest run folder of the scan that holds a best checkpoint, if any."""
    runs = _run_folders(scan_path)
    return runs[-1] if runs else None


def _run_folders(scan_path: str | os.PathLike) -> list[Path]:
    root = model_root(scan_path)
    return sorted(p for p in root.glob(f"{RUN_PREFIX}*") if (p / BEST).is_file())


@dataclass(frozen=True)
class RunInfo:
    """One run of a scan, as :func:`list_runs` reads it (``number`` counts from 1, oldest
    first; runs from before ``run.json`` have an empty summary)."""

    path: Path
    number: int
    summary: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.summary.get("status", FINISHED))

    @property
    def ended(self) -> str:
        """How the run ended in the user's words: ``finished``, ``cancelled``, ``failed``,
        or ``unfinished`` (still training, or killed: its ``run.json`` says running)."""
        return "unfinished" if self.status == RUNNING else self.status

    @property
    def best_dsc(self) -> float:
        return _number(self.summary.get("best_dsc"))

    @property
    def baseline_dsc(self) -> float:
        return _number(self.summary.get("baseline_dsc"))

    def line(self) -> str:
        """``run 3 · fine-tune · DSC 0.84 · 120 steps`` (``cancelled at step 40``)."""
        s = self.summary
        parts = [f"run {self.number}", str(s.get("kind", "model"))]
        if math.isfinite(self.best_dsc):
            parts.append(f"DSC {self.best_dsc:.2f}")
        if self.status != FINISHED:
            parts.append(f"{self.ended} at step {s.get('steps_done', '?')}")
        elif "steps_done" in s:
            parts.append(f"{s['steps_done']} steps")
        return " · ".join(parts)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def write_summary(folder: str | os.PathLike, summary: dict[str, Any]) -> None:
    """Write a run's ``run.json`` (NaN as null)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in summary.items()}  # fmt: skip
    write_json(Path(folder) / SUMMARY, clean)


def read_summary(folder: str | os.PathLike) -> dict[str, Any]:
    """A run's ``run.json``; empty when there is none or it is unreadable."""
    try:
        data = json.loads((Path(folder) / SUMMARY).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def list_runs(scan_path: str | os.PathLike) -> list[RunInfo]:
    """The scan's runs that hold a model, oldest first."""
    return [RunInfo(p, k, read_summary(p)) for k, p in enumerate(_run_folders(scan_path), 1)]


def current_model(scan_path: str | os.PathLike) -> Path | None:
    """The current run's folder: the one ``current.json`` names, else the newest that finished
    (a cancelled, failed or killed run is never current unless the user chose it)."""
    try:
        name = json.loads((model_root(scan_path) / CURRENT).read_text()).get("run")
    except (OSError, ValueError, AttributeError):
        name = None
    if isinstance(name, str) and name.startswith(RUN_PREFIX):
        folder = model_root(scan_path) / name
        if (folder / BEST).is_file():
            return folder
    folders = _run_folders(scan_path)
    whole = [p for p in folders if read_summary(p).get("status", FINISHED) == FINISHED]
    return whole[-1] if whole else None


def set_current(scan_path: str | os.PathLike, folder: str | os.PathLike) -> None:
    """Make a run of the scan current (the user's choice, or :func:`verdict`'s)."""
    folder = Path(folder)
    if folder.parent.resolve() != model_root(scan_path).resolve() or not (folder / BEST).is_file():
        raise ScanError(f"{folder} is not a model of {Path(scan_path).name}: pick one of its runs")
    write_json(model_root(scan_path) / CURRENT, {"run": folder.name})


def verdict(new: RunInfo, current: RunInfo | None) -> tuple[bool, str]:
    """Whether a run that just ended should become current, and the line that says why.

    A run that did not finish (cancelled, failed, killed) never does: its best model so far is
    kept among the runs, for the user to choose. A finished run does when no run is current,
    or when it beat the current model on its own held-out slices (its baseline: the same
    voxels, scored before training). When the two cannot be compared (nothing held out), the
    new run becomes current only if it learned from annotations the current model never saw
    (the user painted since: the old model cannot know that paint); otherwise the current
    model stays. A fine-tune whose best model is the one it started from changes nothing.
    """
    kept = f"kept run {current.number} as current" if current is not None else "no model is current"
    if new.status != FINISHED:
        stop = f"run {new.number} {new.ended} at step {new.summary.get('steps_done', '?')}"
        return False, f"{stop}: {kept}; Use makes its model so far current"
    if current is None:
        return True, f"run {new.number} is the current model ({new.line()})"
    best, base = new.best_dsc, new.baseline_dsc
    if new.summary.get("kind") == "fine-tune" and new.summary.get("best_step") == 0:
        return False, f"run {new.number} did not improve on its start (DSC {base:.2f}): {kept}"
    if math.isfinite(best) and math.isfinite(base):
        if best > base:
            return True, (
                f"run {new.number} is now current: DSC {best:.2f} against {base:.2f} for run "
                f"{current.number} on the same held-out slices"
            )
        return False, (
            f"run {new.number} (DSC {best:.2f}) is not better than run {current.number} "
            f"({base:.2f} on the same held-out slices): {kept}; choose it in the runs list "
            "to use it anyway"
        )
    return _uncompared(new, current, kept)


def _uncompared(new: RunInfo, current: RunInfo, kept: str) -> tuple[bool, str]:
    """:func:`verdict` for two runs without held-out slices to compare them on."""
    mine, theirs = new.summary.get("annotations_hash"), current.summary.get("annotations_hash")
    why = f"run {new.number} could not be compared with run {current.number} (nothing held out)"
    if isinstance(mine, str) and isinstance(theirs, str) and mine != theirs:
        return True, (
            f"{why}; it is now current, as it learned from annotations run {current.number} "
            f"never saw (Use run {current.number} to go back)"
        )
    return False, f"{why}, and learned from the same annotations: {kept}; Use to choose it"


def new_model_dir(scan_path: str | os.PathLike) -> Path:
    """A fresh (not yet created) folder for the next run: earlier models are never overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = model_root(scan_path)
    out, n = root / f"{RUN_PREFIX}{stamp}", 1
    while out.exists():
        out, n = root / f"{RUN_PREFIX}{stamp}-{n}", n + 1
    return out


def adopt_model(scan: Scan, source: str | os.PathLike) -> Path:
    """Make a bundle, checkpoint or model folder the scan's current model (a copy of its
    checkpoint in a new run folder, chosen as current); returns that folder.

    Raises
    ------
    ScanError
        When ``source`` is not a readable model, or predicts other classes than the scan has.
    """
    from napari_asymseg.model.checkpoint import save_atomic
    from napari_asymseg.model.load import load_checkpoint

    ckpt = load_checkpoint(source)
    if int(ckpt["num_classes"]) != scan.num_classes:
        raise ScanError(
            f"the model predicts {int(ckpt['num_classes']) - 1} class(es) but "
            f"{scan.path.name} has {scan.num_classes - 1}: load a model for these classes"
        )
    out = new_model_dir(scan.path)
    out.mkdir(parents=True)
    save_atomic(ckpt, out / BEST)
    write_summary(out, {"status": FINISHED, "kind": "loaded", "source": str(source)})
    set_current(scan.path, out)  # loaded on purpose: the user's choice
    return out
