"""The Study section's list: one row per scan of the study, with its status.

Split from ``study.py`` (the section's buttons, the status read in a thread, Train's scans).
"""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtCore import Qt
from qtpy.QtGui import QFont
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from napari_asymseg.study.study import ScanStatus

COLUMNS = (
    ("scan", "the scan's name in the study (double-click to open it)"),
    ("painted", "slices with any annotation"),
    ("lesion", "slices with lesion painted"),
    ("reviewed", "review questions answered"),
    ("open", "review questions not answered yet"),
    ("done", "marked done (Mark done)"),
    ("predicted", "the current model has predicted the scan"),
    ("figure", "the quality figure of its prediction: estimated DSC on its unpainted voxels"),
)
ROWS_SHOWN = 8
"""The list is as tall as its rows up to this many; a longer study scrolls in it."""


class StudyTable(QTableWidget):
    """The scans of a study, one a row, the open scan's in bold; read-only, one row selected."""

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels([name for name, _ in COLUMNS])
        for column, (_, tip) in enumerate(COLUMNS):
            header = self.horizontalHeaderItem(column)
            if header is not None:
                header.setToolTip(tip)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        vertical, horizontal = self.verticalHeader(), self.horizontalHeader()
        if vertical is not None:
            vertical.setVisible(False)
        if horizontal is not None:
            horizontal.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)

    def show_all(self, statuses: Sequence[ScanStatus], open_name: str | None) -> None:
        """Every scan's row (``open_name``: the open scan's name, shown in bold)."""
        self.setUpdatesEnabled(False)  # one repaint for the whole list
        try:
            self.setRowCount(len(statuses))
            for row, status in enumerate(statuses):
                self.show_row(row, status, bold=status.name == open_name)
        finally:
            self.setUpdatesEnabled(True)
        self.fit_height()

    def show_row(self, row: int, status: ScanStatus, *, bold: bool) -> None:
        """``status`` in ``row``; a missing scan in grey, its reason in the tooltip."""
        texts = (
            status.name + (" (missing)" if status.missing else ""),
            str(status.painted_slices),
            str(status.lesion_slices),
            str(status.reviewed),
            str(status.open_items),
            "✓" if status.done else "",
            "✓" if status.predicted else "",
            f"{status.figure:.2f}" if status.figure is not None else "",
        )
        for column, text in enumerate(texts):
            item = QTableWidgetItem(text)
            if column:
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            item.setToolTip(status.line())
            if bold:
                font = QFont(item.font())
                font.setBold(True)
                item.setFont(font)
            if status.missing:
                item.setForeground(Qt.GlobalColor.gray)
            self.setItem(row, column, item)

    def fit_height(self) -> None:
        """As tall as its rows, up to :data:`ROWS_SHOWN` (a longer list scrolls)."""
        rows = max(1, min(self.rowCount(), ROWS_SHOWN))
        header, vertical = self.horizontalHeader(), self.verticalHeader()
        height = 2 * self.frameWidth()
        height += header.sizeHint().height() if header is not None else 0
        height += rows * (vertical.defaultSectionSize() if vertical is not None else 30)
        bar = self.horizontalScrollBar()
        if bar is not None:  # room for it, should the dock be narrower than the columns
            height += bar.sizeHint().height()
        self.setFixedHeight(height)

    def embolden(self, names: Sequence[str], open_name: str | None) -> int | None:
        """The open scan's row in bold, the others not; returns its row (None: not listed)."""
        found = None
        for row, name in enumerate(names):
            bold = name == open_name
            found = row if bold else found
            for column in range(self.columnCount()):
                item = self.item(row, column)
                if item is not None and item.font().bold() != bold:
                    font = QFont(item.font())
                    font.setBold(bold)
                    item.setFont(font)
        return found
