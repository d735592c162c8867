"""The Study section of the dock: a folder of many scans that train one model.

Open a study, see each scan's status (painted and lesion slices, review answers and items left,
done, predicted, its quality figure), open a scan from the list, open the next scan worth
annotating, mark a scan done. A scan opens through the dock's own path (:meth:`open_scan`), so
it behaves exactly as one opened by hand; a scan of a study opened by hand opens its study here.

The status of every scan is read in a thread, never on the GUI thread: a 200-scan study opens
without the viewer stalling, and the list fills when the status arrives. It follows the work:
the open scan's row after its painting is saved, every row after a prediction.

With a study open and the open scan in it, Train learns from every annotated scan of the study
(:meth:`StudySection.to_train`); its models live in the study's ``models`` folder. Under the
summary, the study's quality on the next patient (leave-one-scan-out) is shown and measured
(:mod:`napari_asymseg._qt.study_quality`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_asymseg._qt.study_quality import NextPatient
from napari_asymseg._qt.study_table import StudyTable
from napari_asymseg.errors import ClearError, error_message
from napari_asymseg.store.scan import Scan
from napari_asymseg.study.study import ScanStatus, Study, study_of

SAVED_MS = 1000
"""The open scan's row is read again this long after its painting was last saved."""
ALL = ""
"""A read of every scan (a refresh of one scan names it)."""
NO_STUDY = (
    "No study open. A study is a folder of scans that train one model "
    "(asymseg study init DIR, asymseg study add DIR SCANS…); Open study… lists its scans."
)


