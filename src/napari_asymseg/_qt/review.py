"""The Review section: the false-negative heatmap, the review queue, and the loop back to training.

The active-learning loop: predict -> the heatmap and the queue appear -> the viewer goes to the
top item -> one click (or key) answers it: **Lesion** (A) or **Not lesion** (R); on a
suspected miss, paint what is missed and press Lesion to mark it painted -> after a few
answers the model is fine-tuned from where it was (a warm start, a few steps) -> the new
prediction re-ranks the queue. Every answer is written through napari's history (Ctrl+Z undoes
it in the layer) and can be taken back with **Undo answer** (U); the queue and its answers are
stored in the scan. See :mod:`napari_asymseg.review.queue` for what the items are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.colormaps.standardize_color import transform_color
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt import heap
from napari_asymseg._qt.layers import go_to, layer_for, risk_layer
from napari_asymseg._qt.review_items import (
    COLORS,
    DONE_COLOR,
    item_text,
    item_tooltip,
    show_points,
)
from napari_asymseg.errors import ScanError, error_message
from napari_asymseg.review import queue as rq

FINE_TUNE_STEPS = 40
"""Steps of the Review section's fine-tune: a warm start needs far fewer than a new model."""
FINE_TUNE_LR = 1e-3
"""Its peak learning rate: at the default 3e-3, a warm start first lost most of what it knew
(validation DSC 0.70 -> 0.10 at step 20 in benchmarks/active_learning.py's pilot)."""
FINE_TUNE_AFTER = 5
"""Answers after which the fine-tune starts by itself (0: only by its button)."""
KEYS = {"accept": "a", "reject": "r", "next": "n", "previous": "Shift-N", "undo": "u"}
"""The viewer's shortcuts (none is taken by napari's labels layer)."""
KEYS_LINE = "Keys: A lesion · R not lesion · N / Shift+N next / previous item · U undo answer"


