"""The Review section: the false-negative heatmap, the ranked flags, and the loop back to training.

The active-learning loop: predict -> the heatmap and flags appear -> click a flag (the viewer
jumps there) -> paint what the model missed -> mark the flag done -> fine-tune (a warm start
from the current model, a few steps) -> the new prediction re-ranks the flags. Done flags are
stored in the scan and stay done.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt.layers import layer_for, risk_layer
from napari_asymseg.errors import ScanError, error_message
from napari_asymseg.review import flags as review_flags

FINE_TUNE_STEPS = 40
"""Steps of the Review section's fine-tune: a warm start needs far fewer than a new model."""
FINE_TUNE_LR = 1e-3
"""Its peak learning rate: at the default 3e-3, a warm start first lost most of what it knew
(validation DSC 0.70 -> 0.10 at step 20 in benchmarks/active_learning.py's pilot)."""
_OPEN_COLOR = "#ffd400"
_DONE_COLOR = "#8a8a8a"


def camera_of(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def flag_text(flag: review_flags.Flag) -> str:
    """The list's line for a flag: short enough for a narrow dock (details in the tooltip)."""
    state = "  ✓ done" if flag.done else ""
    if flag.expected_missed < 1 and flag.known_misses:  # only painted lesion the model misses
        return (
            f"#{flag.rank}  slice {flag.center[0]}  {flag.known_misses:,} painted voxels "
            f"missed{state}"
        )
    return (
        f"#{flag.rank}  slice {flag.center[0]}  ~{flag.expected_missed:,.0f} voxels  "
        f"risk {flag.max_risk:.2f}{state}"
    )


def flag_tooltip(flag: review_flags.Flag) -> str:
    z, y, x = flag.center
    z0, y0, x0, z1, y1, x1 = flag.bbox
    lines = [
        f"flag #{flag.rank} ({flag.status}) at z {z}, y {y}, x {x}",
        f"expected missed foreground: {flag.expected_missed:,.1f} voxels "
        f"({flag.expected_mm3:,.1f} mm³) over {flag.voxels:,} voxels at risk",
        f"highest risk on an unannotated voxel: {flag.max_risk:.2f}",
        f"box: z {z0}-{z1 - 1}, y {y0}-{y1 - 1}, x {x0}-{x1 - 1}",
    ]
    if flag.known_misses:
        lines.append(
            f"{flag.known_misses:,} of your lesion voxels here are missed by the model "
            "(fine-tune to fix those)"
        )
    return "\n".join(lines)


class ReviewSection(QWidget):
    """Heatmap opacity, the ranked flags, jump-to, mark done, and a fast fine-tune."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        self.flags: list[review_flags.Flag] = []
        self.worker: Any = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

        row = QHBoxLayout()
        row.addWidget(QLabel("heatmap opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(70)
        self.opacity.setToolTip("opacity of the false-negative heatmap (0 hides it)")
        self.opacity.valueChanged.connect(self._set_opacity)
        row.addWidget(self.opacity)
        layout.addLayout(row)

        self.find_button = QPushButton("Find missed regions")
        self.find_button.setToolTip(
            "rank the regions where the model probably misses foreground, from the heatmap of "
            "the last prediction and your current annotations"
        )
        self.find_button.clicked.connect(self.find_flags)
        layout.addWidget(self.find_button)
        self.summary = QLabel("Predict the scan to see where the model probably misses.")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.list = QListWidget()
        self.list.setToolTip("click a flag to jump there; paint what is missed, then mark it done")
        self.list.setMinimumHeight(150)
        self.list.currentRowChanged.connect(self._on_row)
        layout.addWidget(self.list)

        buttons = QHBoxLayout()
        self.done_button = QPushButton("Mark done")
        self.done_button.setToolTip("remember that this flag is dealt with (toggles)")
        self.done_button.clicked.connect(self.toggle_done)
        self.finetune_button = QPushButton("Fine-tune on new annotations")
        self.finetune_button.setToolTip(
            f"warm start from the current model, {FINE_TUNE_STEPS} steps, then predict again"
        )
        self.finetune_button.clicked.connect(self.fine_tune)
        buttons.addWidget(self.done_button)
        buttons.addWidget(self.finetune_button)
        layout.addLayout(buttons)

    # -- state ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Show the flags stored in the scan (when a scan opens)."""
        scan = self.dock.scan
        self.flags = []
        if scan is not None:
            try:
                self.flags = review_flags.stored_flags(scan)
            except ScanError as exc:
                show_error(str(exc))
        self._show()

    def find_flags(self) -> None:
        """Recompute the flags in a thread (the risk map may be large)."""
        scan = self.dock.scan
        if scan is None:
            show_error("open a scan first")
            return
        if self.worker is not None or not self.dock.writable():
            return
        self.dock.save_now()  # the flags see the annotations as painted
        worker: Any = create_worker(
            review_flags.flag_scan, scan, _ignore_errors=True
        )  # shown below
        worker.returned.connect(self._on_flags)
        worker.errored.connect(lambda exc: show_error(error_message(exc)))
        worker.finished.connect(self._on_worker_done)
        self.worker = worker
        self.find_button.setEnabled(False)
        self.summary.setText("looking for missed regions…")
        worker.start()

    def _on_worker_done(self) -> None:
        self.worker = None
        self.find_button.setEnabled(True)

    def _on_flags(self, flags: list[review_flags.Flag]) -> None:
        self.flags = flags
        self._show()

    def _show(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for flag in self.flags:
            item = QListWidgetItem(flag_text(flag))
            item.setToolTip(flag_tooltip(flag))
            if flag.done:
                item.setForeground(QColor(_DONE_COLOR))
            self.list.addItem(item)
        self.list.blockSignals(False)
        open_flags = [f for f in self.flags if not f.done]
        if self.flags:
            missed = sum(f.expected_missed for f in open_flags)
            self.summary.setText(
                f"{len(open_flags)} open flag(s), {len(self.flags) - len(open_flags)} done; "
                f"expected missed foreground ~{missed:,.0f} voxels. Click one to go there."
            )
        elif self.dock.scan is not None and "risk" in self.dock.scan.results():
            self.summary.setText("No missed regions found above the risk threshold.")
        self._update_points()

    def _update_points(self) -> None:
        scan = self.dock.scan
        if scan is None:
            return
        viewer = self.dock.viewer
        layer = layer_for(viewer, scan.path, "flags")
        centers = np.array([f.center for f in self.flags], dtype=float).reshape(-1, 3)
        colors = [_DONE_COLOR if f.done else _OPEN_COLOR for f in self.flags]
        features = {"rank": [f.rank for f in self.flags]}
        if layer is None:
            # made when the scan opens, empty if need be: creating a points layer with text
            # stalls the viewer ~250 ms, which then falls on the scan's opening, not on the
            # end of a training run (benchmarks/gui_responsiveness.py)
            viewer.add_points(
                centers,
                name=f"{scan.path.name.removesuffix('.zarr')} flags",
                scale=scan.spacing,
                size=max(scan.spacing) * 4,
                face_color="transparent",
                border_color=colors or _OPEN_COLOR,
                border_width=0.12,
                features=features,
                text={"string": "{rank}", "color": _OPEN_COLOR, "size": 10},
                metadata={"asymseg": {"scan": str(scan.path), "role": "flags"}},
            )
            if self.dock.annotations_layer is not None:
                self.dock.viewer.layers.selection.active = self.dock.annotations_layer
        else:
            layer.data = centers
            layer.features = features
            if colors:
                layer.border_color = colors
            layer.refresh()

    def _set_opacity(self, value: int) -> None:
        scan = self.dock.scan
        layer = layer_for(self.dock.viewer, scan.path, "risk") if scan is not None else None
        if layer is not None:
            layer.opacity = value / 100
            layer.visible = value > 0

    # -- navigation ----------------------------------------------------------------------------
    def _on_row(self, row: int) -> None:
        if 0 <= row < len(self.flags):
            self.jump_to(self.flags[row])

    def jump_to(self, flag: review_flags.Flag) -> None:
        """Show the flag's slice, centred, with the brush ready on the annotations."""
        scan = self.dock.scan
        if scan is None:
            return
        viewer = self.dock.viewer
        world = [c * s for c, s in zip(flag.center, scan.spacing, strict=True)]
        if viewer.dims.ndisplay == 2:
            viewer.dims.set_point(0, world[0])
        camera_of(viewer).center = tuple(world)
        layer = self.dock.annotations_layer
        if layer is not None:
            viewer.layers.selection.active = layer
        risk_layer(viewer, scan).visible = self.opacity.value() > 0

    def current_flag(self) -> review_flags.Flag | None:
        row = self.list.currentRow()
        return self.flags[row] if 0 <= row < len(self.flags) else None

    def toggle_done(self) -> None:
        scan, flag = self.dock.scan, self.current_flag()
        if scan is None or flag is None:
            show_error("pick a flag in the list first")
            return
        if not self.dock.writable():
            return
        row = self.list.currentRow()
        try:
            self.flags = review_flags.set_status(scan, flag.id, "open" if flag.done else "done")
        except ScanError as exc:
            show_error(str(exc))
            return
        self._show()
        self.list.blockSignals(True)
        self.list.setCurrentRow(row)
        self.list.blockSignals(False)

    def fine_tune(self) -> None:
        """Warm-start training from the current model on the annotations as they are now."""
        train = self.dock.train_section
        if self.dock.current_model() is None:
            show_error("no model yet: train a new model first (Train, in the section above)")
            return
        if train.running:
            return
        show_info(f"fine-tuning the current model for {FINE_TUNE_STEPS} steps")
        train.start(fine_tune=True, steps=FINE_TUNE_STEPS, lr=FINE_TUNE_LR)
