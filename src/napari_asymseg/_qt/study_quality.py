"""The study's quality on the next patient, in the Study section: shown, and measured on a click.

The Train section's quality figure judges the open scan's prediction on its own unpainted
voxels; a study's model is meant for a patient nobody has painted. Leave-one-scan-out
(:func:`~napari_asymseg.train.loso.leave_one_scan_out`) measures that, and its figure is kept
in the study's ``models`` folder: the line here shows it whenever a study opens.

*Quality on next patient* runs it through the Train section's own worker, progress bar, status
line and Cancel (one run at a time, whichever it is): the events it shares with a training
(steps, notices) go to the Train section, the scans left out and the figure come here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from typing import Any

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from napari_asymseg.errors import ClearError, error_message
from napari_asymseg.study.study import Study
from napari_asymseg.train.events import StepEnd
from napari_asymseg.train.loso import (
    ScanLeftOut,
    StudyFigure,
    leave_one_scan_out,
    read_study_figure,
)

TITLE = "On the next patient"
NOT_MEASURED = "not measured yet (needs 2 annotated scans; one training each)"
MEANING = (
    "The study's quality on a patient its model has not seen: each annotated scan is predicted "
    "by a model trained on the other annotated scans and scored on its painted voxels, and the "
    "counts pool into one DSC, sensitivity and precision (leave-one-scan-out). It costs one "
    "training per annotated scan, and it errs low: each of its models learns from one scan "
    "fewer than the study's.\nNot the Train section's quality figure, which judges the open "
    "scan's prediction on that scan's own unpainted voxels."
)
BUTTON_TIP = (
    "measure the quality on the next patient: one training per annotated scan, each with the "
    "Train section's settings (its steps or minutes), each scored on the scan it left out; "
    "the Train section's Cancel stops it"
)
READY_WAIT_S = 5.0
"""How long the run waits for this section to hear its events before it starts anyway."""


def figure_text(figure: StudyFigure | None) -> str:
    """The line under the study's summary: the stored figure, or that there is none yet."""
    if figure is None:
        return f"<b>{TITLE}</b>: {NOT_MEASURED}"
    line = figure.line()
    if math.isnan(figure.dsc):
        return f"<b>{TITLE}</b>: unknown ({figure.note})"
    return f"<b>{TITLE}</b>: {line.removeprefix('on the next patient: ')}"


def left_out_text(event: ScanLeftOut) -> str:
    """The Train section's status line after each fold."""
    dsc = "unknown" if math.isnan(event.dsc) else f"{event.dsc:.2f}"
    return f"scan {event.index} of {event.total} left out: DSC {dsc} ({event.name})"


def with_figure(
    gen: Generator[object, None, StudyFigure], ready: threading.Event
) -> Generator[object, None, None]:
    """``gen``'s events, then the figure it returns as one more event (a worker passes on only
    what is yielded). Waits until ``ready`` (the GUI hears the run), so no event goes unheard."""
    ready.wait(READY_WAIT_S)
    figure = yield from gen
    yield figure


class NextPatient(QWidget):
    """The study's figure on an unseen patient, and the button that measures it."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        self.study: Study | None = None
        self.worker: Any = None  # the run under way, if it is this section's
        self.folds = 0  # the run's scans to leave out (for a planned run's progress total)
        self.measured = False  # the run under way gave its figure
        self.measuring: Study | None = None  # the study the run under way measures
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.line = QLabel(figure_text(None))
        self.line.setWordWrap(True)
        self.line.setToolTip(MEANING)
        row.addWidget(self.line, 1)
        self.button = QPushButton("Quality on next patient")
        self.button.setToolTip(BUTTON_TIP)
        self.button.clicked.connect(self.measure)
        row.addWidget(self.button)
        self.enable()

    def show_study(self, study: Study | None) -> None:
        """The figure kept in ``study`` (read from its ``models`` folder: one small file)."""
        self.study = study
        figure = None
        if study is not None:
            try:
                figure = read_study_figure(study.models)
            except (ClearError, OSError, ValueError, TypeError) as exc:  # a damaged file
                show_error(f"{study.path.name}'s figure on the next patient: {error_message(exc)}")
        self.line.setText(figure_text(figure))
        self.enable()

    def enable(self) -> None:
        """The button works with a study open and nothing running in the Train section."""
        train = getattr(self.dock, "train_section", None)  # made after the Study section
        running = train is not None and train.running
        self.button.setEnabled(self.study is not None and not running)

    def measure(self) -> None:
        """Run leave-one-scan-out over the study's annotated scans in the Train section's
        worker; the line shows the new figure when it ends."""
        study, train = self.study, self.dock.train_section
        if study is None:
            show_info("open a study first (Open study…)")
            return
        if train.running:
            return
        try:
            cfg = train.settings.config(len(study.classes or ()))
        except (ClearError, ValueError) as exc:  # a bad patch, a setting the schema refuses
            show_error(error_message(exc))
            return
        self.folds = self.dock.study_section.annotated_count()  # the open scan's paint saved
        self.measured, self.measuring = False, study
        steps = cfg.train.steps * self.folds
        ready = threading.Event()
        gen = with_figure(leave_one_scan_out(study.path, cfg), ready)
        train._run(gen, total=steps or None, desc="quality on the next patient")
        self.worker = train.worker
        self.worker.yielded.connect(self._on_event)
        self.worker.finished.connect(self._finished)
        ready.set()
        self.line.setText(f"<b>{TITLE}</b>: measuring (one training per annotated scan)…")

    def _on_event(self, event: object) -> None:
        train = self.dock.train_section
        if isinstance(event, StepEnd) and train.pbar.total is None and self.folds:
            train.pbar.retotal(event.steps * self.folds)  # a planned run: its first fold's steps
        elif isinstance(event, ScanLeftOut):
            train.status.setText(left_out_text(event))
        elif isinstance(event, StudyFigure):
            train.status.setText(
                f"leave-one-scan-out done in {event.seconds:.0f} s: the figure on the next "
                "patient is in the Study section"
            )
            if self.measuring is self.study:  # no other study opened meanwhile
                self.line.setText(figure_text(event))
                self.measured = True

    def _finished(self) -> None:
        self.worker, self.measuring = None, None
        if not self.measured:  # cancelled or failed: the figure kept before
            self.show_study(self.study)
