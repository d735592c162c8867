"""The overlays' colours stay apart for viewers with and without colour-vision deficiency."""

import itertools

import numpy as np
import pytest

from napari_asymseg.io import palette

colorspacious = pytest.importorskip("colorspacious")

SIMULATIONS = [None] + [
    {"name": "sRGB1+CVD", "cvd_type": kind, "severity": 100}
    for kind in ("protanomaly", "deuteranomaly", "tritanomaly")
]
OVERLAYS = {
    "painted background": palette.PAINT_BACKGROUND,
    "painted lesion": palette.PAINT,
    "prediction": palette.PREDICTION,
    "heatmap": palette.HEATMAP,
    "missed? flag": palette.MISS_FLAG,
    "false alarm? flag": palette.FALSE_ALARM_FLAG,
}


def closest_pair(colors: dict[str, str]) -> tuple[float, str, str, str]:
    """The smallest CAM02-UCS colour difference between two of ``colors``, under normal vision
    and full-severity protan, deutan and tritan simulations (Machado et al. 2009)."""
    worst = (np.inf, "", "", "")
    for sim in SIMULATIONS:
        seen = {}
        for name, color in colors.items():
            rgb = np.array(palette.rgba(color)[:3])
            seen[name] = (
                rgb
                if sim is None
                else np.clip(colorspacious.cspace_convert(rgb, sim, "sRGB1"), 0, 1)
            )
        for a, b in itertools.combinations(seen, 2):
            d = float(colorspacious.deltaE(seen[a], seen[b], input_space="sRGB1"))
            if d < worst[0]:
                worst = (d, a, b, sim["cvd_type"] if sim else "normal vision")
    return worst


def test_overlays_are_distinct_under_colour_vision_deficiency():
    distance, a, b, vision = closest_pair(OVERLAYS)
    assert distance >= 12, f"{a} and {b} differ by ΔE {distance:.1f} under {vision}"


def test_the_check_catches_colours_that_merge():
    # red paint and a green prediction: apart for most viewers, one colour for a deutan one
    distance, *_, vision = closest_pair({"paint": "#E03C31", "prediction": "#4F9A31"})
    assert distance < 12 and vision != "normal vision"


def test_layer_colours_come_from_the_palette():
    ann = palette.annotation_colors(2)
    assert ann[2] == palette.rgba(palette.PAINT)  # the first class (stored code 2)
    assert ann[1][3] < 0.5  # painted background: a faint fill
    assert palette.prediction_colors(2)[1] == palette.rgba(palette.PREDICTION)
    ramp = palette.heatmap_colormap()["colors"]
    assert ramp[0][3] == 0.0 and ramp[-1][3] > 0.5  # transparent where there is no risk
