"""The Lesions section: the prediction's lesions, one row each, largest first (issue 21).

After every prediction, and when a scan with a stored prediction opens, the lesion-wise report
of :mod:`napari_asymseg.evaluate.lesions` (and the voxel DSC beside it) is computed in a thread
worker: it labels the 26-connected components of the prediction and of the reference, about a
second each on a 256^3 scan, too long for the GUI thread. With the scan's ground truth, the
rows are the reference lesions, detected or missed, with the share of each that is predicted,
and the false predicted lesions; without one, the predicted lesions. A click on a row shows
its lesion in the viewer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt.layers import go_to
from napari_asymseg.errors import error_message
from napari_asymseg.evaluate.lesions import totals
from napari_asymseg.evaluate.scoring import evaluate_scan

MAX_ROWS = 200
"""Rows the table shows, the largest lesions; a line under it counts the rest."""

DETECTED, MISSED, FALSE = "detected", "missed", "false"
_STATUS_ORDER = {MISSED: 0, FALSE: 1, DETECTED: 2, "": 3}  # sorting by status: misses first

COLUMNS = (
    ("class", "the lesion's class"),
    ("#", "the lesion's rank by volume in its class (1: the largest)"),
    (
        "status",
        "detected: a reference lesion with at least one voxel predicted; missed: a reference "
        "lesion with none; false: a predicted lesion that touches no reference lesion",
    ),
    (
        "mL",
        "volume in mL: of the reference lesion (detected, missed), of the predicted lesion "
        "(false, or when the scan has no reference)",
    ),
    ("extent (mm)", "the lesion's bounding box, z × y × x, in mm"),
    ("covered", "the share of the reference lesion's voxels predicted (its sensitivity)"),
)
CLASS, NUMBER, STATUS, VOLUME, EXTENT, COVERED = range(len(COLUMNS))


@dataclass(frozen=True)
class LesionRow:
    """One row of the table: a lesion of the reference or of the prediction."""

    name: str  # its class
    number: int  # its rank by volume in its class, from 1
    status: str  # DETECTED, MISSED, FALSE, or "" without a reference
    millilitres: float
    extent_mm: tuple[float, float, float]
    center: tuple[int, int, int]  # voxel (z, y, x)
    sensitivity: float  # reference lesions: the share predicted; NaN otherwise


def lesion_rows(report: dict[str, Any]) -> list[LesionRow]:
    """The table's rows from a report of :func:`~napari_asymseg.evaluate.scoring.evaluate_scan`,
    largest first.

    With a reference: every reference lesion (detected or missed) and every false predicted
    lesion; a predicted lesion that touches a reference lesion is that lesion's detection, not
    a row of its own. Without a reference: the predicted lesions.
    """
    found: list[tuple[str, str, dict[str, Any]]] = []
    for name, entry in report["lesions"].items():
        if "reference" in entry:
            found += [(name, DETECTED if x["detected"] else MISSED, x) for x in entry["reference"]]
            found += [(name, FALSE, x) for x in entry["predicted"] if x["false"]]
        else:
            found += [(name, "", x) for x in entry["predicted"]]
    found.sort(key=lambda f: -f[2]["millilitres"])
    ranks: dict[str, int] = {}
    rows = []
    for name, status, x in found:
        ranks[name] = ranks.get(name, 0) + 1
        sensitivity = x["sensitivity"] if status in (DETECTED, MISSED) else math.nan
        rows.append(
            LesionRow(
                name,
                ranks[name],
                status,
                float(x["millilitres"]),
                tuple(float(e) for e in x["extent_mm"]),  # type: ignore[arg-type]
                tuple(int(c) for c in x["center"]),  # type: ignore[arg-type]
                float(sensitivity),
            )
        )
    return rows


def _lesions(n: int, what: str) -> str:
    return f"{n} {what} lesion{'' if n == 1 else 's'}"


def summary_text(report: dict[str, Any]) -> str:
    """A line per class: ``lesion: 2/2 reference lesions found, 36 false (0.41 mL); 38
    predicted lesions, 19.40 mL; voxel DSC 0.82``, or ``lesion: 39 predicted lesions, 19.40
    mL`` without a reference."""
    lines = []
    for name, entry in report["lesions"].items():
        t = totals(entry)
        total = f"{_lesions(int(t['predicted']), 'predicted')}, {t['ml']:.2f} mL"
        if "reference" not in entry:
            lines.append(f"{name}: {total}")
            continue
        missed = f" ({entry['missed']} missed, {t['missed_ml']:.2f} mL)" if entry["missed"] else ""
        dsc = report["classes"].get(name, {}).get("dsc", math.nan)
        lines.append(
            f"{name}: {entry['detected']}/{len(entry['reference'])} reference lesions "
            f"found{missed}, {entry['false']} false ({t['false_ml']:.2f} mL); {total}; voxel DSC "
            + (f"{dsc:.2f}" if dsc == dsc else "—")
        )
    return "\n".join(lines)


def _cells(row: LesionRow) -> list[tuple[str, Any]]:
    """Each column's text and the key it sorts by."""
    z, y, x = row.extent_mm
    covered = row.sensitivity
    return [
        (row.name, row.name),
        (str(row.number), row.number),
        (row.status, _STATUS_ORDER[row.status]),
        (f"{row.millilitres:.3f}", row.millilitres),
        (" × ".join(_mm(v) for v in (z, y, x)), max(row.extent_mm)),
        (f"{covered:.0%}" if covered == covered else "—", covered if covered == covered else -1),
    ]


