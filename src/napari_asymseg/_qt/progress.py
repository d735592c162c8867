"""The dock's own progress bar for training, estimating and predicting.

Not napari's ``progress``: while one of those is open, napari's activity button animates, and
since the canvas is an OpenGL widget every frame of that animation re-composes the whole
window. Without a GPU (Mesa's llvmpipe) training in the dock then ran 2.5 times slower than on
the command line, and an open bar that never moved still took about 30% of a core
(``benchmarks/gui_cost.py``, docs/benchmarks.md); it also opened the activity panel over the
canvas. This bar repaints only when its value moves, at most four times a second.
"""

from __future__ import annotations

import time

from qtpy.QtWidgets import QProgressBar

MIN_INTERVAL_S = 0.25
"""The bar repaints at most this often (the last value is always shown)."""


class RunProgress(QProgressBar):
    """``start(total, what)``, ``set(n, note)``, ``finish()``; hidden while nothing runs."""

    def __init__(self) -> None:
        super().__init__()
        self.setVisible(False)
        self.what = ""
        self.total: int | None = None
        self.n = 0
        self.note = ""
        self._shown_at = 0.0
        self._started = 0.0  # when start() was called: the pace of time_left()

    def start(self, total: int | None, what: str) -> None:
        # an unknown total shows the text only: an indeterminate QProgressBar animates
        self.total = int(total) if total else None
        self.setRange(0, self.total or 1)
        self.what, self.n, self.note, self._shown_at = what, 0, "", 0.0
        self._started = time.perf_counter()
        self._show(force=True)
        self.setVisible(True)

    def retotal(self, total: int) -> None:
        """A new total while running (a time budget planned the training's steps)."""
        self.total = int(total)
        self.setRange(0, self.total)

    def set(self, n: int, note: str = "") -> None:
        self.n, self.note = n, note
        self._show(force=n >= self.maximum())

    def step(self, note: str = "") -> None:
        self.set(self.n + 1, note)

    def finish(self) -> None:
        self.setVisible(False)

    def time_left(self, now: float | None = None) -> str:
        """``about 1:20 left`` from the pace so far (known total, a few steps done), else ""."""
        if not self.total or self.n < 3 or self.n >= self.total:
            return ""
        elapsed = (now if now is not None else time.perf_counter()) - self._started
        left = round(elapsed / self.n * (self.total - self.n))
        return f"about {left // 60}:{left % 60:02d} left"

    def _show(self, *, force: bool) -> None:
        now = time.perf_counter()
        if not force and now - self._shown_at < MIN_INTERVAL_S:
            return
        self._shown_at = now
        count = f": {min(self.n, self.total)} of {self.total}" if self.total else "…"
        note = ", ".join(x for x in (self.note, self.time_left(now)) if x)
        self.setFormat(f"{self.what}{count}" + (f" ({note})" if note else ""))
        self.setValue(min(self.n, self.maximum()))
