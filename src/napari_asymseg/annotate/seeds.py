"""The clicks of :mod:`.grow` and the seeds they and the paint give the flood (:mod:`.flood`).

Lesion seeds: a ball (:data:`SEED_MM`) around each inside click, limited to the voxels that
look like the clicked one (:data:`SIMILAR`), and the voxels painted with the class. Not lesion:
a ball around each "not this" click, the voxels painted background or another class, and all
six faces of the crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_asymseg.annotate.flood import LESION, NOT_LESION
from napari_asymseg.store.annotations import NOT_ANNOTATED

Box = tuple[slice, slice, slice]
"""A crop, in scan voxel indices (Z, Y, X)."""
SEED_MM = 3.0
"""Radius (mm) of the ball of seeds around a click: the clicked voxel and its neighbours, so
that one noisy voxel does not decide the flood and one click seeds a lesion's texture (1.5 mm
seeded one slice's 9 voxels on 0.78 mm pixels; docs/methods.md has the measurements)."""
SIMILAR = 0.1
"""An inside click's ball keeps only the voxels within this much (the crop's scaled 0-1
intensity) of the clicked voxel: a click near the lesion's edge does not seed the tissue
beyond it."""


@dataclass(frozen=True)
class Click:
    """A click at voxel ``(z, y, x)``: on the lesion (``inside``), or "not this" outside it."""

    z: int
    y: int
    x: int
    inside: bool = True

    @property
    def at(self) -> tuple[int, int, int]:
        return (self.z, self.y, self.x)


def seeds_of(
    ann: np.ndarray,
    clicks: Sequence[Click],
    code: int,
    spacing: tuple[float, float, float],
    box: Box,
    intensity: np.ndarray | None = None,
) -> np.ndarray:
    """int8 seeds of the crop: :data:`LESION`, :data:`NOT_LESION`, 0 for the flood to decide.

    Painted voxels first, then the clicks over them (a click is the user's latest word), the
    inside clicks' own voxels last. ``intensity`` (the crop's, scaled 0-1) limits an inside
    click's ball to the voxels like the clicked one (:data:`SIMILAR`)."""
    seeds = np.zeros(ann.shape, np.int8)
    seeds[(ann != NOT_ANNOTATED) & (ann != code)] = NOT_LESION
    seeds[ann == code] = LESION
    ball = click_ball(spacing)
    for inside in (True, False):
        for c in (c for c in clicks if c.inside == inside):
            cut, part = _ball_in_crop(ball, c, box, ann.shape)
            if cut is None:
                continue
            if inside and intensity is not None:  # only what looks like the clicked voxel
                at = intensity[tuple(v - b.start for v, b in zip(c.at, box, strict=True))]
                part = part & (np.abs(intensity[cut] - at) <= SIMILAR)
            seeds[cut][part] = LESION if inside else NOT_LESION
    for c in clicks:
        if c.inside and all(b.start <= v < b.stop for v, b in zip(c.at, box, strict=True)):
            seeds[tuple(v - b.start for v, b in zip(c.at, box, strict=True))] = LESION
    return seeds


def _ball_in_crop(
    ball: np.ndarray, click: Click, box: Box, shape: Sequence[int]
) -> tuple[tuple[slice, slice, slice] | None, np.ndarray]:
    """The crop region of the ball around ``click`` and the ball's part there (None: the ball
    lies outside the crop, e.g. a far "not this" click)."""
    r = np.array(ball.shape) // 2
    local = np.array(click.at) - [b.start for b in box]
    lo, hi = local - r, local + r + 1
    if any(a >= n or b <= 0 for a, b, n in zip(lo, hi, shape, strict=True)):
        return None, ball
    cut = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, shape, strict=True))
    part = ball[tuple(slice(s.start - a, s.stop - a) for s, a in zip(cut, lo, strict=True))]
    return (cut[0], cut[1], cut[2]), part


def click_ball(spacing: tuple[float, float, float]) -> np.ndarray:
    """The voxels within :data:`SEED_MM` of a centre voxel (the centre always)."""
    r = [int(SEED_MM // s) for s in spacing]
    zz, yy, xx = np.ogrid[-r[0] : r[0] + 1, -r[1] : r[1] + 1, -r[2] : r[2] + 1]
    dist = (zz * spacing[0]) ** 2 + (yy * spacing[1]) ** 2 + (xx * spacing[2]) ** 2
    return dist <= SEED_MM**2


def seed_faces(seeds: np.ndarray) -> None:
    """All six faces of the crop become not lesion where they hold no seed: the flood then
    always has "not lesion" near every side (with only the faces inside the scan, a crop on
    the scan's border was flooded by a later click: DSC 0.80 -> 0.09 on the synthetic scan)."""
    for axis in range(3):
        for index in (0, seeds.shape[axis] - 1):
            face: list[slice | int] = [slice(None)] * 3
            face[axis] = index
            view = seeds[tuple(face)]
            view[view == 0] = NOT_LESION


def crop_faces(box: Box, shape: Sequence[int]) -> list[tuple[int, tuple[int, bool]]]:
    """Each face of the box as ``(axis, (index in the crop, lies inside the scan))``."""
    out = []
    for axis, part in enumerate(box):
        out.append((axis, (0, part.start > 0)))
        out.append((axis, (part.stop - part.start - 1, part.stop < int(shape[axis]))))
    return out
