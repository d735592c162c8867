"""Live training curves drawn with QPainter.

A hand-drawn line chart instead of matplotlib: a redraw costs well under a millisecond, so
updating the curves at every validation never stalls napari's event loop, and the plugin does
not pull in a plotting library for four polylines.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

SERIES = {
    "dsc": ("DSC", "#4fc3f7"),
    "sensitivity": ("sensitivity", "#ff8a65"),
    "precision": ("precision", "#aed581"),
    "train_loss": ("train loss", "#bdbdbd"),
    "val_loss": ("val loss", "#9575cd"),
    "logit_shift": ("logit shift Δ", "#ffd54f"),
}


def _canvas(widget: QWidget) -> tuple[QPainter, int, int]:
    """An antialiased painter on ``widget``, its background filled; with the width, height."""
    painter = QPainter(widget)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    w, h = widget.width(), widget.height()
    painter.fillRect(0, 0, w, h, QColor("#262930"))
    return painter, w, h


def _legend(painter: QPainter, items, x: float, y: float) -> None:
    """Coloured labels in a row, from ``(x, y)``."""
    for label, color in items:
        painter.setPen(QColor(color))
        painter.drawText(QPointF(x, y), label)
        x += painter.fontMetrics().horizontalAdvance(label) + 12


class CurvesWidget(QWidget):
    """Two panels: scores (0..1) on top, losses and the logit shift (own scale) below."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.points: dict[str, list[tuple[float, float]]] = {k: [] for k in SERIES}

    def clear(self) -> None:
        self.points = {k: [] for k in SERIES}
        self.update()

    def add(self, step: float, values: dict[str, float]) -> None:
        for key, value in values.items():
            if key in self.points and value is not None and math.isfinite(value):
                self.points[key].append((step, float(value)))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter, w, h = _canvas(self)
        top = (0, 0, w, h * 0.55)
        bottom = (0, h * 0.58, w, h * 0.42)
        self._panel(painter, top, ("dsc", "sensitivity", "precision"), fixed=(0.0, 1.0))
        self._panel(painter, bottom, ("train_loss", "val_loss", "logit_shift"), fixed=None)
        painter.end()

    def _panel(self, painter: QPainter, rect, keys, fixed) -> None:
        x0, y0, w, h = rect
        pad_l, pad_r, pad_t, pad_b = 8, 8, 16, 6
        steps = [p[0] for k in keys for p in self.points[k]]
        vals = [p[1] for k in keys for p in self.points[k]]
        _legend(painter, [SERIES[k] for k in keys], x0 + pad_l, y0 + 12)
        if not steps:
            return
        lo, hi = fixed if fixed else (min(vals + [0.0]), max(vals + [1e-6]))
        hi = hi if hi > lo else lo + 1
        s0, s1 = 0.0, max(steps)

        def to_xy(step: float, value: float) -> QPointF:
            fx = (step - s0) / max(s1 - s0, 1e-9)
            fy = (value - lo) / (hi - lo)
            return QPointF(
                x0 + pad_l + fx * (w - pad_l - pad_r), y0 + pad_t + (1 - fy) * (h - pad_t - pad_b)
            )

        painter.setPen(QPen(QColor("#555"), 1, Qt.PenStyle.DotLine))
        if lo < 0 < hi:
            painter.drawLine(to_xy(s0, 0.0), to_xy(s1, 0.0))
        for k in keys:
            pts = self.points[k]
            painter.setPen(QPen(QColor(SERIES[k][1]), 2))
            for a, b in zip(pts, pts[1:], strict=False):
                painter.drawLine(to_xy(*a), to_xy(*b))
            for p in pts[-1:]:
                painter.drawEllipse(to_xy(*p), 2.5, 2.5)


class MarginHistogramWidget(QWidget):
    """Li et al.'s diagnostic, live: the foreground margin ``z_fg - z_bg`` on the training
    patches and on the held-out slices, as two normalised histograms over [-lim, lim].

    Overfitting shows as the held-out histogram (orange) sliding towards 0, the decision
    boundary (the dotted line), while the training one (blue) moves right: the logit shift Δ.
    """

    def __init__(self, lim: float = 20.0) -> None:
        super().__init__()
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.lim = lim
        self.setToolTip(
            "foreground margin z_fg - z_bg on the annotated lesion voxels of the training "
            "patches (blue) and of the held-out slices (orange); Δ = |held-out mean| - "
            "|training mean|. Held-out sliding towards 0 (dotted) = overfitting"
        )
        self.train: list[int] = []
        self.val: list[int] = []
        self.shift = float("nan")
        self.step = 0

    def clear(self) -> None:
        self.train, self.val, self.shift, self.step = [], [], float("nan"), 0
        self.update()

    def set(self, step: int, train: list[int], val: list[int], shift: float) -> None:
        self.step, self.train, self.val, self.shift = step, list(train), list(val), shift
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter, w, h = _canvas(self)
        shift = f"Δ {self.shift:+.2f}" if math.isfinite(self.shift) else "Δ –"
        items = [
            ("training", "#4fc3f7"),
            ("held-out", "#ff8a65"),
            (f"{shift}, step {self.step}" if self.step else shift, "#ffd54f"),
        ]
        _legend(painter, items, 8.0, 12)
        pad_l, pad_r, pad_t, pad_b = 8.0, 8.0, 18.0, 16.0
        pw, ph = w - pad_l - pad_r, h - pad_t - pad_b
        painter.setPen(QPen(QColor("#555"), 1, Qt.PenStyle.DotLine))
        painter.drawLine(QPointF(pad_l + pw / 2, pad_t), QPointF(pad_l + pw / 2, pad_t + ph))
        painter.setPen(QColor("#888"))
        painter.drawText(QPointF(pad_l, h - 3), f"{-self.lim:g}")
        painter.drawText(QPointF(pad_l + pw / 2 - 3, h - 3), "0")
        painter.drawText(QPointF(w - pad_r - 16, h - 3), f"{self.lim:g}")
        for counts, color in ((self.train, "#4fc3f7"), (self.val, "#ff8a65")):
            total = sum(counts)
            if not total:
                continue
            peak = max(counts) / total
            painter.setPen(QPen(QColor(color), 2))
            n = len(counts)
            prev = None
            for i, c in enumerate(counts):
                px = pad_l + (i + 0.5) / n * pw
                py = pad_t + (1 - (c / total) / peak) * ph
                point = QPointF(px, py)
                if prev is not None:
                    painter.drawLine(prev, point)
                prev = point
        painter.end()
