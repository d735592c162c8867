"""How good is the study's model on the next patient? Leave-one-scan-out.

The per-scan quality figure (:mod:`napari_asymseg.evaluate.figure`) judges a prediction on
the scan it was trained on; a study's model is meant for the next patient, whose scan nobody
has painted. Leave-one-scan-out measures that: for each annotated scan of the study, the
study's recipe trains on the others and predicts it, and its painted voxels (the only truth
there is) score the prediction. The counts pool over the scans into one DSC, sensitivity and
precision, with the lowest and highest scan's DSC beside it.

It costs one training per annotated scan, so it runs where asked for (``asymseg study quality``,
the dock's *Quality on the next patient*), and it errs low where the model is trained on all
of them: each fold learns from one scan fewer.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_asymseg.config import Config
from napari_asymseg.errors import ScanError
from napari_asymseg.store.atomic import without_nan, write_json
from napari_asymseg.store.scan import Scan, read
from napari_asymseg.train.data import normalise
from napari_asymseg.train.estimate import painted_counts, predicted_classes
from napari_asymseg.train.events import Notice, StepEnd
from napari_asymseg.train.loop import fit
from napari_asymseg.train.study_data import Source, scans_of

NAN = float("nan")
LOSO = "leave-one-scan-out.json"
"""Written to the study's model folder (``STUDY/models``): the study's figure."""


@dataclass(frozen=True)
class ScanLeftOut:
    """One scan was left out, and its painted voxels scored the others' model."""

    name: str
    index: int
    total: int
    dsc: float


@dataclass(frozen=True)
class StudyFigure:
    """The quality on an unseen patient (NaN where it cannot be measured)."""

    dsc: float
    sensitivity: float
    precision: float
    scans: int
    per_scan: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""

    def line(self) -> str:
        """One line for a status bar or a terminal."""
        if math.isnan(self.dsc):
            return f"quality on the next patient unknown: {self.note}"
        dscs = [d for d in self.per_scan.values() if not math.isnan(d)]
        spread = f", scans {min(dscs):.2f}-{max(dscs):.2f}" if dscs else ""
        return (
            f"on the next patient: DSC {self.dsc:.2f} (sensitivity {self.sensitivity:.2f}, "
            f"precision {self.precision:.2f}; leave-one-scan-out over {self.scans} annotated "
            f"scans{spread})"
        )

    def as_dict(self) -> dict[str, Any]:
        return without_nan(asdict(self))


def leave_one_scan_out(
    source: Source | Sequence[Source],
    config: Config | None = None,
    *,
    out: str | os.PathLike | None = None,
) -> Generator[Notice | StepEnd | ScanLeftOut, None, StudyFigure]:
    """Train on all annotated scans but one, score it on its painted voxels; every scan once.

    ``source``: a study folder or the scans; ``out``: the folder to write :data:`LOSO` into
    (the study's model folder by default, for a study).

    Raises
    ------
    ScanError
        Fewer than two annotated scans.
    """
    scans = scans_of(source)
    if len(scans) < 2:
        raise ScanError(
            "the quality on the next patient needs 2 annotated scans: annotate another scan "
            "of the study (lesion and background) first"
        )
    cfg = copy.deepcopy(config) if config is not None else Config()
    t0, counts, per_scan = time.perf_counter(), np.zeros(3, np.int64), {}
    for i, held in enumerate(scans):
        scan = held if isinstance(held, Scan) else Scan.open(held, mode="r")
        rest = [s for j, s in enumerate(scans) if j != i]
        with tempfile.TemporaryDirectory(prefix="asymseg-loso-") as tmp:
            for event in fit(rest if len(rest) > 1 else rest[0], cfg, tmp, overwrite=True):
                if isinstance(event, StepEnd | Notice):
                    yield event
            pred = predicted_classes(tmp, normalise(read(scan.image), cfg.data))
        tp_fp_fn = painted_counts(pred, scan.read_annotations())
        counts += tp_fp_fn
        per_scan[scan.path.name] = _dsc(*tp_fp_fn)
        yield ScanLeftOut(scan.path.name, i + 1, len(scans), per_scan[scan.path.name])
    tp, fp, fn = (int(c) for c in counts)
    figure = StudyFigure(
        dsc=_dsc(tp, fp, fn),
        sensitivity=tp / (tp + fn) if tp + fn else NAN,
        precision=tp / (tp + fp) if tp + fp else NAN,
        scans=len(scans),
        per_scan=per_scan,
        seconds=time.perf_counter() - t0,
        note="each scan predicted by a model trained on the others, scored on its painted voxels",
    )
    folder = out if out is not None else _study_models(source)
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        write_json(Path(folder) / LOSO, figure.as_dict())
    return figure


def read_study_figure(folder: str | os.PathLike) -> StudyFigure | None:
    """The study's figure written by the last leave-one-scan-out into ``folder``, if any."""
    import json

    path = Path(folder) / LOSO
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    nan = {k: NAN if data.get(k) is None else data[k] for k in ("dsc", "sensitivity", "precision")}
    per_scan = {k: NAN if v is None else v for k, v in data.get("per_scan", {}).items()}
    return StudyFigure(
        **nan,
        scans=int(data.get("scans", 0)),
        per_scan=per_scan,
        seconds=float(data.get("seconds", 0.0)),
        note=str(data.get("note", "")),
    )


def _dsc(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else NAN


def _study_models(source: object) -> Path | None:
    """The study's model folder when ``source`` is a study folder."""
    if not isinstance(source, str | os.PathLike):
        return None
    from napari_asymseg.study.study import Study, is_study

    return Study.open(source).models if is_study(source) else None
