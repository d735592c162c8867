"""The heap freeze: frozen objects skip collections until released; a cycle dropped while
frozen is collected at the next settle after a release."""

import gc
import weakref

from napari_asymseg._qt import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_a_cycle_frozen_in_is_collected_after_a_release():
    gc.unfreeze()
    try:
        node = _Node()
        alive = weakref.ref(node)
        heap.settle()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert alive() is not None  # frozen: the collector does not look at it
        heap.release()
        assert gc.get_freeze_count() == 0
        heap.settle()  # collects first: a closed scan's layers are not frozen in again
        assert alive() is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_settle_without_a_release_does_not_collect(monkeypatch):
    gc.unfreeze()
    heap.settle()  # clears a release left by another test
    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a) or 0)
    try:
        heap.settle()
        assert calls == []
    finally:
        gc.unfreeze()
