"""The Review section: the false-negative heatmap, the review queue, and the loop back to training.

The active-learning loop: predict -> the heatmap and the queue appear -> the viewer goes to the
top item -> one click (or key) answers it: **Lesion** (A) or **Not lesion** (R); on a
suspected miss, paint what is missed and press Lesion to mark it painted -> after a few
answers the model is fine-tuned from where it was (a warm start, a few steps) -> the new
prediction re-ranks the queue. Every answer is written through napari's history (Ctrl+Z undoes
it in the layer) and can be taken back with **Undo answer** (U), which keeps what was painted
since (``review_answers.py``); the keys work on the canvas and in the section
(``review_keys.py``). The queue and its answers are stored in the scan; a stored queue older
than the stored prediction is not shown (its answers would land where the new prediction may
say the opposite): the section says so and offers to rank again. See
:mod:`napari_asymseg.review.queue` for what the items are.
"""

from __future__ import annotations

from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import (
    Notification,
    NotificationSeverity,
    notification_manager,
    show_error,
    show_info,
)
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt import heap
from napari_asymseg._qt.layers import go_to, layer_for, risk_layer
from napari_asymseg._qt.review_answers import Written, take_back, write_answer
from napari_asymseg._qt.review_items import (
    fill_list,
    recolor_point,
    show_entry,
    show_points,
    summary_text,
)
from napari_asymseg._qt.review_keys import KEYS as KEYS
from napari_asymseg._qt.review_keys import KEYS_LINE, bind_keys
from napari_asymseg.errors import ScanError, error_message
from napari_asymseg.review import queue as rq

FINE_TUNE_STEPS = 40
"""Steps of the Review section's fine-tune: a warm start needs far fewer than a new model."""
FINE_TUNE_LR = 1e-3
"""Its peak learning rate: at the default 3e-3, a warm start first lost most of what it knew
(validation DSC 0.70 -> 0.10 at step 20 in benchmarks/active_learning.py's pilot)."""
FINE_TUNE_AFTER = 5
"""Answers after which the fine-tune starts by itself (0: only by its button)."""
STALE_FIX = "rank it again (Rank what to review); the answers you gave stay"
"""The dock's fix for a stored queue older than the prediction (the CLI's: review again)."""


def offer(message: str, action: str, callback) -> None:
    """A notification with a button that does ``callback``: the one-line refusal and its fix."""
    notification_manager.dispatch(
        Notification(message, NotificationSeverity.INFO, actions=[(action, lambda _: callback())])
    )


class ReviewSection(QWidget):
    """Heatmap opacity, the review queue, one-click answers with undo, and a fast fine-tune."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        self.items: list[rq.Item] = []
        self.ranked = False  # a queue was ranked for this scan (stored or just now)
        self.worker: Any = None
        self.answers_since_tune, self.top_pending = 0, False
        self.undo_stack: list[Written] = []
        """What each answer wrote, and what was there before: Undo answer's memory."""
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
        keys.setToolTip("the review's keys: on the canvas, the review list or its buttons")
        layout.addWidget(keys)
        self.shortcuts = bind_keys(
            dock.viewer,
            self,
            {
                "accept": lambda: self.answer(rq.LESION),
                "reject": lambda: self.answer(rq.NOT_LESION),
                "next": self.next_item,
                "previous": self.previous_item,
                "undo": self.undo_answer,
            },
        )

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

    # -- the queue -----------------------------------------------------------------------------
    def load(self) -> None:
        """Show the queue stored in the scan (when a scan opens), unless it was ranked on
        another prediction than the stored one: then say so and offer to rank again."""
        scan = self.dock.scan
        self.items, self.undo_stack, self.answers_since_tune = [], [], 0
        self.ranked, stale = False, None
        if scan is not None:
            try:
                queue = rq.stored_queue(scan)
                if queue is not None:
                    rq.check_current(scan, queue, fix=STALE_FIX)  # as the CLI's answers do
            except rq.StaleQueue as exc:
                stale = str(exc)
            except ScanError as exc:
                show_error(str(exc))
            else:
                self.items = list(queue.items) if queue is not None else []
                self.ranked = queue is not None
        self._show()
        if stale is not None:
            self.summary.setText(stale)
            offer(stale, "Rank again", self.find_items)

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
        # only while the scan it ranked is still the open one (another may be opened meanwhile)
        worker.returned.connect(
            lambda queue: self._on_queue(queue) if self.dock.scan is scan else None
        )
        worker.errored.connect(self._on_rank_error)
        worker.finished.connect(self._on_worker_done)
        self.worker = worker
        self._set_busy(True)
        self.summary.setText("ranking what to review…")
        worker.start()

    def _on_rank_error(self, exc: Exception) -> None:
        show_error(error_message(exc))
        self.load()  # the list shown may describe an older prediction: checked again

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
        show_entry(self.list.item(row), self.items[row])
        self.summary.setText(summary_text(self.items))
        recolor_point(self.dock.viewer, self.dock.scan, self.items, row)

    def _show(self) -> None:
        fill_list(self.list, self.items)
        if self.items:
            self.summary.setText(summary_text(self.items))
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
        try:  # recorded as a review answer (store/provenance.py), one undo step in the layer
            written = write_answer(layer, item, verdict, results, self.dock.autosave)
        except Exception as exc:  # noqa: BLE001 - a full disk: nothing written, one line
            show_error(f"the answer was not saved: {error_message(exc)}")
            return
        try:
            queue = rq.set_answered(scan, item, verdict)
        except ScanError as exc:
            take_back(layer, written)
            show_error(str(exc))
            return
        self.undo_stack.append(written)
        self.items = list(queue.items)  # the same order: only the status changed
        self._refresh_item(next(k for k, i in enumerate(self.items) if i.id == item.id))
        self.answers_since_tune += 1
        after = self.tune_after.value()
        if after and self.answers_since_tune >= after and self.dock.current_model() is not None:
            self.fine_tune()
        else:
            self.next_item()

    def undo_answer(self) -> None:
        """Take the last answer back: the voxels that still hold what it wrote get their codes
        from before (the ones painted since are kept, and counted), the item reopens."""
        scan, layer = self.dock.scan, self.dock.annotations_layer
        if not self.undo_stack or scan is None or layer is None:
            show_info("no answer to undo")
            return
        if self.worker is not None or not self.dock.writable():
            return
        written = self.undo_stack.pop()
        item_id, kept = written.item_id, take_back(layer, written)
        if kept:
            show_info(
                f"answer taken back; {kept:,} voxel(s) you painted since were kept as painted"
            )
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
