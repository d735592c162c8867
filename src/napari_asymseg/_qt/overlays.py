"""The legend of the overlays, which is also their switch: one click shows or hides each.

Each button carries the overlay's colour and shape (paint fills, the prediction is an
outline, the heatmap a glow, the flags rings; ``io/palette.py``) and follows the layer's own
visibility, so the eye icons of napari's layer list and these buttons always agree.
"""

from __future__ import annotations

import weakref

from qtpy.QtCore import QRectF, Qt
from qtpy.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from qtpy.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

from napari_asymseg._qt.layers import layer_for
from napari_asymseg.io import palette

OVERLAYS = (
    # role, label, colour, shape, tooltip
    ("annotations", "paint", palette.PAINT, "fill", "your paint: lesion filled, background faint"),
    ("prediction", "model", palette.PREDICTION, "outline", "the model's lesion, outlined"),
    (
        "risk",
        "missed?",
        palette.HEATMAP,
        "glow",
        "the false-negative heatmap: where lesion may be missed (stronger = more likely)",
    ),
    (
        "flags",
        "to review",
        palette.MISS_FLAG,
        "ring",
        "the review queue's items: yellow rings missed?, white rings false alarm?",
    ),
)


def swatch(color: str, shape: str, size: int = 14) -> QIcon:
    """A small picture of how an overlay looks."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    box = QRectF(2, 2, size - 4, size - 4)
    c = QColor(color)
    if shape == "fill":
        painter.fillRect(box, c)
    elif shape == "glow":
        c.setAlpha(150)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(c)
        painter.drawEllipse(box)
    else:
        painter.setPen(QPen(c, 2))
        (painter.drawEllipse if shape == "ring" else painter.drawRect)(box)
    painter.end()
    return QIcon(pixmap)


class OverlayToggles(QWidget):
    """ "Show:" and one checkable button per overlay of the open scan."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addWidget(QLabel("Show:"))
        self.buttons: dict[str, QToolButton] = {}
        self._watched: weakref.WeakSet = weakref.WeakSet()  # layers whose visibility we follow
        for role, label, color, shape, tip in OVERLAYS:
            button = QToolButton()
            button.setText(label)
            button.setIcon(swatch(color, shape))
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.setCheckable(True)
            button.setToolTip(f"{tip} (click to show or hide)")
            button.toggled.connect(lambda on, role=role: self._set_visible(role, on))
            row.addWidget(button)
            self.buttons[role] = button
        row.addStretch(1)
        self.refresh()

    def _layer(self, role: str):
        scan = self.dock.scan
        return layer_for(self.dock.viewer, scan.path, role) if scan is not None else None

    def _set_visible(self, role: str, on: bool) -> None:
        layer = self._layer(role)
        if layer is not None and layer.visible != on:
            layer.visible = on

    def refresh(self) -> None:
        """Follow the open scan's layers (called when one opens, and on napari's events)."""
        for role, button in self.buttons.items():
            layer = self._layer(role)
            button.setEnabled(layer is not None)
            button.blockSignals(True)
            button.setChecked(bool(layer is not None and layer.visible))
            button.blockSignals(False)
            if layer is not None and layer not in self._watched:
                layer.events.visible.connect(lambda _e: self.refresh())
                self._watched.add(layer)