class StudySection(QWidget):
    """Open a study; list its scans with their status; open one, the next, mark one done."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        self.study: Study | None = None
        self.statuses: list[ScanStatus] | None = None  # as last read; None until read
        self.worker: Any = None  # the status read under way
        self.queued: set[str] = set()  # reads asked for while one ran (ALL: every scan)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._buttons())
        self.info = QLabel(NO_STUDY)
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        self.next_patient = NextPatient(dock)  # the study's figure on an unseen patient
        self.next_patient.setVisible(False)
        layout.addWidget(self.next_patient)
        self.table = StudyTable()
        self.table.setVisible(False)
        self.table.cellDoubleClicked.connect(self.open_row)
        self.table.itemSelectionChanged.connect(self._selected)
        layout.addWidget(self.table)
        self.saved_timer = QTimer(self)
        self.saved_timer.setSingleShot(True)
        self.saved_timer.setInterval(SAVED_MS)
        self.saved_timer.timeout.connect(self._open_scan_again)

    def _buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.open_button = QPushButton("Open study…")
        self.open_button.setToolTip("Open a study: a folder made by asymseg study init")
        self.open_button.clicked.connect(self._choose_study)
        self.next_button = QPushButton("Next scan")
        self.next_button.setToolTip(
            "open the first scan not yet annotated (lesion and background painted), else the "
            "one whose prediction has the lowest quality figure; scans marked done are skipped"
        )
        self.next_button.clicked.connect(self.next_scan)
        self.done_button = QPushButton("Mark done")
        self.done_button.setCheckable(True)
        self.done_button.setToolTip(
            "the selected scan is done: Next scan skips it (click again to undo)"
        )
        self.done_button.toggled.connect(self.mark_done)
        for button in (self.open_button, self.next_button, self.done_button):
            row.addWidget(button)
        self._enable()
        return row

    # -- opening ---------------------------------------------------------------------------
    def _choose_study(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open study (its folder)")
        if path:
            self.open(path)

    def open(self, path: str | Path) -> Study | None:
        """Open the study at ``path`` here: its list fills once its status is read (in a
        thread). Returns it, or None (a notification says why)."""
        try:
            study = Study.open(path)
            names = study.names
        except (ClearError, OSError) as exc:
            show_error(error_message(exc))
            return None
        self.study, self.statuses, self.queued = study, None, set()
        self.table.setRowCount(0)
        self.table.setVisible(True)
        self.next_patient.show_study(study)
        self.next_patient.setVisible(True)
        self.info.setText(f"<b>{study.path.name}</b>: {len(names)} scans; reading their status…")
        self.dock.sections["Study"].set_expanded(True)
        self._enable()
        self.refresh()
        self.dock.train_section.name_train_button()
        return study

    def scan_opened(self, scan: Scan) -> None:
        """A scan opened in the dock: its study opens here if it lies in one (and another or
        none is open); its row is selected."""
        if self.name_of(scan) is None:
            try:
                found = study_of(scan.path)
            except (ClearError, OSError) as exc:  # a damaged study.json: the scan still opens
                show_error(error_message(exc))
                found = None
            if found is not None:
                self.open(found.path)
        self._select_open_scan()
        self.dock.train_section.name_train_button()

    def name_of(self, scan: Scan | None) -> str | None:
        """The name of ``scan`` in the open study; None if no study is open or it is not in it."""
        if self.study is None or scan is None:
            return None
        name = scan.path.name.removesuffix(".zarr")
        try:
            inside = self.study.scan_path(name).resolve() == scan.path.resolve()
        except (ClearError, OSError):
            return None
        return name if inside else None

    # -- the status, read in a thread ------------------------------------------------------
    def refresh(self, name: str = ALL) -> None:
        """Read the status of every scan (or of ``name``) again, in a thread; the list follows
        when it arrives. A read asked for while one runs waits for it."""
        study = self.study
        if study is None:
            return
        if self.worker is not None:
            self.queued.add(name)
            return
        worker: Any = create_worker(study.status, name or None, _ignore_errors=True)
        worker.returned.connect(lambda found: self._read(study, name, found))
        worker.errored.connect(lambda exc: show_error(error_message(exc)))
        worker.finished.connect(self._read_done)
        self.worker = worker
        worker.start()

    def _read_done(self) -> None:
        self.worker = None
        queued, self.queued = self.queued, set()
        if ALL in queued:
            self.refresh()
        else:
            for name in sorted(queued):
                self.refresh(name)

    def _read(self, study: Study, name: str, found: list[ScanStatus]) -> None:
        if study is not self.study:
            return  # another study opened meanwhile
        if name == ALL:
            self.statuses = list(found)
            self._fill()
        elif self.statuses is not None:
            for status in found:
                self._replace(status)
            self._summary()
        self.dock.train_section.name_train_button()

    def _replace(self, status: ScanStatus) -> None:
        assert self.statuses is not None
        for row, old in enumerate(self.statuses):
            if old.name == status.name:
                self.statuses[row] = status
                bold = self.name_of(self.dock.scan) == status.name
                self.table.show_row(row, status, bold=bold)
                if row == self.table.currentRow():
                    self._selected()  # the Mark done button shows its state
                return

    def saved(self, _slices: int = 0) -> None:
        """The open scan's painting was saved: its row is read again once painting pauses."""
        if self.name_of(self.dock.scan) is not None:
            self.saved_timer.start()

    def _open_scan_again(self) -> None:
        name = self.name_of(self.dock.scan)
        if name is not None:
            self.refresh(name)

    # -- the list --------------------------------------------------------------------------
    def _fill(self) -> None:
        self.table.show_all(self.statuses or [], self.name_of(self.dock.scan))
        self._summary()
        self._select_open_scan()
        self._enable()

    def _summary(self) -> None:
        statuses, study = self.statuses or [], self.study
        if study is None:
            return
        annotated = sum(s.annotated and not s.missing for s in statuses)
        done = sum(s.done for s in statuses)
        self.info.setText(
            f"<b>{study.path.name}</b>: {len(statuses)} scans, {annotated} annotated "
            f"(lesion and background painted: Train learns from them), {done} done"
        )

    def _select_open_scan(self) -> None:
        names = [status.name for status in self.statuses or []]
        row = self.table.embolden(names, self.name_of(self.dock.scan))
        if row is not None:
            self.table.selectRow(row)

    def selected(self) -> ScanStatus | None:
        """The scan selected in the list, if any."""
        row = self.table.currentRow()
        statuses = self.statuses or []
        return statuses[row] if 0 <= row < len(statuses) else None

    def _selected(self) -> None:
        status = self.selected()
        self.done_button.blockSignals(True)  # showing the row's state is no click
        self.done_button.setChecked(bool(status and status.done))
        self.done_button.blockSignals(False)
        self._enable()

    def _enable(self) -> None:
        read = self.study is not None and self.statuses is not None
        self.next_button.setEnabled(read)
        self.done_button.setEnabled(read and self.selected() is not None)

    # -- the buttons -----------------------------------------------------------------------
    def open_row(self, row: int, _column: int = 0) -> None:
        """Open the scan of ``row`` in the viewer (double-click), as if opened by hand."""
        statuses = self.statuses or []
        if 0 <= row < len(statuses):
            self.dock.open_scan(statuses[row].path)

    def next_scan(self) -> Path | None:
        """Open the next scan worth annotating (``Study.next_to_annotate``); returns its path,
        or None (a notification says why)."""
        study = self.study
        if study is None or self.statuses is None:
            show_info("open a study and wait for its list first")
            return None
        self._read_open_scan_now()  # its painting since the last read counts
        found = study.next_to_annotate(self.statuses)
        if found is None:
            show_info(
                f"every scan of {study.path.name} is annotated and predicted, or marked done: "
                "Train, then Predict the scans, or add more scans"
            )
            return None
        if self.name_of(self.dock.scan) != found.name:
            self.dock.open_scan(found.path)
        return found.path

    def _read_open_scan_now(self) -> None:
        """The open scan's status, saved and read at once (one scan: quick)."""
        name = self.name_of(self.dock.scan)
        if name is None or self.study is None or self.statuses is None:
            return
        self.dock.save_now()
        try:
            for status in self.study.status(name):
                self._replace(status)
        except (ClearError, OSError) as exc:
            show_error(error_message(exc))

    def mark_done(self, done: bool) -> None:
        """Mark the selected scan done (or not): written to the study at once."""
        status = self.selected()
        if self.study is None or status is None:
            return
        try:
            self.study.set_done(status.name, done)
        except (ClearError, OSError) as exc:
            show_error(error_message(exc))
            self._selected()  # the button shows the scan's state again
            return
        self._replace(dataclasses.replace(status, done=done))
        self._summary()

    # -- training --------------------------------------------------------------------------
    def to_train(self, scan: Scan) -> Scan | list[Path]:
        """What Train learns from: every annotated scan of the study when ``scan`` lies in the
        open study, else ``scan`` alone (as without studies). A study none of whose scans is
        annotated yet gives ``scan``: training it says what to paint."""
        if self.name_of(scan) is None or self.study is None:
            return scan
        if self.statuses is None:  # not read yet: read now (Train was clicked)
            paths = self.study.annotated()
        else:
            self._read_open_scan_now()
            paths = [s.path for s in self.statuses if s.annotated and not s.missing]
        return paths or scan

    def annotated_count(self) -> int:
        """How many scans of the open study are annotated (the open scan's painting saved and
        read now); 0 until the list is read."""
        self._read_open_scan_now()
        return sum(s.annotated and not s.missing for s in self.statuses or [])

    def training_scans(self) -> int | None:
        """How many scans Train learns from when a study applies (as last read), else None."""
        if self.name_of(self.dock.scan) is None or self.statuses is None:
            return None
        return sum(s.annotated and not s.missing for s in self.statuses)

    def train_label(self, size: str) -> tuple[str, str] | None:
        """The Train button's text and tooltip when a study applies, else None."""
        n = self.training_scans()
        if n is None:
            return None
        scans = f"{n} annotated scan{'s' if n != 1 else ''}"
        return (
            f"Train on {n} scan{'s' if n != 1 else ''} ({size})",
            f"Train on {scans} of the study (from each, patches of its painted slices), "
            "then predict the open scan and show its quality figure",
        )
