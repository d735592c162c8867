"""The dock's runs: which trained model is current, and a way back to an earlier one.

Every training run keeps its model (``train.runs``); the current one predicts, is fine-tuned
from and is exported. A run that ends becomes current only when ``train.runs.verdict`` says
it is better (on the same held-out slices) than the current one; the list shows every run and
**Use** makes any of them current again (a revert in one click) and predicts with it.
"""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QWidget

from napari_asymseg.errors import ScanError
from napari_asymseg.train import runs


class RunsRow(QWidget):
    """A drop-down of the scan's runs (the current one marked ✓) and "Use"."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.combo = QComboBox()
        self.combo.setToolTip(
            "every model trained on this scan, oldest first, with its best validation DSC; "
            "the current one predicts, is fine-tuned from and is exported"
        )
        self.use_button = QPushButton("Use")
        self.use_button.setToolTip("make the chosen run current and predict the scan with it")
        self.use_button.clicked.connect(self.use_selected)
        row.addWidget(self.combo, 1)
        row.addWidget(self.use_button)
        self.refresh()

    def refresh(self) -> None:
        """List the open scan's runs, the current one selected and marked."""
        scan = self.dock.scan
        listed = runs.list_runs(scan.path) if scan is not None else []
        current = runs.current_model(scan.path) if scan is not None else None
        self.combo.clear()
        for k, info in enumerate(listed):
            mark = " ✓" if info.path == current else ""
            self.combo.addItem(_short(info) + mark, str(info.path))
            self.combo.setItemData(k, info.line() + (" (current)" if mark else ""),
                                   Qt.ItemDataRole.ToolTipRole)  # fmt: skip
        if not listed:
            self.combo.addItem("no model yet: Train below")
        at = next((k for k, i in enumerate(listed) if i.path == current), -1)
        self.combo.setCurrentIndex(max(at, 0))
        self.use_button.setEnabled(bool(listed))

    def use_selected(self) -> None:
        """Make the chosen run current (a revert), then predict the scan with it."""
        scan, path = self.dock.scan, self.combo.currentData()
        if scan is None or not path:
            show_error("open a scan and train a model first")
            return
        train = self.dock.train_section
        if train.running or not self.dock.writable():
            return
        try:
            runs.set_current(scan.path, path)
        except ScanError as exc:
            show_error(str(exc))
            return
        self.refresh()
        train.predict()
        chosen = self.combo.currentText().removesuffix(" ✓")
        train.status.setText(f"{chosen} is current: predicting the scan with it")


def _short(info: runs.RunInfo) -> str:
    """``run 3: DSC 0.84, 120 steps``: what fits the dock's width (the rest in the tooltip)."""
    dsc = f"DSC {info.best_dsc:.2f}" if info.best_dsc == info.best_dsc else "no DSC"
    ended = info.summary.get("steps_done", "?")
    steps = f"cancelled at {ended}" if info.status == runs.CANCELLED else f"{ended} steps"
    if "steps_done" not in info.summary:  # loaded, or from before run.json
        return f"run {info.number}: {info.summary.get('kind', 'model')}"
    return f"run {info.number}: {dsc}, {steps}"


def conclude(dock, out: Path, before: Path | None) -> bool:
    """After a training run into ``out`` ends (finished or cancelled): make it current if
    ``train.runs.verdict`` says so, say what happened; True when it became current (the scan
    is then predicted with it)."""
    scan = dock.scan
    if scan is None:
        return False
    listed = runs.list_runs(scan.path)
    new = next((i for i in listed if i.path == out), None)
    old = next((i for i in listed if before is not None and i.path == before), None)
    if new is None:  # stopped before its first validation saved a model
        summary = runs.read_summary(out)
        ended = f"{summary.get('status', 'stopped')} at step {summary.get('steps_done', '?')}"
        kept = f"kept run {old.number} as current" if old is not None else "no model yet"
        adopt, line = False, f"the run {ended} before it saved a model: {kept}"
    else:
        adopt, line = runs.verdict(new, old)
    # the notification short enough for napari's toast (it cuts long ones); the whole line
    # goes to the status line
    if adopt:  # said in the status line only: a toast would cover the slice slider
        runs.set_current(scan.path, out)
    else:
        if old is not None:  # pinned: without a choice stored the newest run would be current
            runs.set_current(scan.path, old.path)
        show_warning(f"kept run {old.number} as current: see the dock"
                     if old is not None else line)  # fmt: skip
    dock.train_section.status.setText(line)
    dock.train_section.runs_row.refresh()
    return adopt