class ReviewSection(QWidget):
    """Heatmap opacity, the review queue, one-click answers with undo, and a fast fine-tune."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        self.items: list[rq.Item] = []
        self.ranked = False  # a queue was ranked for this scan (stored or just now)
        self.worker: Any = None
        self.answers_since_tune, self.top_pending = 0, False
        self.undo_stack: list[tuple[int, tuple[np.ndarray, ...], np.ndarray]] = []
        """(item id, the voxels its answer wrote, their codes before): Undo answer's memory."""
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._heatmap_row())
        self.find_button = QPushButton("Rank what to review")
        self.find_button.setToolTip(
            "rank the regions where lesion is probably missed and the regions the model calls "
            "lesion that may not be, by the voxels an answer would correct"
        )
        self.find_button.clicked.connect(self.find_items)
        layout.addWidget(self.find_button)
        self.summary = QLabel("Predict the scan to see what to review.")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.list = QListWidget()
        self.list.setToolTip(
            "click an item to go there; answer with Lesion (A) or Not lesion (R), N for the next"
        )
        self.list.setMinimumHeight(150)
        self.list.currentRowChanged.connect(self._on_row)
        layout.addWidget(self.list)
        layout.addLayout(self._answer_buttons())
        layout.addLayout(self._tune_buttons())
        keys = QLabel(KEYS_LINE)
        keys.setWordWrap(True)
        keys.setToolTip("the viewer's keys for the review (the canvas must have the focus)")
        layout.addWidget(keys)
        self._bind_keys()

    def _heatmap_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel("heatmap opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(70)
        self.opacity.setToolTip("opacity of the false-negative heatmap (0 hides it)")
        self.opacity.valueChanged.connect(self._set_opacity)
        row.addWidget(self.opacity)
        return row

    def _answer_buttons(self) -> QHBoxLayout:
        answers = QHBoxLayout()
        self.lesion_button = QPushButton("Lesion (A)")
        self.lesion_button.setToolTip(
            "a false alarm that is lesion after all: paint it lesion; a suspected miss: "
            "you painted it, mark it so"
        )
        self.lesion_button.clicked.connect(lambda: self.answer(rq.LESION))
        self.not_lesion_button = QPushButton("Not lesion (R)")
        self.not_lesion_button.setToolTip("paint the item's region background (undo: U or Ctrl+Z)")
        self.not_lesion_button.clicked.connect(lambda: self.answer(rq.NOT_LESION))
        self.next_button = QPushButton("Next (N)")
        self.next_button.setToolTip("go to the next open item")
        self.next_button.clicked.connect(self.next_item)
        for b in (self.lesion_button, self.not_lesion_button, self.next_button):
            answers.addWidget(b)
        return answers

    def _tune_buttons(self) -> QVBoxLayout:
        box = QVBoxLayout()
        buttons = QHBoxLayout()
        self.undo_button = QPushButton("Undo answer (U)")
        self.undo_button.setToolTip("take the last answer back: its voxels as they were")
        self.undo_button.clicked.connect(self.undo_answer)
        self.finetune_button = QPushButton("Fine-tune now")
        self.finetune_button.setToolTip(
            f"warm start from the current model, {FINE_TUNE_STEPS} steps, then predict and "
            "rank again"
        )
        self.finetune_button.clicked.connect(self.fine_tune)
        buttons.addWidget(self.undo_button)
        buttons.addWidget(self.finetune_button)
        box.addLayout(buttons)
        auto = QHBoxLayout()
        auto.addWidget(QLabel("fine-tune after"))
        self.tune_after = QSpinBox()
        self.tune_after.setRange(0, 100)
        self.tune_after.setValue(FINE_TUNE_AFTER)
        self.tune_after.setToolTip("answers after which the fine-tune starts by itself (0: never)")
        auto.addWidget(self.tune_after)
        auto.addWidget(QLabel("answers"))
        auto.addStretch(1)
        box.addLayout(auto)
        return box

    def _bind_keys(self) -> None:
        actions = {
            "accept": lambda: self.answer(rq.LESION),
            "reject": lambda: self.answer(rq.NOT_LESION),
            "next": self.next_item,
            "previous": self.previous_item,
            "undo": self.undo_answer,
        }
        for name, key in KEYS.items():
            act = actions[name]
            self.dock.viewer.bind_key(key, lambda _viewer, act=act: act(), overwrite=True)

    # -- the queue -----------------------------------------------------------------------------
    def load(self) -> None:
        """Show the queue stored in the scan (when a scan opens)."""
        scan = self.dock.scan
        self.items, self.undo_stack, self.answers_since_tune = [], [], 0
        self.ranked = False
        if scan is not None:
            try:
                queue = rq.stored_queue(scan)
            except ScanError as exc:
                show_error(str(exc))
            else:
                self.items = list(queue.items) if queue is not None else []
                self.ranked = queue is not None
        self._show()

    def find_items(self) -> None:
        """Rank the queue again in a thread (reading the results may take a while)."""
        scan = self.dock.scan
        if scan is None:
            show_error("open a scan first")
            return
        if self.worker is not None or not self.dock.writable():
            return
        self.dock.save_now()  # the queue sees the annotations as painted
        worker: Any = create_worker(rq.build_queue, scan, _ignore_errors=True)  # shown below
        worker.returned.connect(self._on_queue)
        worker.errored.connect(lambda exc: show_error(error_message(exc)))
        worker.finished.connect(self._on_worker_done)
        self.worker = worker
        self._set_busy(True)
        self.summary.setText("ranking what to review…")
        worker.start()

    def _on_worker_done(self) -> None:
        self.worker = None
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        for b in (self.find_button, self.lesion_button, self.not_lesion_button, self.undo_button):
            b.setEnabled(not busy)

    def _on_queue(self, queue: rq.Queue) -> None:
        self.ranked = True
        self.items = list(queue.items)
        self.undo_stack = []  # the answers now live in the annotations and the stored queue
        self._show()
        self.top_pending = bool(queue.open)  # the top item, on screen, a turn later: the
        QTimer.singleShot(50, self._show_top)  # list and rings are drawn first (two stalls)
        heap.settle()

    def _show_top(self) -> None:
        if self.top_pending and self.items:  # unless an item was picked meanwhile
            self.list.setCurrentRow(0)
            QTimer.singleShot(50, self._show_answers)  # a turn later: two shorter stalls
        self.top_pending = False

    def _show_answers(self) -> None:
        """The next step in view: the list and its answer buttons, unfolded if need be."""
        self.dock.sections["Review"].set_expanded(True)
        self.dock.scroll_area.ensureWidgetVisible(self.lesion_button, 0, 10)

    def _refresh_item(self, row: int) -> None:
        """Show one item's new status: its line, the summary, its point (not a full rebuild)."""
        item, entry = self.items[row], self.list.item(row)
        if entry is not None:
            entry.setText(item_text(item))
            entry.setToolTip(item_tooltip(item))
            entry.setForeground(QColor(DONE_COLOR if item.answered else COLORS[item.kind]))
        self._summarise()
        scan = self.dock.scan
        layer = layer_for(self.dock.viewer, scan.path, "flags") if scan is not None else None
        if layer is not None and len(layer.data) == len(self.items):
            colors = np.array(layer.border_color, copy=True)
            colors[row] = transform_color(DONE_COLOR if item.answered else COLORS[item.kind])[0]
            layer.border_color = colors

    def _summarise(self) -> None:
        open_items = [i for i in self.items if not i.answered]
        misses = sum(i.kind == rq.MISS for i in open_items)
        self.summary.setText(
            f"{len(open_items)} to review ({misses} suspected miss(es), "
            f"{len(open_items) - misses} suspected false alarm(s)), "
            f"{len(self.items) - len(open_items)} answered. Answer with A / R, N for next."
        )

    def _show(self) -> None:
        current = self.list.currentRow()
        self.list.blockSignals(True)
        self.list.clear()
        for item in self.items:
            entry = QListWidgetItem(item_text(item))
            entry.setToolTip(item_tooltip(item))
            entry.setForeground(QColor(DONE_COLOR if item.answered else COLORS[item.kind]))
            self.list.addItem(entry)
        if 0 <= current < len(self.items):
            self.list.setCurrentRow(current)
        self.list.blockSignals(False)
        if self.items:
            self._summarise()
        elif self.dock.scan is not None and "risk" in self.dock.scan.results():
            self.summary.setText(
                "Nothing to review: no suspected miss or false alarm."
                if self.ranked
                else "Not ranked yet: click Rank what to review."
            )
        show_points(self.dock.viewer, self.dock.scan, self.items, self.dock.annotations_layer)

    def _set_opacity(self, value: int) -> None:
        scan = self.dock.scan
        layer = layer_for(self.dock.viewer, scan.path, "risk") if scan is not None else None
        if layer is not None:
            layer.opacity = value / 100
            layer.visible = value > 0

    # -- navigation ----------------------------------------------------------------------------
    def _on_row(self, row: int) -> None:
        self.top_pending = False
        if 0 <= row < len(self.items):
            self.jump_to(self.items[row])

    def jump_to(self, item: rq.Item) -> None:
        """Show the item's slice, centred, with the brush ready on the annotations."""
        scan = self.dock.scan
        if scan is None:
            return
        viewer = self.dock.viewer
        go_to(viewer, scan.spacing, item.center)
        layer = self.dock.annotations_layer
        if layer is not None:
            viewer.layers.selection.active = layer
        risk_layer(viewer, scan).visible = self.opacity.value() > 0

    def current_item(self) -> rq.Item | None:
        row = self.list.currentRow()
        return self.items[row] if 0 <= row < len(self.items) else None

    def next_item(self) -> None:
        """Go to the next open item after the current one (wrapping round)."""
        self._go(+1)

    def previous_item(self) -> None:
        """Go to the open item before the current one (wrapping round)."""
        self._go(-1)

    def _go(self, direction: int) -> None:
        n = len(self.items)
        start = self.list.currentRow()
        for k in range(1, n + 1):
            row = (start + direction * k) % n
            if not self.items[row].answered:
                self.list.setCurrentRow(row)
                return
        show_info("nothing left to review: fine-tune, or predict again to rank anew")

    # -- answers -------------------------------------------------------------------------------
    def answer(self, verdict: str) -> None:
        """Answer the current item: write its region into the annotations (undoably), store
        the answer, go to the next open item; fine-tune after every few answers."""
        scan, item, layer = self.dock.scan, self.current_item(), self.dock.annotations_layer
        if scan is None or layer is None:
            show_error("open a scan first")
            return
        if item is None:
            show_error("pick an item in the review list first")
            return
        if item.answered:
            show_info(f"item #{item.rank} is answered already: Undo answer (U) takes it back")
            return
        if self.worker is not None or not self.dock.writable():
            return
        results = scan.results()
        if "prediction" not in results or "risk" not in results:
            show_error("the prediction is gone: predict the scan again")
            return
        indices, codes = rq.answer_writes(
            item, verdict, results["prediction"], layer.data, results["risk"]
        )
        before = np.array(layer.data[indices], copy=True)
        if indices[0].size:
            layer.data_setitem(indices, codes)  # through napari's history: Ctrl+Z undoes it
        try:
            queue = rq.set_answered(scan, item, verdict)
        except ScanError as exc:
            if indices[0].size:
                layer.data_setitem(indices, before)
            show_error(str(exc))
            return
        self.undo_stack.append((item.id, indices, before))
        self.items = list(queue.items)  # the same order: only the status changed
        self._refresh_item(next(k for k, i in enumerate(self.items) if i.id == item.id))
        self.answers_since_tune += 1
        after = self.tune_after.value()
        if after and self.answers_since_tune >= after and self.dock.current_model() is not None:
            self.fine_tune()
        else:
            self.next_item()

    def undo_answer(self) -> None:
        """Take the last answer back: its voxels get their codes from before, the item reopens."""
        scan, layer = self.dock.scan, self.dock.annotations_layer
        if not self.undo_stack or scan is None or layer is None:
            show_info("no answer to undo")
            return
        if self.worker is not None or not self.dock.writable():
            return
        item_id, indices, before = self.undo_stack.pop()
        if indices[0].size:
            layer.data_setitem(indices, before)
        item = next((i for i in self.items if i.id == item_id), None)
        if item is not None:
            try:
                self.items = list(rq.set_answered(scan, item, rq.OPEN).items)
            except ScanError as exc:
                show_error(str(exc))
                return
            self.answers_since_tune = max(0, self.answers_since_tune - 1)
            row = next(k for k, i in enumerate(self.items) if i.id == item_id)
            self._refresh_item(row)
            self.list.setCurrentRow(row)

    def fine_tune(self) -> None:
        """Warm-start training from the current model on the annotations as they are now; the
        prediction that follows ranks the queue again."""
        train = self.dock.train_section
        if self.dock.current_model() is None:
            show_error("no model yet: train a new model first (Train, in the section above)")
            return
        if train.running:
            return
        self.answers_since_tune = 0
        show_info(f"fine-tuning the current model for {FINE_TUNE_STEPS} steps")
        train.start(fine_tune=True, steps=FINE_TUNE_STEPS, lr=FINE_TUNE_LR)
