"""A lesion's shape between two painted slices, and which lesions of the two slices are one.

:func:`blend_sdf` is the interpolation :mod:`.interpolate` uses: the signed distance maps of the
two painted shapes, moved to the in-between centroid and blended linearly
(docs/methods.md, "Fill between slices", says why it and not ITK's morphological contour
interpolation). :func:`match_lesions` pairs the 2D lesions (8-connected components) of the two
slices: those whose painted areas overlap are one lesion (several on one side when it splits or
merges); of the rest, two that are each other's nearest and nearly touch (:data:`NEAR`) are
one lesion that moved; any other is left out, and :mod:`.interpolate` says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

EIGHT = np.ones((3, 3), bool)
"""2D lesions are 8-connected: a stroke drawn along a diagonal is one lesion."""
NEAR = 0.5
"""Two lesions that do not overlap are one lesion that moved (it runs obliquely through the
slices) when the gap between them (centroid distance less both equivalent radii) is at most
``NEAR`` equivalent radii of the larger. Farther apart they are more likely two lesions, each
ending between the slices: on the synthetic scans painted every 6th slice, a rule allowing a
gap of the larger diameter paired a lesion ending between the slices with another beginning
there (benchmarks/fill_between.py's scans)."""

Between = Callable[[np.ndarray, np.ndarray, int, tuple[float, float]], list[np.ndarray]]
"""``(first, last, n, spacing) -> n shapes``: the shapes on the ``n`` slices between two 2D
boolean masks of the same crop, evenly spaced; ``spacing`` is the in-plane voxel size (mm)."""


def signed_distance(mask: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Distance (mm) to the outline of ``mask``: negative inside, positive outside.

    The outline is taken half a voxel outside the outermost voxels, so that blending a shape
    with itself gives the shape back.
    """
    half = 0.5 * min(spacing)
    inside = ndi.distance_transform_edt(mask, sampling=spacing)
    outside = ndi.distance_transform_edt(~mask, sampling=spacing)
    return np.where(mask, half - inside, outside - half)


def blend_sdf(
    first: np.ndarray, last: np.ndarray, n: int, spacing: tuple[float, float], align: bool = True
) -> list[np.ndarray]:
    """The ``n`` shapes between two masks (see :data:`Between`): at ``t = i / (n + 1)`` the
    voxels where ``(1 - t) d_first + t d_last < 0``, ``d`` the :func:`signed_distance` maps.

    With ``align`` (the default) both maps are first moved so that their centroids meet at the
    in-between centroid ``(1 - t) c_first + t c_last``: a lesion that runs obliquely through
    the slices keeps its width instead of narrowing to the overlap of its two ends. The crop
    needs room around both shapes for that move (:func:`crop_around`).
    """
    d0, d1 = signed_distance(first, spacing), signed_distance(last, spacing)
    move = np.zeros(2)
    if align:
        move = np.subtract(ndi.center_of_mass(last), ndi.center_of_mass(first))
    shapes = []
    for i in range(1, n + 1):
        t = i / (n + 1)
        blend = (1 - t) * _moved(d0, t * move) + t * _moved(d1, (t - 1) * move)
        shapes.append(blend < 0)
    return shapes


def _moved(distance: np.ndarray, by: np.ndarray) -> np.ndarray:
    """``distance`` moved by ``by`` voxels (linear in between: a distance map is smooth)."""
    if not np.any(np.abs(by) > 1e-3):
        return distance
    return ndi.shift(distance, by, order=1, mode="nearest")


@dataclass(frozen=True)
class Match:
    """Lesions of the first and the last slice (their labels) that are one lesion."""

    first: tuple[int, ...]
    last: tuple[int, ...]
    overlapping: bool


def match_lesions(
    first: np.ndarray, last: np.ndarray, spacing: tuple[float, float]
) -> tuple[list[Match], list[int], list[int]]:
    """Which lesions of two labelled slices are one lesion.

    Parameters
    ----------
    first, last
        Labels (``scipy.ndimage.label``) of one class's lesions on the two slices.
    spacing
        In-plane voxel size (mm), for the distances of lesions that do not overlap.

    Returns
    -------
    matches, alone_first, alone_last
        The lesions that are one (overlap groups first, then near pairs), and the labels on
        each slice that have no counterpart.
    """
    n0, n1 = int(first.max()), int(last.max())
    both = (first > 0) & (last > 0)
    edges = np.unique(np.stack([first[both], last[both]]), axis=1) - 1
    graph = coo_matrix(
        (np.ones(edges.shape[1]), (edges[0], n0 + edges[1])), shape=(n0 + n1, n0 + n1)
    )
    _, group = connected_components(graph, directed=False)
    matches: list[Match] = []
    alone0: list[int] = []
    alone1: list[int] = []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        ones = tuple(int(m) + 1 for m in members if m < n0)
        twos = tuple(int(m) - n0 + 1 for m in members if m >= n0)
        if ones and twos:
            matches.append(Match(ones, twos, overlapping=True))
        else:
            alone0 += ones
            alone1 += twos
    near, alone0, alone1 = _near_pairs(first, alone0, last, alone1, spacing)
    return matches + near, alone0, alone1


def _near_pairs(
    first: np.ndarray,
    alone0: list[int],
    last: np.ndarray,
    alone1: list[int],
    spacing: tuple[float, float],
) -> tuple[list[Match], list[int], list[int]]:
    """Lesions without overlap that are each other's nearest and within :data:`NEAR`."""
    if not alone0 or not alone1:
        return [], alone0, alone1
    c0, r0 = _centres_and_radii(first, alone0, spacing)
    c1, r1 = _centres_and_radii(last, alone1, spacing)
    dist = np.linalg.norm(c0[:, None, :] - c1[None, :, :], axis=2)
    pairs = []
    for i in range(len(alone0)):
        j = int(np.argmin(dist[i]))
        gap = dist[i, j] - r0[i] - r1[j]
        if int(np.argmin(dist[:, j])) == i and gap <= NEAR * max(r0[i], r1[j]):
            pairs.append((i, j))
    matches = [Match((alone0[i],), (alone1[j],), overlapping=False) for i, j in pairs]
    left0 = [a for i, a in enumerate(alone0) if i not in {p[0] for p in pairs}]
    left1 = [b for j, b in enumerate(alone1) if j not in {p[1] for p in pairs}]
    return matches, left0, left1


def _centres_and_radii(
    labels: np.ndarray, which: list[int], spacing: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (mm) and equivalent-circle radii (mm) of the labels ``which``."""
    centres = np.asarray(ndi.center_of_mass(labels > 0, labels, which)) * np.asarray(spacing)
    areas = np.bincount(labels.ravel(), minlength=max(which) + 1)[which] * math.prod(spacing)
    return centres.reshape(len(which), 2), np.sqrt(areas / math.pi)


def crop_around(
    boxes: list[tuple[slice, ...]], shape: tuple[int, ...], margin: int
) -> tuple[slice, slice]:
    """The 2D crop holding ``boxes`` (``find_objects`` slices) with ``margin`` voxels around,
    within ``shape``: room for a signed distance map to see outside the shapes, and for
    :func:`blend_sdf` to move them."""
    lo = [min(b[a].start for b in boxes) - margin for a in (0, 1)]
    hi = [max(b[a].stop for b in boxes) + margin for a in (0, 1)]
    return (
        slice(max(lo[0], 0), min(hi[0], shape[0])),
        slice(max(lo[1], 0), min(hi[1], shape[1])),
    )
