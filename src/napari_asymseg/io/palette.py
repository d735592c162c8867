"""The colours of the overlays: paint, prediction, heatmap and review flags kept apart.

All come from Okabe and Ito's colour-universal-design palette, chosen so that the overlays
that lie on the same voxels stay distinct for viewers with normal vision and with protan,
deutan or tritan colour-vision deficiency: the smallest colour difference among them is
ΔE 14 (CAM02-UCS) under a full-severity simulation of each (``tests/io/test_palette.py``).
Shape separates them too: paint fills, the prediction is an outline, the heatmap a soft
translucent glow, the flags are rings.

Okabe M., Ito K. (2008) Color Universal Design (CUD): how to make figures and presentations
that are friendly to colorblind people. https://jfly.uni-koeln.de/color/
"""

from __future__ import annotations

from typing import Any

from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED, code_of_class

VERMILLION = "#D55E00"
BLUE = "#0072B2"
SKY = "#56B4E9"
PURPLE = "#CC79A7"
YELLOW = "#F0E442"
GREEN = "#009E73"
ORANGE = "#E69F00"
WHITE = "#FFFFFF"
GREY = "#8A8A8A"

PAINT = VERMILLION
"""Painted lesion (the first class), filled."""
PAINT_BACKGROUND = BLUE
"""Painted background, a faint fill: which slices are done."""
PREDICTION = SKY
"""The model's lesion, drawn as an outline so that the paint under it stays visible."""
HEATMAP = PURPLE
"""The false-negative heatmap (risk of missed lesion), transparent to opaque."""
MISS_FLAG = YELLOW
"""A review item "missed?": a ring."""
FALSE_ALARM_FLAG = WHITE
"""A review item "false alarm?": a ring."""
DONE_FLAG = GREY
"""An answered review item."""

CLASS_COLORS = (VERMILLION, YELLOW, GREEN, PURPLE)
"""Paint of the foreground classes 1, 2, ... (more classes repeat them)."""


def rgba(hex_color: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
    """``#RRGGBB`` as an RGBA tuple of floats in 0..1."""
    r, g, b = (int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return (r, g, b, alpha)


def annotation_colors(classes: int = 4) -> dict[int | None, Any]:
    """The annotations layer's colour of each stored code."""
    colors: dict[int | None, Any] = {
        None: "transparent",
        NOT_ANNOTATED: "transparent",
        BACKGROUND: rgba(PAINT_BACKGROUND, 0.35),
    }
    for k in range(1, classes + 1):
        colors[code_of_class(k)] = rgba(CLASS_COLORS[(k - 1) % len(CLASS_COLORS)])
    return colors


def prediction_colors(classes: int = 4) -> dict[int | None, Any]:
    """The prediction layer's colour of each class (0 transparent); class 1 is PREDICTION."""
    others = (ORANGE, GREEN, YELLOW)
    colors: dict[int | None, Any] = {None: "transparent", 0: "transparent", 1: rgba(PREDICTION)}
    for k in range(2, classes + 1):
        colors[k] = rgba(others[(k - 2) % len(others)])
    return colors


def heatmap_colormap() -> dict[str, Any]:
    """Transparent at no risk to nearly opaque HEATMAP at the top of the contrast range, as
    napari's colormap dict. Drawn with translucent blending, it never changes the paint's
    colour the way additive blending did (red paint turned pale yellow under it)."""
    r, g, b, _ = rgba(HEATMAP)
    return {
        "colors": [[r, g, b, 0.0], [r, g, b, 0.85]],
        "controls": [0.0, 1.0],
        "name": "asymseg risk",
    }
