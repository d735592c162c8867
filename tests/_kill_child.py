"""The painting side of the kill tests, run as its own process and SIGKILLed by the test.

``python _kill_child.py SCAN LOG`` opens SCAN like the dock does (lock, annotations layer,
the dock's autosave at its real interval) and paints one small stroke every ``PAINT_MS``,
forever.
It appends to LOG, flushed at once so that the lines survive the kill:

    ready T                 painting starts
    painted N T             stroke N is in the layer
    saved N T               autosave has written strokes 1..N to the scan

T is ``time.time()``. Strokes are disjoint 2x2 squares (``stroke_box``), so the test can tell
from the saved annotations exactly which strokes reached the disk.
"""

from __future__ import annotations

import sys
import time

import numpy as np

SHAPE = (16, 40, 40)
PAINT_MS = 20  # one stroke per tick of the painting timer


def stroke_box(n: int) -> tuple[int, slice, slice]:
    """Stroke ``n`` (1-based): slice n % Z, then 2x2 squares across the slice."""
    z, b = n % SHAPE[0], (n // SHAPE[0]) % ((SHAPE[1] // 2) * (SHAPE[2] // 2))
    y, x = 2 * (b // (SHAPE[2] // 2)), 2 * (b % (SHAPE[2] // 2))
    return z, slice(y, y + 2), slice(x, x + 2)


def stroke_value(n: int) -> int:
    return 2 if n % 3 == 0 else 1  # foreground or background, as a user paints both


def main(scan_path: str, log_path: str) -> None:
    from napari.layers import Labels
    from qtpy.QtCore import QCoreApplication, QTimer

    from napari_asymseg._qt.autosave import AnnotationAutosave
    from napari_asymseg.store.lock import ScanLock
    from napari_asymseg.store.scan import Scan

    app = QCoreApplication([])
    lock = ScanLock(scan_path, "kill test").acquire()  # noqa: F841 - held until killed
    scan = Scan.open(scan_path)
    layer = Labels(scan.read_annotations())
    autosave = AnnotationAutosave(layer, scan)  # the dock's interval
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    state = {"n": 0}

    def note(line: str) -> None:
        log.write(f"{line} {time.time():.4f}\n")
        log.flush()

    def paint() -> None:
        n = state["n"] + 1
        z, ys, xs = stroke_box(n)
        yy, xx = np.mgrid[ys, xs]
        layer.data_setitem((np.full(yy.size, z), yy.ravel(), xx.ravel()), stroke_value(n))
        state["n"] = n
        note(f"painted {n}")

    autosave.saved.connect(lambda _slices: note(f"saved {state['n']}"))
    timer = QTimer()
    timer.timeout.connect(paint)
    timer.start(PAINT_MS)
    note("ready 0")
    app.exec()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
