"""The Train and Predict sections of the dock: one click, live progress, a cancel that acts.

The engine's generators run in napari's thread worker. Each event they yield arrives on the
GUI thread through the worker's ``yielded`` signal; Cancel asks the worker to stop, which it
does at the next yield (one training step), and the engine generator is then closed here so
its clean-up (memory, GPU cache) runs at once.
"""

from __future__ import annotations

import time
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QThreadPool, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt.engine import drain, validate_within, warm_up_torch
from napari_asymseg._qt.layers import show_preview, show_results
from napari_asymseg._qt.plots import SERIES, CurvesWidget, MarginHistogramWidget
from napari_asymseg._qt.progress import RunProgress
from napari_asymseg._qt.runs import RunsRow, conclude
from napari_asymseg._qt.sections import Section
from napari_asymseg._qt.train_settings import TrainSettings
from napari_asymseg.config import Config
from napari_asymseg.errors import ScanError, error_message
from napari_asymseg.evaluate.figure import Figure
from napari_asymseg.infer.predict import PredictionDone, WindowDone, predict, scan_figure
from napari_asymseg.train.budget import FLOOR_STEPS
from napari_asymseg.train.estimate import (
    FoldDone,
    QualityEstimate,
    as_planned,
    estimate_quality,
    folds_of,
)
from napari_asymseg.train.events import EpochEnd, Finished, Notice, Started, StepEnd
from napari_asymseg.train.loop import fit
from napari_asymseg.train.verdict import training_verdict

STOP_WAIT_MS = 60_000
"""How long closing a scan waits for its run to stop (one step, one validation)."""
FIGURE_AFTER_MS = 1500
"""The quality figure is computed again this long after the last saved edit or answer."""
TRAIN_TIP = (
    "train with the settings, predict the scan and show the quality figure, all within the "
    "minutes shown (a slower computer trains fewer steps and says so at once)"
)


