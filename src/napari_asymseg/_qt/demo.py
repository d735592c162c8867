"""The main job with a display: napari with the asymseg dock and the sample scan."""

from __future__ import annotations

import napari
import numpy as np

from napari_asymseg.samples.sample_data import sample_scan
from napari_asymseg.store.annotations import code_of_class, is_foreground


def open_viewer(show: bool = True):
    """A viewer with the sample scan loaded and the dock docked; returns (viewer, dock)."""
    viewer = napari.Viewer(title="napari-asymseg", show=show)
    viewer.open(str(sample_scan()), plugin="napari-asymseg")
    _, dock = viewer.window.add_plugin_dock_widget("napari-asymseg", "asymseg")
    annotations = [
        layer
        for layer in viewer.layers
        if layer.metadata.get("asymseg", {}).get("role") == "annotations"
    ]
    if annotations:
        viewer.layers.selection.active = annotations[0]
        annotations[0].mode = "paint"
        annotations[0].selected_label = code_of_class(1)
    if annotations:
        # dims points are world coordinates: slice index times the slice spacing
        z = _first_annotated_slice(annotations[0].data)
        viewer.dims.set_point(0, z * annotations[0].scale[0])
    return viewer, dock


def _first_annotated_slice(data) -> int:
    fg = np.flatnonzero(is_foreground(data).any(axis=(1, 2)))
    return int(fg[0]) if fg.size else 0


def run_viewer() -> None:
    open_viewer()
    napari.run()
