"""Save painted annotations back to the scan store, a few seconds after each edit."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from napari_asymseg.errors import ScanError, error_message
from napari_asymseg.store.scan import Scan

AUTOSAVE_MS = 2000
_EDIT_EVENTS = ("paint", "data", "labels_update", "set_data")


class AnnotationAutosave(QObject):
    """Watch an annotations labels layer and write changed slabs to its scan.

    Edits are detected by comparing the layer with a snapshot of what was last saved, slab by
    slab, after any paint / fill / undo / data event. This needs no knowledge of napari's undo
    internals, and writes only the z-slabs that changed (each chunk atomically), so killing
    napari loses at most the last ``interval_ms`` of painting.

    A save that fails (a full disk, a read-only folder, a layer no longer the scan's size)
    leaves the edits pending: every tick tries again until one succeeds. ``failed`` says why
    once per kind of failure, ``recovered`` once when saving works again.
    """

    saved = Signal(int)  # number of slices written
    failed = Signal(str)  # why a save failed; the edits stay pending and are retried
    recovered = Signal(str)  # a save worked again after a failure

    def __init__(self, layer, scan: Scan, interval_ms: int = AUTOSAVE_MS) -> None:
        super().__init__()
        self.layer = layer
        self.scan = scan
        self._snapshot = np.array(layer.data, dtype=np.uint8, copy=True)
        self._dirty = False  # edits since the last successful save
        self._last_failure = ""  # the failure last reported; "" while saving works
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._timed_flush)
        self._timer.start()
        for name in _EDIT_EVENTS:
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.connect(self._mark_dirty)

    @property
    def pending(self) -> bool:
        """Whether edits wait to be saved (painted since the last save, or a save failed)."""
        return self._dirty

    def _mark_dirty(self, event=None) -> None:
        self._dirty = True

    def _timed_flush(self) -> None:
        self.save()

    def save(self, force: bool = False, *, tell: bool = False) -> int | None:
        """Write the pending edits, never raising: the number of slices written, or None when
        the save failed.

        A failure (a full disk, or anything else the store raises) keeps the edits pending for
        the next tick and is reported through ``failed`` once per kind of failure, or every
        time with ``tell`` (a save the user asked for, e.g. before training).
        """
        try:
            written = self.flush(force)
        except Exception as exc:  # noqa: BLE001 - a timer's save must never lose or raise
            kind = f"{type(exc).__name__}{getattr(exc, 'errno', '')}"
            if tell or kind != self._last_failure:  # once per kind, not once per tick
                self.failed.emit(f"annotations not saved yet: {error_message(exc)}")
            self._last_failure = kind
            return None
        if self._last_failure:
            self._last_failure = ""
            self.recovered.emit(f"annotations saved again: {self.scan.path.name} is up to date")
        return written

    def flush(self, force: bool = False) -> int:
        """Write the slabs that differ from the last save; returns how many slices.

        Raises what the store raises; the edits then stay pending (the dirty flag is cleared
        only once they are written).
        """
        if not (self._dirty or force):
            return 0
        data = np.asarray(self.layer.data)
        if data.shape != self._snapshot.shape:
            size, scan_size = ("×".join(map(str, s)) for s in (data.shape, self._snapshot.shape))
            raise ScanError(
                f"the annotations layer is {size} voxels but the scan {scan_size}: nothing "
                "painted on it since is saved; open the scan again to paint on it"
            )
        changed = np.flatnonzero((data != self._snapshot).any(axis=(1, 2)))
        if changed.size == 0:
            self._dirty = False
            return 0
        # One contiguous region from the first to the last changed slice: fewer, larger writes.
        region = (slice(int(changed[0]), int(changed[-1]) + 1),)
        block = data[region].astype(np.uint8)
        self.scan.write_annotations(block, region=region)
        self._snapshot[region] = block
        self._dirty = False
        self.saved.emit(int(changed.size))
        return int(changed.size)

    def write_tool(self, indices: tuple[np.ndarray, ...], values: np.ndarray, source: int) -> int:
        """A tool's edit (fill between slices, grow): saved with its ``source``, then put into
        the layer as one undoable step.

        The pending painting is saved first (as painted), then the tool's voxels are written to
        the scan with ``source`` (:mod:`napari_asymseg.store.provenance`), and only then set in
        the layer through napari's history (one ``data_setitem``: one Ctrl+Z undoes it all; the
        undo is saved as painting, like any edit). A failure raises before the layer changes:
        the store never holds a tool's voxels recorded as painted. Returns the voxels written.
        """
        self.flush(force=True)  # the painting before the tool: recorded as painted
        if indices[0].size == 0:
            return 0
        box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in indices)
        block = self._snapshot[box].copy()  # the saved state: equal to the layer after the flush
        block[tuple(i - s.start for i, s in zip(indices, box, strict=True))] = values
        self.scan.write_annotations(block, region=box, source=source)
        self._snapshot[box] = block
        self.layer.data_setitem(indices, np.asarray(values, np.uint8))
        self.saved.emit(box[0].stop - box[0].start)
        return int(indices[0].size)

    def stop(self) -> None:
        """Stop watching the layer (the caller saves the last edits first: :meth:`save`)."""
        self._timer.stop()
        for name in _EDIT_EVENTS:
            emitter = getattr(self.layer.events, name, None)
            if emitter is not None:
                emitter.disconnect(self._mark_dirty)