class TrainSection(QWidget):
    """Choose a loss and regularisers, train with live curves, cancel, predict."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        warm_up_torch()
        self.worker: Any = None
        self.engine_gen: Any = None
        self.started_at = 0.0
        self.first_overlay_s: float | None = None
        self.pending_figure = False
        self.pending_estimate: tuple[Config, Any, Any] | None = None
        self.run_out: Any = None  # the run's folder, the model current when it started:
        self.run_before: Any = None  # what runs.verdict compares
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._model_form())
        self.settings = TrainSettings()
        self.settings_box = Section(
            "Settings: loss, regularisers, steps",
            self.settings,
            expanded=False,
            tip="the defaults train a good model; open to change the loss or the run",
        )
        layout.addWidget(self.settings_box)
        layout.addLayout(self._buttons())
        self.pbar = RunProgress()
        layout.addWidget(self.pbar)
        self.status = QLabel("Paint lesion and background on a slice or two, then Train.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.curves = CurvesWidget()
        self.diagnostics = MarginHistogramWidget()
        self.plots = QTabWidget()
        self.plots.addTab(self.curves, "Curves")
        self.plots.addTab(self.diagnostics, "Overfitting check")
        for tab, tip in enumerate(
            (
                "the scores, the error and the overfitting gap at each validation (hover a "
                "panel for what it shows)",
                "Li et al.'s diagnostic: how sure the model is of the painted lesion, on the "
                "training patches and on the held-out slices",
            )
        ):
            self.plots.setTabToolTip(tab, tip)
        self.history: list[dict[str, float]] = []  # this run's validations, for the verdict
        self.steps_planned = 0  # the run's steps (a budget plans them): how far it is
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.verdict.setToolTip(
            "what the curves say, by the rules in the user guide (What the curves say)"
        )
        layout.addWidget(self.verdict)
        self.quality = QLabel("")
        self.quality.setWordWrap(True)
        self.quality.setToolTip(Figure.meaning())
        layout.addWidget(self.quality)
        self.figure_timer = self._figure_timer()
        # the curves last: the verdict and the quality line stay in view under the buttons of
        # a 1000-pixel window; the curves are there to scroll to
        layout.addWidget(self.plots)

    def _model_form(self) -> QFormLayout:
        """The runs (which model is current) and whether to train a new one or fine-tune."""
        form = QFormLayout()
        self.runs_row = RunsRow(self.dock)
        form.addRow("runs", self.runs_row)
        self.mode = QComboBox()
        self.mode.addItems(["New model", "Fine-tune current model"])
        form.addRow("model", self.mode)
        return form

    def _buttons(self) -> QHBoxLayout:
        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.predict_button = QPushButton("Predict scan")
        self.predict_button.clicked.connect(self.predict)
        for b in (self.train_button, self.cancel_button, self.predict_button):
            buttons.addWidget(b)
        self.settings.steps.valueChanged.connect(self.name_train_button)
        self.settings.minutes.valueChanged.connect(self.name_train_button)
        self.name_train_button()
        return buttons

    def name_train_button(self, *_: object) -> None:
        """The run's size on the button; with a study open, how many scans it learns from."""
        size = self.settings.run_size()
        text, tip = self.dock.study_section.train_label(size) or (f"Train ({size})", TRAIN_TIP)
        self.train_button.setText(text)
        self.train_button.setToolTip(tip)

    def config(self) -> Config:
        """The run's configuration from the settings (a clear error for a bad patch)."""
        scan = self.dock.scan
        return self.settings.config(len(scan.classes) if scan is not None else 0)

    # -- training --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(
        self, *, fine_tune: bool | None = None, steps: int | None = None, lr: float | None = None
    ) -> None:
        """The one Train click: save annotations, train in a thread, show progress.

        ``fine_tune``, ``steps`` and ``lr`` override the widgets (the Review section's fast
        fine-tune).
        """
        scan = self.dock.scan
        if scan is None:
            show_error("open a scan first (Open scan…, Import image…, or File > Open Sample)")
            return
        if self.running or not self.dock.writable():
            return
        self.dock.save_now()
        init, before = None, self.dock.current_model()
        if fine_tune or (fine_tune is None and self.mode.currentIndex() == 1):
            init = before  # a fine-tune starts from the current run
            if init is None:
                show_error("no model to fine-tune yet: train a new model first")
                return
        try:
            cfg = self.config()
        except ScanError as exc:
            show_error(str(exc))
            return
        if lr is not None:
            cfg.train.lr = lr
        if steps is not None:
            cfg.train.steps, cfg.train.minutes = steps, 0.0  # exactly these steps
            validate_within(cfg)
        out = self.dock.new_model_dir()
        self.run_out, self.run_before = out, before
        self.curves.clear()
        self.history.clear()
        self.verdict.setText("")
        self.diagnostics.clear()
        self.first_overlay_s = None
        self.started_at = time.perf_counter()
        self.pending_figure = True  # the time from this click to the figure is shown
        self.quality.setText("")
        # the estimate runs once the prediction is on screen (_on_finished)
        self.pending_estimate = (cfg, init, out) if cfg.train.estimate else None
        # a new run scores the current model on its own held-out slices first (the verdict)
        scans = self.dock.study_section.to_train(scan)  # a study's annotated scans, or scan
        gen = fit(scans, cfg, out, init=init, compare=before if init is None else None)
        self._run(gen, total=cfg.train.steps or FLOOR_STEPS, desc="training")

    def estimate(self) -> None:
        """Estimate the new model's quality on unpainted slices (cross-validation)."""
        scan, pending, self.pending_estimate = self.dock.scan, self.pending_estimate, None
        if scan is None or pending is None or self.running:
            return
        cfg, init, out = pending
        folds = len(folds_of(scan.read_annotations()))
        self.quality.setText("estimating the quality on unpainted slices…")
        gen = estimate_quality(scan, cfg, init=init, model_dir=out)
        planned = as_planned(cfg, out)  # a planned run's folds train its steps
        steps = planned.train.steps if planned is not None else 0
        self._run(gen, total=folds * steps or None, desc="estimating quality")

    def predict(self) -> None:
        scan, model = self.dock.scan, self.dock.current_model()
        if scan is None or model is None:
            show_error("open a scan and train a model before predicting")
            return
        if self.running or not self.dock.writable():
            return
        self._run(predict(scan, model), total=scan.shape[0], desc="predicting")

    def _run(self, gen, *, total: int | None, desc: str) -> None:
        self.engine_gen = gen
        self.pbar.start(total, desc)
        worker: Any = create_worker(drain, gen, _ignore_errors=True)  # _on_error shows it
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_running(True)
        worker.start()

    def cancel(self) -> None:
        """Stop at the next step; the best model so far stays."""
        if self.worker is not None:
            self.status.setText("cancelling…")
            self.worker.quit()

    def stop(self, why: str) -> None:
        """Cancel the run and wait for its thread: its scan closes (another opens, napari
        quits). The engine's clean-up runs here, a training is concluded as after Cancel, and
        nothing follows it (no prediction, no estimate: the scan is no longer open)."""
        worker, gen, what = self.worker, self.engine_gen, self.pbar.what
        if worker is None:
            return
        worker.yielded.disconnect(self._on_event)
        worker.finished.disconnect(self._on_finished)
        self.pending_estimate = None
        worker.quit()  # acted on at the next step (training) or window (prediction)
        self.engine_gen, self.worker = None, None
        self.pbar.finish()
        self._set_running(False)
        show_warning(f"{what} stopped: {why}")
        pool = QThreadPool.globalInstance()
        if pool is not None and not pool.waitForDone(STOP_WAIT_MS):
            worker.finished.connect(gen.close)  # its clean-up once it ends
            return
        gen.close()
        if gen.__name__ == "fit" and self.run_out is not None:
            conclude(self.dock, self.run_out, self.run_before)

    def _set_running(self, running: bool) -> None:
        self.train_button.setEnabled(not running)
        self.predict_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.dock.study_section.next_patient.enable()  # one run at a time, whichever it is

    def _on_event(self, event) -> None:
        scan = self.dock.scan
        if isinstance(event, Started):
            self.status.setText(
                f"training on {event.device}, {event.parameters:,} parameters, patch "
                f"{'×'.join(map(str, event.patch_size))}"
            )
        elif isinstance(event, StepEnd):
            if self.pbar.what == "training" and self.pbar.total != event.steps:
                self.pbar.retotal(event.steps)  # a time budget planned the run
            self.pbar.step(f"loss {event.loss:.3f}")  # the estimate's folds add up
            self.steps_planned = event.steps
        elif isinstance(event, EpochEnd):
            self.curves.add(event.step, {k: getattr(event, k) for k in SERIES})
            keys = ("step", "dsc", "train_margin", "logit_shift")
            self.history.append({k: getattr(event, k) for k in keys})
            done = event.step / self.steps_planned if self.steps_planned else None
            self.verdict.setText(training_verdict(self.history, done))
            self.diagnostics.set(event.step, event.train_hist, event.val_hist, event.logit_shift)
            self.status.setText(event.line())
            if event.preview is not None and scan is not None:
                show_preview(self.dock.viewer, scan, event.preview, event.preview_z0)
                if self.first_overlay_s is None:
                    self.first_overlay_s = time.perf_counter() - self.started_at
        elif isinstance(event, Notice):
            if event.warn:  # a toast covers the canvas's corner: only what changes the run
                show_warning(event.message)
            self.status.setText(event.message)
        elif isinstance(event, Finished):
            held_out = event.best_dsc == event.best_dsc  # NaN: nothing was held out
            self.status.setText(
                f"done: best DSC {event.best_dsc:.3f} at step {event.best_step} "
                f"({event.seconds:.0f} s)"
                if held_out
                else f"done in {event.seconds:.0f} s (all painted slices trained on)"
            )
        elif isinstance(event, FoldDone):
            self.quality.setText(f"estimating the quality: fold {event.fold} of {event.folds} done")
        elif isinstance(event, QualityEstimate):
            self.quality.setText(f"cross-validation: {event.line()}")
        elif isinstance(event, WindowDone):
            self.pbar.set(event.done)
        elif isinstance(event, PredictionDone) and scan is not None:
            show_results(self.dock.viewer, scan)
            self.status.setText(f"prediction saved to {scan.path.name}: {event.summary()}")
            if event.figure is not None:
                self.show_figure(event.figure)
            self.dock.review_section.find_items()
            self.dock.lesion_table.load()
            self.dock.study_section.refresh()  # predicted, its figure

    def _on_error(self, exc: Exception) -> None:
        show_error(error_message(exc))

    def _on_finished(self) -> None:
        gen, self.engine_gen, self.worker = self.engine_gen, None, None
        if gen is not None:
            gen.close()  # runs the engine's clean-up now (a cancelled run was only paused)
        self.pbar.finish()
        self._set_running(False)
        name = getattr(gen, "__name__", "") if gen is not None else ""
        if (
            name == "fit"
            and self.run_out is not None
            and conclude(self.dock, self.run_out, self.run_before)
        ):
            self.predict()  # the run is current: its prediction, then the estimate
        elif name == "fit":
            self.pending_estimate = None
        elif name == "predict" and self.pending_estimate is not None:
            self.estimate()

    # -- the quality figure ---------------------------------------------------------------
    def _figure_timer(self) -> QTimer:
        """The figure again once painting or review answers settle."""
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(FIGURE_AFTER_MS)
        timer.timeout.connect(self.refresh_figure)
        return timer

    def show_figure(self, figure: Figure) -> None:
        """The figure on screen, with how long the last Train took from its click."""
        line = figure.line()
        if self.started_at and self.pending_figure:
            line += f" — Train to figure {time.perf_counter() - self.started_at:.0f} s"
            self.pending_figure = False
        self.quality.setText(line)
        self.quality.setToolTip(f"{Figure.meaning()}\n{figure.note}".strip())

    def figure_soon(self, *_: object) -> None:
        """Painting or a review answer was saved: the figure again once they settle."""
        if self.dock.scan is not None and self.dock.scan.result("prediction") is not None:
            self.figure_timer.start()

    def refresh_figure(self) -> None:
        """The figure of the stored prediction against the current paint, in a thread."""
        scan = self.dock.scan
        if scan is None or self.running:
            return
        worker: Any = create_worker(scan_figure, scan, _ignore_errors=True)
        worker.returned.connect(lambda f: self.show_figure(f) if self.dock.scan is scan else None)
        worker.start()