class _Cell(QTableWidgetItem):
    """A cell that sorts by its value, not its text (0.5 mL before 12 mL)."""

    def __init__(self, text: str, key: Any) -> None:
        super().__init__(text)
        self.key = key

    def __lt__(self, other: QTableWidgetItem) -> bool:
        key = getattr(other, "key", None)
        return self.key < key if key is not None else super().__lt__(other)


class LesionTable(QWidget):
    """The scan's lesions: a summary line per class, a table, and a click to go to one."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        self.worker: Any = None
        self.again = False  # a prediction came while counting: count again after
        self.report: dict[str, Any] | None = None  # the report shown (evaluate_scan's)
        self.rows: list[LesionRow] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.summary = QLabel("Predict the scan to see its lesions.")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.summary)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([title for title, _ in COLUMNS])
        for column, (_, tip) in enumerate(COLUMNS):
            header = self.table.horizontalHeaderItem(column)
            if header is not None:
                header.setToolTip(tip)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setToolTip("click a lesion to go there; click a column's title to sort by it")
        vertical = self.table.verticalHeader()
        if vertical is not None:
            vertical.setVisible(False)
        horizontal = self.table.horizontalHeader()
        if horizontal is not None:
            horizontal.setStretchLastSection(True)
        self.table.setMinimumHeight(150)
        self.table.currentCellChanged.connect(self._on_current)
        self.table.cellClicked.connect(self.go_to_row)
        layout.addWidget(self.table)
        self.more = QLabel("")
        self.more.setVisible(False)
        layout.addWidget(self.more)

    # -- the report ----------------------------------------------------------------------------
    def load(self) -> None:
        """Count the lesions of the open scan's stored prediction, in a thread."""
        if self.worker is not None:
            self.again = True
            return
        self.show_report(None)
        scan = self.dock.scan
        if scan is None or scan.result("prediction") is None:
            return
        worker: Any = create_worker(
            evaluate_scan, scan.path, reference_optional=True, _ignore_errors=True
        )
        worker.returned.connect(self._on_report)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_done)
        self.worker = worker
        self.summary.setText("counting the lesions…")
        worker.start()

    def _on_report(self, report: dict[str, Any]) -> None:
        scan = self.dock.scan
        if scan is not None and Path(report["scan"]).resolve() == Path(scan.path).resolve():
            self.show_report(report)

    def _on_error(self, exc: Exception) -> None:
        self.summary.setText(f"could not count the lesions: {error_message(exc)}")

    def _on_done(self) -> None:
        self.worker = None
        if self.again:
            self.again = False
            self.load()

    def show_report(self, report: dict[str, Any] | None) -> None:
        """Fill the summary and the table from ``report`` (None: empty them)."""
        self.report = report
        self.rows = lesion_rows(report) if report is not None else []
        shown = self.rows[:MAX_ROWS]
        table = self.table
        table.blockSignals(True)
        table.setSortingEnabled(False)
        table.clearContents()
        table.setRowCount(len(shown))
        for r, row in enumerate(shown):
            for column, (text, key) in enumerate(_cells(row)):
                cell = _Cell(text, key)
                cell.setData(Qt.ItemDataRole.UserRole, r)  # the row's lesion, however sorted
                if column != CLASS:
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                table.setItem(r, column, cell)
        lesions = report["lesions"] if report is not None else {}
        with_reference = any("reference" in entry for entry in lesions.values())
        table.setColumnHidden(CLASS, len(lesions) <= 1)
        for column in (STATUS, COVERED):
            table.setColumnHidden(column, not with_reference)
        table.resizeColumnsToContents()
        table.setSortingEnabled(True)
        table.sortItems(VOLUME, Qt.SortOrder.DescendingOrder)
        table.blockSignals(False)
        if report is None:
            self.summary.setText("Predict the scan to see its lesions.")
        else:
            self.summary.setText(summary_text(report) or "no lesion class in this scan")
        hidden = len(self.rows) - len(shown)
        self.more.setText(
            f"… {hidden} more, smaller lesions (asymseg evaluate --lesions lists them all)"
        )
        self.more.setVisible(hidden > 0)

    # -- navigation ----------------------------------------------------------------------------
    def _on_current(self, row: int, _column: int, previous: int, _previous_column: int) -> None:
        if row != previous:
            self.go_to_row(row)

    def go_to_row(self, row: int, *_column: int) -> None:
        """Show the lesion of the table's ``row`` (as sorted now): its slice, centred."""
        cell, scan = self.table.item(row, 0), self.dock.scan
        if cell is None or scan is None:
            return
        lesion = self.rows[int(cell.data(Qt.ItemDataRole.UserRole))]
        go_to(self.dock.viewer, scan.spacing, lesion.center)


def _mm(value: float) -> str:
    """A length to 0.1 mm, without a trailing ".0" (``32.5``, ``8.6``, ``10``)."""
    return f"{value:.1f}".removesuffix(".0")
