"""napari reader and sample-data contributions, as plain layer-data tuples.

Nothing here imports napari: the functions return ``(data, kwargs, layer_type)`` tuples that
napari turns into layers, so they are testable without a display. Every layer carries
``metadata["asymseg"] = {"scan": path, "role": ...}``; the dock finds its layers by that role.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_asymseg.io.palette import annotation_colors, heatmap_colormap, prediction_colors
from napari_asymseg.store.scan import ATTRS_KEY, Scan

LayerData = tuple[Any, dict[str, Any], str]

ANNOTATION_COLORS = annotation_colors()
PREDICTION_COLORS = prediction_colors()
RESULT_LOOK: dict[str, dict[str, Any]] = {
    # the risk glows translucent (additive blending turned red paint pale yellow); risks of
    # 0.5 and more saturate: the heatmap shows the doubtful
    "risk": {
        "colormap": heatmap_colormap(),
        "contrast_limits": (0.0, 0.5),
        "opacity": 0.8,
        "blending": "translucent",
    },
    "probability": {
        "colormap": "magma",
        "contrast_limits": (0.0, 1.0),
        "opacity": 0.6,
        "blending": "additive",
    },
}
"""How the image results look (palette.py says why these colours)."""


def is_scan(path: str | os.PathLike) -> bool:
    """True when ``path`` is a zarr group carrying asymseg scan attributes (cheap check)."""
    import json

    path = Path(path)
    for meta, key in ((path / "zarr.json", "attributes"), (path / ".zattrs", None)):
        if meta.is_file():
            try:
                doc = json.loads(meta.read_text())
            except (OSError, ValueError):
                return False
            attrs = doc.get(key, {}) if key else doc
            return isinstance(attrs, dict) and ATTRS_KEY in attrs
    return False


def get_reader(path: str | list[str]):
    """npe2 reader hook: a reader for asymseg scans, ``None`` for anything else.

    Returning ``None`` for plain OME-Zarr images lets other readers (napari-ome-zarr) take them.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, str | os.PathLike) or not is_scan(path):
        return None
    return read_scan


def read_scan(path: str | os.PathLike | list) -> list[LayerData]:
    """Open a scan and return its image, annotations and stored results as layer data."""
    target = Path(path[0] if isinstance(path, list) else path)
    # Read-write when we may: opening for writing also repairs an interrupted save.
    mode = "r+" if os.access(target, os.W_OK) else "r"
    return scan_layers(Scan.open(target, mode=mode))


def contrast_limits(scan: Scan) -> tuple[float, float]:
    """Robust display range from the coarsest level, so a huge scan is never read whole."""
    level = scan.image_levels[-1]
    step = max(1, int(round((level.size / 2e6) ** (1 / 3))))
    sample = np.asarray(level[::step, ::step, ::step], dtype=np.float32)
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max()) + 1.0
    return float(lo), float(hi)


def _meta(scan: Scan, role: str) -> dict[str, Any]:
    return {"asymseg": {"scan": str(scan.path), "role": role}}


def scan_layers(scan: Scan) -> list[LayerData]:
    """Layer data for a scan: image, annotations (editable), then any stored results."""
    name = scan.path.name.removesuffix(".zarr")
    scale = scan.spacing

    multiscale = scan.is_multiscale
    image = scan.image_levels if multiscale else scan.image
    layers: list[LayerData] = [
        (
            image,
            {
                "name": name,
                "scale": scale,
                "multiscale": multiscale,
                "contrast_limits": contrast_limits(scan),
                "colormap": "gray",
                "metadata": _meta(scan, "image"),
            },
            "image",
        ),
        (
            # In memory so that painting is instant; the dock saves edits back to the store.
            scan.read_annotations(),
            {
                "name": f"{name} annotations",
                "scale": scale,
                "colormap": ANNOTATION_COLORS,
                "opacity": 0.7,
                "metadata": _meta(scan, "annotations"),
            },
            "labels",
        ),
    ]
    return layers + result_layers(scan)


def result_layers(scan: Scan) -> list[LayerData]:
    """Layer data for the scan's stored results (prediction, probability, risk)."""
    name = scan.path.name.removesuffix(".zarr")
    scale = scan.spacing
    layers: list[LayerData] = []
    results = scan.results()
    if "prediction" in results:
        layers.append(
            (
                results["prediction"],
                {
                    "name": f"{name} prediction",
                    "scale": scale,
                    "colormap": PREDICTION_COLORS,
                    "opacity": 1.0,  # the dock draws it as an outline (layers.prediction_layer)
                    "metadata": _meta(scan, "prediction"),
                },
                "labels",
            )
        )
    for role in ("probability", "risk"):
        if role in results:
            layers.append(
                (
                    results[role],
                    {
                        "name": f"{name} {role}",
                        "scale": scale,
                        **RESULT_LOOK[role],
                        "visible": role == "risk",
                        "metadata": _meta(scan, role),
                    },
                    "image",
                )
            )
    return layers


def sample_lesions() -> list[LayerData]:
    """npe2 sample-data hook: the committed synthetic lesion scan (a writable working copy)."""
    from napari_asymseg.samples.sample_data import sample_scan

    return read_scan(sample_scan())
