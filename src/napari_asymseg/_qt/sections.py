"""A dock section that folds away: a header with an arrow, and a body shown or hidden.

Not superqt's ``QCollapsible``: it caps its body at the height the body had when it opened,
so a section that grows later (the progress bar appearing, the review list filling, a status
line wrapping) was cut off. Showing and hiding the body lets Qt's layout size it as usual.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QToolButton, QVBoxLayout, QWidget


class Section(QWidget):
    """``title`` over ``body``; clicking the title folds or unfolds the body."""

    def __init__(self, title: str, body: QWidget, *, expanded: bool = True, tip: str = "") -> None:
        super().__init__()
        self.body = body
        self.header = QToolButton()
        self.header.setText(title)
        self.header.setCheckable(True)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.header.setToolTip(tip or f"show or hide {title}")
        self.header.toggled.connect(self.set_expanded)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.header)
        layout.addWidget(body)
        self.header.setChecked(expanded)
        self.set_expanded(expanded)

    def set_expanded(self, expanded: bool) -> None:
        if self.header.isChecked() != expanded:
            self.header.setChecked(expanded)  # calls back here once
            return
        self.body.setVisible(expanded)
        arrow = Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow
        self.header.setArrowType(arrow)

    @property
    def expanded(self) -> bool:
        return self.header.isChecked()
