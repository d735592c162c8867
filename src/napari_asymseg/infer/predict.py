"""Predict a whole scan and write its results into the store (a generator of events, like
training: the CLI shows a progress bar, the dock runs it in a thread worker, closing it
cancels and keeps the old results)."""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_asymseg.config import Config
from napari_asymseg.errors import ClearError
from napari_asymseg.evaluate.figure import Figure, figure, unknown
from napari_asymseg.evaluate.lesions import components
from napari_asymseg.infer.predictor import RESULT_DTYPES, Predictor
from napari_asymseg.infer.with_fill import add_fill
from napari_asymseg.store.atomic import write_json
from napari_asymseg.store.layout import PREDICTED_BY, QUALITY_FIGURE
from napari_asymseg.store.scan import Scan, read
from napari_asymseg.train.device import release, release_freed_memory


@dataclass(frozen=True)
class WindowDone:
    done: int
    total: int


@dataclass(frozen=True)
class PredictionDone:
    scan: str
    seconds: float
    foreground_voxels: int
    lesions: int = -1  # 26-connected regions of the prediction (-1: not counted)
    millilitres: float = float("nan")  # the predicted foreground's volume
    figure: Figure | None = None  # the quality figure on the unpainted voxels (figure.py)

    def summary(self) -> str:
        """``3 lesions, 4.2 mL in all`` (what the dock says after each prediction)."""
        if self.lesions < 0:
            return f"{self.foreground_voxels:,} voxels called lesion"
        if self.lesions == 0:
            return "no lesion found"
        return f"{self.lesions} lesion(s), {self.millilitres:.2f} mL in all"


def predict(
    scan: Scan | str | os.PathLike,
    model: str | os.PathLike,
    *,
    config: Config | None = None,
) -> Generator[WindowDone | PredictionDone, None, PredictionDone]:
    """Predict a scan with a streamed sliding window and write the results into its store.

    Memory is bounded by one window's depth of slices, not the volume
    (:class:`~napari_asymseg.infer.sliding.SlidingWindow`): the image is read from zarr as the
    windows reach it, and each run of finished slices is written to ``results/prediction``
    (uint8), ``results/probability`` (float16) and ``results/risk`` (float16, the
    false-negative heatmap of :mod:`napari_asymseg.review.risk_map`). The results replace the
    old ones only when every slice is done; a cancel leaves the old ones.
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
            if predictor.cfg.predict.fill_between:
                fg_voxels += add_fill(out, scan.read_annotations(), scan.spacing)
    finally:
        del predictor
        release(device)
    # which model made the prediction: the DICOM SEG export names it (algorithm identification)
    scan.write_attr(PREDICTED_BY, str(Path(model).resolve()))
    stored = scan.result("prediction")
    labels = read(stored, slice(0, depth)) if stored is not None else None
    lesions = count_regions(labels) if labels is not None else -1
    mm3 = float(np.prod(scan.spacing)) * fg_voxels
    quality = scan_figure(scan, model, labels)  # seconds; kept with the scan (and its model)
    done = PredictionDone(
        str(scan.path), time.perf_counter() - t0, fg_voxels, lesions, mm3 / 1000, quality
    )
    yield done
    return done


def count_regions(prediction: np.ndarray) -> int:
    """The 26-connected regions of a label volume's foreground (any class): lesions as
    ``evaluate.lesions`` counts them."""
    return components(prediction > 0)[1]


def scan_figure(
    scan: Scan, model: str | os.PathLike | None = None, prediction: np.ndarray | None = None
) -> Figure:
    """The quality figure of the scan's stored prediction (``prediction``: it, read already)
    on its unpainted voxels (:mod:`~napari_asymseg.evaluate.figure`), stored with the scan;
    with the ``model`` folder that was trained on this scan, also in its ``quality.json`` (the
    bundle carries it)."""
    from napari_asymseg.train.runs import QUALITY, SUMMARY

    if prediction is None:
        stored = scan.result("prediction")
        if stored is None:
            return unknown("predict the scan first")
        prediction = read(stored, slice(0, scan.shape[0]))
    quality = figure(scan.read_annotations(), prediction, scan.spacing)
    values = quality.as_dict()
    if not scan.group.read_only:
        scan.write_attr(QUALITY_FIGURE, values)
    folder = Path(model) if model is not None else None
    if folder is not None and (folder / SUMMARY).is_file() and _trained_on(folder, scan):
        write_json(folder / QUALITY, {**values, "scan": str(scan.path)})
    return quality


def _trained_on(folder: Path, scan: Scan) -> bool:
    from napari_asymseg.model.load import load_checkpoint

    try:
        trained = load_checkpoint(folder).get("scan")
    except (ClearError, OSError):  # an unreadable model: no figure in it, nothing else
        return False
    return trained is not None and Path(trained).resolve() == scan.path.resolve()
