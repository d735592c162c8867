"""The asymseg dock widget: scan, annotate, train and predict, review, lesions sections.

Each section is a small widget of its own (the brush in ``annotate.py``, training in
``train.py``, the heatmap and flags in ``review.py``, the lesion table in ``lesion_table.py``,
masks and model bundles in ``export.py``), so this file keeps what spans them: one scan open at
a time, saved and released before another opens or napari closes. The sections sit in a
scroll area: the dock fits a laptop screen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QThreadPool, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QMainWindow,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt import heap
from napari_asymseg._qt.annotate import AnnotateSection
from napari_asymseg._qt.autosave import AnnotationAutosave
from napari_asymseg._qt.export import ExportSection
from napari_asymseg._qt.layers import prediction_layer, probability_layer, risk_layer
from napari_asymseg._qt.lesion_table import LesionTable
from napari_asymseg._qt.overlays import OverlayToggles
from napari_asymseg._qt.review import ReviewSection
from napari_asymseg._qt.scan_section import ScanSection
from napari_asymseg._qt.sections import Section
from napari_asymseg._qt.study import StudySection
from napari_asymseg._qt.train import TrainSection
from napari_asymseg.errors import ClearError, ScanError, error_message
from napari_asymseg.store.annotations import BACKGROUND
from napari_asymseg.store.lock import ScanLock
from napari_asymseg.store.scan import Scan
from napari_asymseg.train import runs


def _role(layer) -> tuple[str | None, str | None]:
    meta = getattr(layer, "metadata", {}).get("asymseg") or {}
    return meta.get("scan"), meta.get("role")


def _among(layer, layers) -> bool:
    return any(layer is other for other in layers)


WORKERS_WAIT_MS = 30_000
"""How long quitting waits for the dock's threads (a ranking, a lesion count, an import)."""


