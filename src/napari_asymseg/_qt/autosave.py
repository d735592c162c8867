"""Save painted annotations back to the scan store, a few seconds after each edit."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from napari_asymseg.errors import ClearError, error_message
from napari_asymseg.store.scan import Scan

AUTOSAVE_MS = 2000


class AnnotationAutosave(QObject):
    """Watch an annotations labels layer and write changed slabs to its scan.

    Edits are detected by comparing the layer with a snapshot of what was last saved, slab by
    slab, after any paint / fill / undo / data event. This needs no knowledge of napari's undo
    internals, and writes only the z-slabs that changed (each chunk atomically), so killing
    napari loses at most the last ``interval_ms`` of painting.
    """

    saved = Signal(int)  # number of slices written
    failed = Signal(str)  # why a timed save failed; the edits stay pending and are retried

    def __init__(self, layer, scan: Scan, interval_ms: int = AUTOSAVE_MS) -> None:
        super().__init__()
        self.layer = layer
        self.scan = scan
        self._snapshot = np.array(layer.data, dtype=np.uint8, copy=True)
        self._dirty = False
        self._last_failure = ""
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._timed_flush)
        self._timer.start()
        for name in ("paint", "data", "labels_update", "set_data"):
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.connect(self._mark_dirty)

    def _mark_dirty(self, event=None) -> None:
        self._dirty = True

    def _timed_flush(self) -> None:
        """The timer's save: a failure (a full disk) is reported once, never lost or raised."""
        try:
            self.flush()
        except (ClearError, OSError) as exc:
            self._dirty = True  # the painting is still in the layer: try again next tick
            kind = f"{type(exc).__name__}{getattr(exc, 'errno', '')}"
            if kind != self._last_failure:  # once per kind of failure, not once per tick
                self._last_failure = kind
                self.failed.emit(f"annotations not saved yet: {error_message(exc)}")
        else:
            self._last_failure = ""

    def flush(self, force: bool = False) -> int:
        """Write the slabs that differ from the last save; returns how many slices."""
        if not (self._dirty or force):
            return 0
        self._dirty = False
        data = np.asarray(self.layer.data)
        if data.shape != self._snapshot.shape:
            return 0
        changed = np.flatnonzero((data != self._snapshot).any(axis=(1, 2)))
        if changed.size == 0:
            return 0
        # One contiguous region from the first to the last changed slice: fewer, larger writes.
        region = (slice(int(changed[0]), int(changed[-1]) + 1),)
        block = data[region].astype(np.uint8)
        self.scan.write_annotations(block, region=region)
        self._snapshot[region] = block
        self.saved.emit(int(changed.size))
        return int(changed.size)

    def stop(self) -> None:
        self._timer.stop()
        self.flush(force=True)
        for name in ("paint", "data", "labels_update", "set_data"):
            emitter = getattr(self.layer.events, name, None)
            if emitter is not None:
                emitter.disconnect(self._mark_dirty)
