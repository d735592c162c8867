"""The asymseg dock widget: scan, annotate, train and predict, review, lesions sections.

Each section is a small widget of its own (training lives in ``train.py``, the heatmap and
flags in ``review.py``, the lesion table in ``lesion_table.py``, masks and model bundles in
``export.py``), so this file stays a table of contents. The sections sit in a scroll area:
the dock fits a laptop screen.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt import heap
from napari_asymseg._qt.autosave import AnnotationAutosave
from napari_asymseg._qt.export import ExportSection
from napari_asymseg._qt.layers import prediction_layer, probability_layer, risk_layer
from napari_asymseg._qt.lesion_table import LesionTable
from napari_asymseg._qt.overlays import OverlayToggles
from napari_asymseg._qt.review import ReviewSection
from napari_asymseg._qt.scan_section import ScanSection
from napari_asymseg._qt.sections import Section
from napari_asymseg._qt.train import TrainSection
from napari_asymseg.errors import ClearError, ScanError, error_message
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED, code_of_class
from napari_asymseg.store.lock import ScanLock
from napari_asymseg.store.scan import Scan
from napari_asymseg.train import runs


def _role(layer) -> tuple[str | None, str | None]:
    meta = getattr(layer, "metadata", {}).get("asymseg") or {}
    return meta.get("scan"), meta.get("role")


REST_KEY = "Shift-B"
"""The viewer's key for "rest of slice is background" (B alone is napari's preserve labels)."""


class AnnotateSection(QWidget):
    """Pick the class to paint; declare the rest of the current slice background."""

    def __init__(self, dock: AsymsegDock) -> None:
        super().__init__()
        self.dock = dock
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        layout = QHBoxLayout()
        outer.addLayout(layout)
        self.label = QComboBox()
        self.label.setToolTip("the class the brush paints (annotation value in brackets)")
        self.label.currentIndexChanged.connect(self._pick)
        self.rest_button = QPushButton("Rest of slice is background")
        self.rest_button.setToolTip(
            "mark every unannotated voxel of the current slice as background "
            "(Shift+B; undo: Ctrl+Z)"
        )
        self.rest_button.clicked.connect(self.rest_of_slice_background)
        layout.addWidget(self.label)
        layout.addWidget(self.rest_button)
        keys = QLabel(
            "Keys: P paint · E erase · [ ] brush size · Shift+B rest of slice is background · "
            "Ctrl+Z undo"
        )
        keys.setWordWrap(True)
        keys.setToolTip("napari's labels keys and the dock's (the canvas must have the focus)")
        outer.addWidget(keys)
        dock.viewer.bind_key(
            REST_KEY, lambda _viewer: self.rest_of_slice_background(), overwrite=True
        )

    def refresh(self) -> None:
        scan = self.dock.scan
        self.label.blockSignals(True)
        self.label.clear()
        if scan is not None:
            self.label.addItem(f"background [{BACKGROUND}]", BACKGROUND)
            for k, name in enumerate(scan.classes, start=1):
                self.label.addItem(f"{name} [{code_of_class(k)}]", code_of_class(k))
            self.label.setCurrentIndex(1)
        self.label.blockSignals(False)
        self._pick()

    def _pick(self, *_args) -> None:
        layer = self.dock.annotations_layer
        value = self.label.currentData()
        if layer is not None and value is not None:
            layer.selected_label = int(value)

    def rest_of_slice_background(self) -> int:
        """Fill the unannotated voxels of the displayed slice with background (undoable)."""
        layer = self.dock.annotations_layer
        if layer is None:
            show_error("open a scan first")
            return 0
        z = int(self.dock.viewer.dims.current_step[0])
        idx = np.nonzero(np.asarray(layer.data[z]) == NOT_ANNOTATED)
        if idx[0].size == 0:
            return 0
        coords = (np.full(idx[0].shape, z), *idx)
        layer.data_setitem(coords, BACKGROUND)  # through napari's history, so Ctrl+Z undoes it
        return int(idx[0].size)


class AsymsegDock(QWidget):
    """The plugin's dock: one scan at a time, its annotations saved automatically."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.scan: Scan | None = None
        self.annotations_layer = None
        self.autosave: AnnotationAutosave | None = None
        self.lock: ScanLock | None = None  # held while a scan is open here: one writer per scan
        self.read_only_reason = ""
        content = QWidget()
        layout = QVBoxLayout(content)
        self.scan_section = ScanSection(self)
        self.annotate_section = AnnotateSection(self)
        self.train_section = TrainSection(self)
        self.review_section = ReviewSection(self)
        self.lesion_table = LesionTable(self)
        self.export_section = ExportSection(self)
        self.overlays = OverlayToggles(self)
        layout.addWidget(self.overlays)
        self.sections: dict[str, Section] = {}
        for title, section, expanded in (
            ("Scan", self.scan_section, True),
            ("Annotate", self.annotate_section, True),
            ("Train and predict", self.train_section, True),
            ("Review", self.review_section, True),
            ("Lesions", self.lesion_table, True),
            ("Export", self.export_section, False),
        ):
            self.sections[title] = Section(title, section, expanded=expanded)
            layout.addWidget(self.sections[title])
        layout.addStretch(1)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setWidget(content)
        for combo in content.findChildren(QComboBox):
            # long entries (class or loss names) elide instead of widening the whole dock
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(8)
        self._fit_width()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll_area)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        for layer in list(self.viewer.layers):
            self._attach(layer)

    def _fit_width(self) -> None:
        """As wide as the widest section needs, so that nothing is cut off (napari's dock area
        follows); a horizontal scroll bar appears only if the user makes the dock narrower."""
        content = self.scroll_area.widget()
        if content is None:
            return
        bar = self.scroll_area.verticalScrollBar()
        extra = (bar.sizeHint().width() if bar is not None else 16) + 4
        self.setMinimumWidth(min(content.minimumSizeHint().width() + extra, 520))

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        QTimer.singleShot(0, self._fit_width)  # napari's style sheet applies on showing

    # -- scans ---------------------------------------------------------------------------------
    def open_scan(self, path: str | Path) -> None:
        """Open a scan in the viewer (through the plugin's reader)."""
        try:
            Scan.open(path, mode="r")  # validate first: a clear message instead of a traceback
            self.viewer.open(str(path), plugin="napari-asymseg")
        except (ClearError, OSError) as exc:
            show_error(error_message(exc))

    def import_image(
        self, path: str | Path, out: str | Path | None = None, series: str | None = None
    ) -> Path | None:
        """Import an image file or a DICOM folder next to itself as ``NAME.zarr`` and open it
        (see :meth:`ScanSection.import_image`)."""
        return self.scan_section.import_image(path, out, series)

    def _on_inserted(self, event) -> None:
        self._attach(event.value)
        self.overlays.refresh()

    def _attach(self, layer) -> None:
        path, role = _role(layer)
        if role != "annotations" or path is None:
            return
        try:
            scan = Scan.open(path)
        except ScanError as exc:
            show_error(str(exc))
            return
        self.save_now()
        if self.autosave is not None:
            self.autosave.stop()
        self._release()
        self.scan, self.annotations_layer = scan, layer
        lock = ScanLock(path, f"napari (asymseg dock, pid {os.getpid()})")
        try:
            self.lock = lock.acquire()
        except ScanError as exc:  # ScanBusy, or a read-only folder
            # another viewer or the CLI writes this scan: look, but never write over it
            layer.editable = False
            self.read_only_reason = str(exc)
            show_warning(f"{exc}. It is open read-only here")
        else:
            self.autosave = AnnotationAutosave(layer, scan)
            self.autosave.saved.connect(lambda _n: self.scan_section.refresh())
            self.autosave.failed.connect(show_error)
        self.scan_section.refresh()
        self.annotate_section.refresh()
        self.train_section.runs_row.refresh()
        # the scan's texts and class names may widen a section; measured once laid out
        QTimer.singleShot(0, self._fit_width)
        # after the reader has added all its layers (this runs inside napari's insert event)
        QTimer.singleShot(0, lambda: self._ensure_prediction_layer(scan))

    def _ensure_prediction_layer(self, scan: Scan) -> None:
        if self.scan is scan:
            prediction_layer(self.viewer, scan)
            probability_layer(self.viewer, scan)
            risk_layer(self.viewer, scan)
            self.review_section.load()  # its points layer goes on top
            self.lesion_table.load()  # a stored prediction's lesions, counted in a thread
            self.overlays.refresh()
            self.viewer.layers.selection.active = self.annotations_layer
            self._show_paint(scan)
            heap.settle()  # no full collection stalls the answers to come

    def _show_paint(self, scan: Scan) -> None:
        """Open on the slice with the most painted lesion (an example of what to paint), the
        annotations in paint mode with the lesion class on the brush."""
        layer = self.annotations_layer
        if layer is None:
            return
        if self.viewer.dims.ndim == 3:
            self.viewer.dims.axis_labels = ("z", "y", "x")  # napari's default reads "-3"
        lesion = (np.asarray(layer.data) > BACKGROUND).sum(axis=(1, 2))
        if lesion.any() and self.viewer.dims.ndisplay == 2:
            self.viewer.dims.set_point(0, int(lesion.argmax()) * scan.spacing[0])
        if layer.editable:
            layer.mode = "paint"

    def _on_removed(self, event) -> None:
        self.overlays.refresh()
        if event.value is self.annotations_layer:
            self.save_now()
            if self.autosave is not None:
                self.autosave.stop()
            self.autosave, self.annotations_layer = None, None
            self._release()
            heap.release()

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def read_only(self) -> bool:
        """A scan is open, but another program holds its lock."""
        return self.scan is not None and self.lock is None

    def writable(self) -> bool:
        """Whether the open scan may be written; says why not (a notification) otherwise."""
        if self.read_only:
            assert self.scan is not None
            show_error(f"{self.scan.path.name} is open read-only: {self.read_only_reason}")
            return False
        return True

    def current_model(self) -> Path | None:
        """The scan's current model (its run folder), if any: see ``train.runs``."""
        return runs.current_model(self.scan.path) if self.scan is not None else None

    def new_model_dir(self) -> Path:
        """A fresh folder for the next training run: earlier models are never overwritten."""
        assert self.scan is not None
        return runs.new_model_dir(self.scan.path)

    def save_now(self) -> int:
        """Write pending annotation edits immediately; returns the number of slices saved."""
        if self.autosave is None:
            return 0
        try:
            return self.autosave.flush(force=True)
        except (ClearError, OSError) as exc:
            show_error(f"could not save annotations: {error_message(exc)}")
            return 0

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.train_section.cancel()
        # ranking takes seconds, counting the lesions a second or two: let them end
        if any(w is not None for w in (self.review_section.worker, self.lesion_table.worker)):
            from qtpy.QtCore import QThreadPool

            pool = QThreadPool.globalInstance()
            if pool is not None:
                pool.waitForDone(10_000)
        self.save_now()
        self._release()
        super().closeEvent(event)