class AsymsegDock(QWidget):
    """The plugin's dock: one scan at a time, its annotations saved automatically."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.scan: Scan | None = None
        self.annotations_layer: Any = None
        self.autosave: AnnotationAutosave | None = None
        self.lock: ScanLock | None = None  # held while a scan is open here: one writer per scan
        self.read_only_reason = ""
        self.scan_layers: list = []  # the open scan's layers, taken out when another opens
        self.closed = False  # napari closed this dock's window: nothing opens here any more
        content = QWidget()
        layout = QVBoxLayout(content)
        self.study_section = StudySection(self)  # before Train: its button counts scans
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
            ("Study", self.study_section, False),
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
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

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
        self._hear_window_close()
        QTimer.singleShot(0, self._fit_width)  # napari's style sheet applies on showing

    # -- scans ---------------------------------------------------------------------------------
    def open_scan(self, path: str | Path) -> None:
        """Open a scan in the viewer (through the plugin's reader); the scan open before is
        saved and its layers leave the viewer."""
        if self.closed:  # an import that ended as napari closed
            return
        try:
            Scan.open(path, mode="r")  # validate first: a clear message instead of a traceback
            self.viewer.open(str(path), plugin="napari-asymseg")
        except (ClearError, OSError) as exc:
            show_error(error_message(exc))

    def open_study(self, path: str | Path):
        """Open a study (a folder of scans that train one model) in the Study section; its
        list fills once read (in a thread). Returns the study, or None (a notification)."""
        return self.study_section.open(path)

    def import_image(
        self, path: str | Path, out: str | Path | None = None, series: str | None = None
    ) -> Path | None:
        """Import an image file or a DICOM folder next to itself as ``NAME.zarr`` and open it
        (see :meth:`ScanSection.import_image`)."""
        return self.scan_section.import_image(path, out, series)

    def _on_inserted(self, event) -> None:
        layer = event.value
        self._attach(layer)
        scan, known = self.scan, self.scan_layers
        if scan is not None and _role(layer)[0] == str(scan.path) and not _among(layer, known):
            known.append(layer)  # its results, previews, review points
        self.overlays.refresh()

    def _attach(self, layer) -> None:
        path, role = _role(layer)
        if role != "annotations" or path is None or self.closed:
            return
        try:
            scan = Scan.open(path)
        except ScanError as exc:
            show_error(str(exc))
            return
        again = self.scan is not None and self.scan.path == scan.path
        closed = self._close_scan(f"{scan.path.name} was opened")
        if again:  # the reader read the scan before the closed layer's last save
            self._reread(layer, scan)
        self.scan, self.annotations_layer = scan, layer
        # the reader's layers so far (image, annotations); the same scan opened again has
        # the same path: its old layers are told apart by being the closed scan's
        self.scan_layers = [
            lay for lay in self.viewer.layers if _role(lay)[0] == path and not _among(lay, closed)
        ]
        self._take_lock(scan, layer)
        self._hear_window_close()
        self.scan_section.refresh()
        self.annotate_section.refresh()
        self.train_section.runs_row.refresh()
        self.study_section.scan_opened(scan)
        # the scan's texts and class names may widen a section; measured once laid out
        QTimer.singleShot(0, self._fit_width)
        # after the reader has added all its layers (this runs inside napari's insert event,
        # where removing layers would upset napari's own handlers)
        QTimer.singleShot(0, lambda: self._take_out(closed))
        QTimer.singleShot(0, lambda: self._ensure_prediction_layer(scan))

    @staticmethod
    def _reread(layer, scan: Scan) -> None:
        saved = scan.read_annotations()
        if not np.array_equal(saved, np.asarray(layer.data)):
            layer.data = saved

    def _take_lock(self, scan: Scan, layer) -> None:
        """Write this scan, autosaving ``layer``, or, if another program writes it, only show it."""
        lock = ScanLock(scan.path, f"napari (asymseg dock, pid {os.getpid()})")
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
            self.autosave.saved.connect(self.train_section.figure_soon)
            self.autosave.saved.connect(self.study_section.saved)
            self.autosave.failed.connect(show_error)
            self.autosave.recovered.connect(show_info)

    def _close_scan(self, why: str) -> list:
        """Done with the open scan (another opens, its annotations layer goes, napari quits):
        its run stopped, its last painting saved, and only then its lock freed.

        Returns its layers, for the caller to take out of the viewer. An annotations layer
        whose last save failed stays there, read-only, and a notification says where.
        """
        self.train_section.stop(why)
        layer, unsaved = self.annotations_layer, ""
        if self.autosave is not None:
            try:
                self.autosave.flush(force=True)
            except Exception as exc:  # noqa: BLE001 - said below, the painting kept
                unsaved = error_message(exc)
            self.autosave.stop()
        self.autosave, self.annotations_layer = None, None
        self._release()
        layers = [lay for lay in self.scan_layers if lay in self.viewer.layers]
        self.scan_layers = []
        if layer is not None:
            layer.editable = False  # no longer saved: painting on it would be lost
            if unsaved and layer in self.viewer.layers:
                layer.name = f"{layer.name} (not saved)"
                layers = [lay for lay in layers if lay is not layer]
                show_error(
                    f"annotations not saved: {unsaved}; they stay in the read-only layer "
                    f"'{layer.name}' (File > Save Selected Layers writes them to a file)"
                )
            elif unsaved:  # the layer was deleted, or the viewer closed: nothing holds them
                show_error(f"annotations not saved: {unsaved}; the last painting is lost")
        return layers

    def _take_out(self, layers: list) -> None:
        """Remove a closed scan's layers from the viewer (their painting is saved)."""
        for layer in layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        if layers:
            heap.release()  # what the closed scan held is collected before the next freeze

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
            # the scan is closed (its layer deleted, or the viewer closing): its run stops
            self._close_scan(f"{event.value.name} was closed")
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
        """Write pending annotation edits immediately; returns the number of slices saved.

        A failure is a notification; the edits stay pending and the autosave retries them.
        """
        if self.autosave is None:
            return 0
        return self.autosave.save(force=True, tell=True) or 0

    # -- quitting ------------------------------------------------------------------------------
    def _hear_window_close(self) -> None:
        """napari never calls this widget's ``closeEvent``: hear its window close instead (and
        the application quit, connected at the start), so that the runs stop and the painting
        is saved. Installed once docked (a scan opens, the dock shows): the window is the
        nearest main window above, whether the dock is docked or floating."""
        window = self._main_window()
        if window is not None:
            window.installEventFilter(self)  # installed again: still once

    def _main_window(self) -> QMainWindow | None:
        # looked up, not kept: a reference would keep the closed window alive with this widget
        widget = self.parentWidget()
        while widget is not None and not isinstance(widget, QMainWindow):
            widget = widget.parentWidget()
        return widget

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        window = self._main_window() if event.type() == QEvent.Type.Close else None
        if window is not None and watched is window and not self.closed:
            window.event(event)  # napari's closeEvent first: it may ask, and the user say no
            if event.isAccepted():
                self.shutdown()
            return True
        return super().eventFilter(watched, event)

    def shutdown(self) -> None:
        """napari closes: the run cancelled and awaited, the painting saved, the lock freed,
        and the dock's other threads (ranking, lesion count, import, export) awaited."""
        if self.closed:
            return
        self.closed = True
        self._close_scan("napari was closed")
        pool = QThreadPool.globalInstance()
        if pool is not None:
            pool.waitForDone(WORKERS_WAIT_MS)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.shutdown()
        super().closeEvent(event)
