"""The autosave on its own (a labels layer, no viewer): failed saves are retried until one
works, said once when they fail and once when they work again, never dropped in silence."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from napari.layers import Labels

from napari_asymseg._qt.autosave import AnnotationAutosave
from napari_asymseg.store.scan import Scan
from test_bad_input import fail_writes_below

pytestmark = pytest.mark.viewer


@pytest.fixture
def watched(scan, qapp):
    """The autosave of a layer showing ``scan``'s annotations, and what it said."""
    layer = Labels(scan.read_annotations())
    autosave = AnnotationAutosave(layer, scan, interval_ms=60_000)  # ticks called by hand
    said: list[tuple[str, str]] = []
    autosave.failed.connect(lambda line: said.append(("failed", line)))
    autosave.recovered.connect(lambda line: said.append(("recovered", line)))
    yield layer, autosave, said
    autosave.stop()


def stroke(layer, value=2) -> None:
    layer.data_setitem((np.array([1]), np.array([2]), np.array([3])), value)


def on_disk(scan) -> int:
    return int(Scan.open(scan.path, mode="r").annotations[1, 2, 3])


def test_a_failed_save_is_retried_each_tick_and_said_once(watched, scan, monkeypatch):
    layer, autosave, said = watched
    fail_writes_below(monkeypatch, scan.path / "annotations", errno.ENOSPC)
    stroke(layer)
    for _ in range(3):
        autosave._timed_flush()
    assert [kind for kind, _ in said] == ["failed"] and "no space left" in said[0][1]
    assert autosave.pending and on_disk(scan) == 0
    monkeypatch.undo()  # room again: the next tick writes it, and says so once
    autosave._timed_flush()
    assert on_disk(scan) == 2 and not autosave.pending
    autosave._timed_flush()
    assert [kind for kind, _ in said] == ["failed", "recovered"]
    assert scan.path.name in said[1][1]


def test_a_failed_save_asked_for_stays_pending(watched, scan, monkeypatch):
    """A save the user asked for (before training) that fails is said, and the next tick
    retries it (the dirty flag was cleared before the write: the edits waited for the next
    stroke)."""
    layer, autosave, said = watched
    fail_writes_below(monkeypatch, scan.path / "annotations", errno.EROFS)
    stroke(layer)
    assert autosave.save(force=True, tell=True) is None
    assert autosave.save(force=True, tell=True) is None  # asked again: said again
    assert [kind for kind, _ in said] == ["failed", "failed"]
    monkeypatch.undo()
    autosave._timed_flush()  # no stroke since
    assert on_disk(scan) == 2


def test_any_failure_of_the_store_is_kept_pending_not_raised(watched, scan, monkeypatch):
    layer, autosave, said = watched

    def broken(*_args, **_kwargs):
        raise RuntimeError("chunk store unavailable")

    monkeypatch.setattr(scan, "write_annotations", broken)
    stroke(layer)
    autosave._timed_flush()  # would raise out of Qt's timer before
    assert autosave.pending and "chunk store unavailable" in said[-1][1]
    monkeypatch.undo()
    autosave._timed_flush()
    assert on_disk(scan) == 2


def test_a_layer_of_another_size_is_reported_not_skipped(watched, scan):
    layer, autosave, said = watched
    stroke(layer)
    autosave._timed_flush()
    layer.data = np.zeros((3, 4, 5), np.uint8)  # e.g. replaced from napari's console
    autosave._timed_flush()
    autosave._timed_flush()
    assert [kind for kind, _ in said] == ["failed"]  # once, not once per tick
    shape = "×".join(map(str, scan.shape))
    assert f"layer is 3×4×5 voxels but the scan {shape}" in said[0][1]
    assert autosave.pending
