"""Live training curves and the margin histogram, drawn with pyqtgraph.

Each quantity is on a scale of its own: the scores (0 to 1), the losses, and the overfitting gap
(the logit shift Δ of Li et al.) in three panels over one step axis, with values on the axes.
Names are plain words; the technical term and what to look for are in each panel's tooltip.
The colours are Okabe and Ito's palette, told apart under the common colour-vision
deficiencies, and every curve of a panel also has its own line style. Updating and drawing the
curves at a validation takes about 23 ms on the 2-core development machine, against 0.6 ms for
the hand-drawn QPainter curves this replaced (``benchmarks/plot_cost.py``): far below the
100 ms a user notices, once per validation, for axes with values that QPainter did not have.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

BACKGROUND = "#262930"  # napari's dark theme
AXIS = "#9a9ca3"
# Okabe & Ito (2008), "Color universal design": distinct for protan, deutan and tritan viewers
SKY, ORANGE, GREEN, YELLOW, PURPLE, GREY = (
    "#56B4E9",
    "#E69F00",
    "#009E73",
    "#F0E442",
    "#CC79A7",
    "#BBBBBB",
)
SOLID, DASH, DOT = Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine

SERIES = {
    # key: (plain name, colour, line style)
    "dsc": ("overlap", SKY, SOLID),
    "sensitivity": ("lesion found", ORANGE, DASH),
    "precision": ("correct calls", GREEN, DOT),
    "train_loss": ("on training patches", GREY, SOLID),
    "val_loss": ("on held-out slices", PURPLE, DASH),
    "logit_shift": ("gap", YELLOW, SOLID),
}
"""The curves of ``CurvesWidget``, one per value of a validation event."""

PANELS = (
    (
        "Scores",
        ("dsc", "sensitivity", "precision"),
        (0.0, 1.0),
        "Scores on the painted slices held out from training (higher is better).\n"
        "overlap: Dice similarity coefficient (DSC) of the model's lesion and the paint\n"
        "lesion found: sensitivity (recall), the share of painted lesion the model calls lesion\n"
        "correct calls: precision, the share of what the model calls lesion that is painted so",
    ),
    (
        "Error",
        ("train_loss", "val_loss"),
        None,
        "The training loss (lower is better) on the training patches and on the held-out "
        "slices.\nHeld-out error rising while training error falls is overfitting.",
    ),
    (
        "Overfitting gap",
        ("logit_shift",),
        None,
        "Logit shift Δ (Li et al.): how much less sure the model is of lesion on the held-out\n"
        "slices than on the training patches (mean foreground margin z_fg − z_bg, in logits).\n"
        "Near 0: no overfitting; growing: the rare class is being overfitted",
    ),
)


def _title(items) -> str:
    """Coloured names in a row, as the panel's title (a compact legend)."""
    return "&nbsp;&nbsp;".join(f'<span style="color:{c}">{name}</span>' for name, c in items)


def _pen(color: str, style=SOLID):
    return pg.mkPen(color=color, width=2, style=style)


class _Plots(pg.GraphicsLayoutWidget):
    """A fixed chart inside a scrolling dock: no mouse zoom or pan, and the wheel scrolls the
    dock instead of zooming."""

    def __init__(self) -> None:
        super().__init__()
        self.setBackground(BACKGROUND)
        self.ci.layout.setContentsMargins(0, 0, 0, 0)
        self.ci.layout.setSpacing(0)

    def wheelEvent(self, ev) -> None:  # noqa: N802 - Qt's name
        ev.ignore()

    def panel(self, row: int, tooltip: str, *, x_label: str | None = None) -> pg.PlotItem:
        plot = self.addPlot(row=row, col=0)
        plot.setMouseEnabled(x=False, y=False)
        plot.setMenuEnabled(False)
        plot.hideButtons()
        # no grid: its alpha-blended lines were 80% of a redraw (18 -> 3.6 ms at the dock's
        # size, benchmarks/plot_cost.py); the axes carry the values
        plot.setToolTip(tooltip)
        for side in ("left", "bottom"):
            axis = plot.getAxis(side)
            axis.setPen(AXIS)
            axis.setTextPen(AXIS)
        plot.getAxis("left").setWidth(36)
        if x_label:
            plot.setLabel("bottom", x_label, color=AXIS)
        return plot


