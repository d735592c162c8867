"""Show a scan's stored results as napari layers, replacing older ones in place."""

from __future__ import annotations

import numpy as np

from napari_asymseg.io.napari_reader import PREDICTION_COLORS, RESULT_LOOK, result_layers
from napari_asymseg.store.scan import Scan


def layer_for(viewer, scan_path, role: str):
    """The viewer's layer of ``role`` for the scan at ``scan_path``, or None."""
    for layer in viewer.layers:
        meta = layer.metadata.get("asymseg", {})
        if meta.get("role") == role and meta.get("scan") == str(scan_path):
            return layer
    return None


def show_results(viewer, scan: Scan) -> None:
    """Add or refresh the prediction and probability layers from the store."""
    for data, kwargs, kind in result_layers(scan):
        role = kwargs["metadata"]["asymseg"]["role"]
        data = np.asarray(data[...])  # a snapshot: later predictions replace the arrays on disk
        layer = layer_for(viewer, scan.path, role)
        if layer is None:
            getattr(viewer, f"add_{kind}")(data, **kwargs)
        else:
            layer.data = data


def prediction_layer(viewer, scan: Scan):
    """The scan's prediction labels layer, created empty if there is none yet.

    The dock creates it when a scan opens: adding a layer costs napari a few hundred
    milliseconds on the GUI thread, which is invisible then but a freeze during training.
    """
    layer = layer_for(viewer, scan.path, "prediction")
    if layer is None:
        layer = viewer.add_labels(
            np.zeros(scan.shape, np.uint8),
            name=f"{scan.path.name.removesuffix('.zarr')} prediction",
            scale=scan.spacing,
            colormap=PREDICTION_COLORS,
            opacity=1.0,
            metadata={"asymseg": {"scan": str(scan.path), "role": "prediction"}},
        )
        layer.contour = 1  # an outline: the paint under it stays visible (palette.py)
    elif not isinstance(layer.data, np.ndarray):
        # a stored prediction is read lazily from the store: never paint into it
        layer.data = np.asarray(layer.data[...], dtype=np.uint8)
        layer.contour = 1  # the reader's layer, seen by the dock for the first time
    return layer


def probability_layer(viewer, scan: Scan):
    """The scan's probability layer, created hidden and lazily empty if there is none yet.

    Created when a scan opens, like :func:`prediction_layer`, so that showing the result of a
    prediction only swaps the layer's data.
    """
    return _lazy_image_layer(viewer, scan, "probability", visible=False)


def risk_layer(viewer, scan: Scan):
    """The scan's false-negative heatmap layer, created lazily empty if there is none yet.

    Risks of 0.5 and more saturate, as in the reader: the heatmap shows the doubtful.
    """
    return _lazy_image_layer(viewer, scan, "risk", visible=True)


def _lazy_image_layer(viewer, scan: Scan, role: str, *, visible: bool):
    """An image layer of ``role``, looking as the reader shows it (``RESULT_LOOK``); until a
    result exists its data is a lazy dask array of zeros, which costs no memory however
    large the scan."""
    layer = layer_for(viewer, scan.path, role)
    if layer is None:
        import dask.array as da

        layer = viewer.add_image(
            da.zeros(scan.shape, dtype=np.float16, chunks=(1, *scan.shape[1:])),
            name=f"{scan.path.name.removesuffix('.zarr')} {role}",
            scale=scan.spacing,
            **RESULT_LOOK[role],
            visible=visible,
            metadata={"asymseg": {"scan": str(scan.path), "role": role}},
        )
    return layer


def show_preview(viewer, scan: Scan, probability: np.ndarray, z0: int) -> None:
    """Overlay a live prediction of the slab ``z0 : z0 + len(probability)`` during training."""
    layer = prediction_layer(viewer, scan)
    # write the slab in place and redraw: no copy of the whole volume on the GUI thread
    layer.data[z0 : z0 + probability.shape[0]] = np.asarray(probability, np.float32) > 0.5
    layer.refresh()


def camera_of(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def go_to(viewer, spacing, center) -> None:
    """Show the voxel ``center`` (z, y, x): its slice (in a 2D view) and the camera on it.

    The Review section's items and the Lesions table's rows jump with it.
    """
    world = [c * s for c, s in zip(center, spacing, strict=True)]
    if viewer.dims.ndisplay == 2:
        viewer.dims.set_point(0, world[0])
    camera_of(viewer).center = tuple(world)
