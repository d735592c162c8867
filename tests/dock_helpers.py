"""Docks for the widget tests: an empty one, and one on the sample scan with a small, briefly
trained model."""

from __future__ import annotations

from engine_helpers import tiny_config
from napari_asymseg._qt.dock import AsymsegDock
from napari_asymseg._qt.layers import layer_for
from napari_asymseg.samples.sample_data import sample_scan
from napari_asymseg.train.loop import fit


def empty_dock(make_napari_viewer) -> AsymsegDock:
    """The dock, added to a new viewer, no scan open."""
    viewer = make_napari_viewer()
    widget = AsymsegDock(viewer)
    viewer.window.add_dock_widget(widget, name="asymseg")
    return widget


def dock_with_model(make_napari_viewer, tmp_path, qtbot, *, steps: int) -> AsymsegDock:
    """The dock with the sample scan open, once its result layers exist, and a model trained
    for ``steps`` steps (few: a weak model misses lesion voxels, so there is something to flag)."""
    widget = empty_dock(make_napari_viewer)
    viewer = widget.viewer
    widget.open_scan(sample_scan(tmp_path))
    qtbot.waitUntil(lambda: layer_for(viewer, widget.scan.path, "risk") is not None)
    list(fit(widget.scan, tiny_config(steps=steps, val_every=steps), widget.new_model_dir()))
    return widget


def import_and_wait(dock, qtbot, path, out=None, series=None):
    """The dock's import (a thread) to its end: the new scan's path, or None if none started."""
    started = dock.import_image(path, out, series)
    qtbot.waitUntil(lambda: dock.scan_section.worker is None, timeout=120_000)
    return started