class CurvesWidget(QWidget):
    """The validation curves: scores, error, overfitting gap; one step axis."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(300)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.points: dict[str, list[tuple[float, float]]] = {k: [] for k in SERIES}
        self.view = _Plots()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.plots: list[pg.PlotItem] = []
        for row, (name, keys, fixed, tip) in enumerate(PANELS):
            last = row == len(PANELS) - 1
            plot = self.view.panel(row, tip, x_label="training step" if last else None)
            plot.setTitle(_title([(name + ":", AXIS)] + [SERIES[k][:2] for k in keys]), size="9pt")
            if fixed:
                plot.setYRange(*fixed, padding=0.02)
            else:
                plot.enableAutoRange(axis="y")
            if "logit_shift" in keys:
                plot.addLine(y=0.0, pen=pg.mkPen(AXIS, width=1, style=DOT))
            if self.plots:
                plot.setXLink(self.plots[0])
            for k in keys:
                _, color, style = SERIES[k]
                self.curves[k] = plot.plot(
                    [], [], pen=_pen(color, style), symbol="o", symbolSize=4,
                    symbolBrush=color, symbolPen=None, antialias=True,
                )  # fmt: skip
            self.plots.append(plot)

    def clear(self) -> None:
        self.points = {k: [] for k in SERIES}
        for curve in self.curves.values():
            curve.setData([], [])

    def add(self, step: float, values: dict[str, float]) -> None:
        for key, value in values.items():
            if key in self.points and value is not None and math.isfinite(value):
                self.points[key].append((step, float(value)))
                xs, ys = zip(*self.points[key], strict=True)
                self.curves[key].setData(xs, ys)
        last = max((p[-1][0] for p in self.points.values() if p), default=1.0)
        self.plots[0].setXRange(0, max(last, 1.0), padding=0.02)


class MarginHistogramWidget(QWidget):
    """Li et al.'s diagnostic, live: the foreground margin ``z_fg - z_bg`` of the painted
    lesion voxels, on the training patches and on the held-out slices, as two histograms.

    Overfitting shows as the held-out histogram sliding towards 0, the decision boundary (the
    dotted line), while the training one moves right: the logit shift Δ.
    """

    def __init__(self, lim: float = 20.0) -> None:
        super().__init__()
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.lim = lim
        self.train: list[int] = []
        self.val: list[int] = []
        self.shift = float("nan")
        self.step = 0
        self.view = _Plots()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.plot = self.view.panel(
            0,
            "How sure the model is that a painted lesion voxel is lesion: its foreground margin "
            "z_fg − z_bg\n(logits; right of the dotted line = called lesion), on the training "
            "patches and on the held-out slices.\nThe held-out histogram sliding towards the "
            "line while the training one moves right is overfitting (Li et al., Fig. 2);\nthe "
            "asymmetric losses counter it.",
            x_label="margin: lesion − background (logits)",
        )
        self.plot.setXRange(-lim, lim, padding=0)
        self.plot.setYRange(0, 1.05, padding=0)
        self.plot.getAxis("left").setLabel("voxels (relative)", color=AXIS)
        self.plot.addLine(x=0.0, pen=pg.mkPen(AXIS, width=1, style=DOT))
        self.hist = {
            "train": self.plot.plot([], [], pen=_pen(SKY), stepMode="center"),
            "val": self.plot.plot([], [], pen=_pen(ORANGE, DASH), stepMode="center"),
        }
        self._retitle()

    def _retitle(self) -> None:
        shift = f"gap Δ {self.shift:+.2f}" if math.isfinite(self.shift) else "gap Δ –"
        at = f" at step {self.step}" if self.step else ""
        items = [("training", SKY), ("held-out", ORANGE), (shift + at, YELLOW)]
        self.plot.setTitle(_title(items), size="9pt")

    def clear(self) -> None:
        self.train, self.val, self.shift, self.step = [], [], float("nan"), 0
        for curve in self.hist.values():
            curve.setData([], [])
        self._retitle()

    def set(self, step: int, train: list[int], val: list[int], shift: float) -> None:
        self.step, self.train, self.val, self.shift = step, list(train), list(val), shift
        for key, counts in (("train", self.train), ("val", self.val)):
            c = np.asarray(counts, np.float64)
            if c.size == 0 or c.max() <= 0:
                self.hist[key].setData([], [])
                continue
            edges = np.linspace(-self.lim, self.lim, c.size + 1)
            self.hist[key].setData(edges, c / c.max())
        self._retitle()
