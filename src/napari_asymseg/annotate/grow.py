"""Grow from a click: a lesion's 3D shape from a few clicks on the image.

:func:`grow` takes the image, the scan's annotation codes and the user's clicks (inside the
lesion, or "not this" outside it) and proposes the lesion in a crop around the inside clicks;
``asymseg grow`` writes it with :func:`write_grown` (provenance *grown*,
:mod:`napari_asymseg.store.provenance`) and the dock previews it. The method, each step
covered by ``tests/annotate/test_grow.py``:

- **The crop.** A box :data:`HALF_MM` each way around the inside clicks, read alone from the
  image (a zarr array is never read whole). When the proposal reaches the box's border inside
  the scan, or that border looks like the image around the clicks (:data:`LIKE`), the box is
  enlarged once to twice that and the lesion proposed again.
- **The seeds** (:mod:`.seeds`). Lesion: a 3 mm ball around each inside click, kept where the
  image looks like the clicked voxel, and the voxels painted with the class. Not lesion: a
  ball around each "not this" click, the voxels painted background or another class, and the
  crop's six faces.
- **The flood.** A seeded watershed (:mod:`.flood`) on the crop's edge strength: the
  gradient per mm of its intensity (smoothed :data:`SMOOTH_MM`, clipped to its 1st-99th
  percentile and scaled to 0-1)
  and, where given, of the model's lesion probability. The lesion seeds and the "not lesion"
  seeds flood the crop and meet on the strongest edge between them. A crop too large for a
  second is flooded on a coarser grid and the result interpolated back (docs/methods.md,
  "Grow from a click", has the measurements and why a watershed).
- **The lesion.** The voxels the lesion seeds flood, kept where connected to an inside
  click; a "not this" click is never lesion.
- **Paint wins.** :meth:`Grown.codes` and :func:`write_grown` set only unannotated voxels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_asymseg.annotate.flood import LESION, NOT_LESION, flood
from napari_asymseg.annotate.seeds import Box, Click, crop_faces, seed_faces, seeds_of
from napari_asymseg.errors import ScanError
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED
from napari_asymseg.store.arrays import read
from napari_asymseg.store.provenance import GROWN
from napari_asymseg.store.scan import Scan

HALF_MM = 20.0
"""Half the crop's size (mm) around the inside clicks; doubled once when the crop looks too
small."""
MIN_HALF = 2
"""At least this many voxels each way, whatever the spacing (6.5 mm slices)."""
SMOOTH_MM = 1.0
"""Gaussian smoothing (mm) before the edges: CT noise otherwise makes edges everywhere and the
flood stops at the click (a 12 mm blob at 4:1 contrast to noise: DSC 0.01 unsmoothed, 0.98
smoothed; docs/methods.md)."""
LIKE = 1.0
"""Pooled standard deviations within which the crop's border looks like the lesion seeds: the
crop lies inside a large even lesion, with no edge to stop at, and is enlarged."""
AROUND_MM = 4.0
"""The image this far (mm) around an inside click is what the lesion looks like."""
NOTHING_GROWN = (
    "nothing to grow: every voxel the clicks propose is already annotated or a 'not this' "
    "click: click inside an unannotated part of the lesion"
)


@dataclass(frozen=True, eq=False)  # eq=False: an array field makes __eq__ ambiguous
class Grown:
    """The proposal of :func:`grow`.

    Attributes
    ----------
    box
        The crop, in scan voxel indices.
    mask
        bool, the box's shape: the proposed lesion, all of it (painted voxels included).
    code
        The annotation code it proposes (class ``k`` -> ``k + 1``).
    """

    box: Box
    mask: np.ndarray
    code: int

    @property
    def voxels(self) -> int:
        """Voxels of the proposed lesion (painted ones included)."""
        return int(np.count_nonzero(self.mask))

    def codes(self, annotations: Any) -> np.ndarray:
        """uint8, the box's shape: :attr:`code` where the proposal is and the voxel is still
        unannotated, else 0. ``annotations`` is the scan's (any array-like) or its box."""
        ann = np.asarray(annotations) if _is_box_shaped(annotations, self.mask) else None
        if ann is None:
            ann = _crop(annotations, self.box)
        return np.where(self.mask & (ann == NOT_ANNOTATED), self.code, 0).astype(np.uint8)

    def per_slice(self, annotations: Any) -> dict[int, int]:
        """Scan slice (z) -> voxels the proposal would newly annotate there."""
        new = np.count_nonzero(self.codes(annotations), axis=(1, 2))
        return {self.box[0].start + int(i): int(new[i]) for i in np.flatnonzero(new)}


def grow(
    image: Any,
    annotations: Any,
    clicks: Sequence[Click],
    code: int,
    spacing: Sequence[float] | None = None,
    probability: Any = None,
) -> Grown:
    """Propose the lesion of class code ``code`` that the clicks point at (module docstring).

    Parameters
    ----------
    image
        3D (Z, Y, X) array-like; a zarr array is read only in the crop.
    annotations
        Annotation codes of the image's shape: 0 not annotated, 1 background, k+1 class k.
        Voxels painted ``code`` are lesion seeds, any other painted voxel a "not lesion" seed.
    clicks
        At least one inside click; "not this" clicks (``inside=False``) remove.
    code
        The class's annotation code (2 for the first class).
    spacing
        Voxel size in mm (Z, Y, X); 1 mm when left out.
    probability
        The model's lesion probability (0-1) of the image's shape (the scan's stored result
        ``probability``), or None.

    Raises
    ------
    ScanError
        A click outside the scan, no inside click, arrays of other shapes, or nothing to grow.
    """
    shape = _check(image, annotations, clicks, code, probability)
    sp = _spacing(spacing)
    box = mask = None
    for half in (HALF_MM, 2 * HALF_MM):
        box = crop_box(clicks, shape, sp, half)
        mask, small = _propose(image, annotations, probability, clicks, code, sp, box)
        if not small:
            break
    assert box is not None and mask is not None
    grown = Grown(box, mask, int(code))
    if not grown.codes(_crop(annotations, box)).any():
        raise ScanError(NOTHING_GROWN)
    return grown


def _check(image: Any, annotations: Any, clicks: Sequence[Click], code: int, prob: Any) -> tuple:
    """The scan's shape, after checking the input (one line each)."""
    shape = tuple(int(n) for n in np.shape(image))
    if len(shape) != 3:
        raise ScanError(f"grow needs a 3D image (Z, Y, X), got {len(shape)} dimensions")
    for name, other in (("annotations", annotations), ("probability", prob)):
        if other is not None and tuple(np.shape(other)) != shape:
            raise ScanError(
                f"the {name} have shape {tuple(np.shape(other))}, the image {shape}: give "
                f"the {name} of this scan"
            )
    if not BACKGROUND < int(code) <= 255:
        raise ScanError(
            f"grow proposes a class, not annotation code {code}: give a class's code (2 for "
            "the first class)"
        )
    for c in clicks:
        if not all(0 <= v < n for v, n in zip(c.at, shape, strict=True)):
            raise ScanError(
                f"the click at z {c.z}, y {c.y}, x {c.x} is outside the scan (shape "
                f"{shape[0]}x{shape[1]}x{shape[2]}): click on the scan"
            )
    if not any(c.inside for c in clicks):
        raise ScanError(
            "grow needs a click on the lesion: 'not this' clicks only remove; add a click "
            "inside the lesion"
        )
    return shape


def _spacing(spacing: Sequence[float] | None) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in (spacing if spacing is not None else (1.0, 1.0, 1.0)))
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise ScanError(f"spacing must be three positive sizes in mm (Z, Y, X), got {sp}")
    return sp


def crop_box(
    clicks: Sequence[Click], shape: Sequence[int], spacing: Sequence[float], half_mm: float
) -> Box:
    """The box ``half_mm`` each way (at least :data:`MIN_HALF` voxels) around the inside
    clicks, within the scan."""
    inside = np.array([c.at for c in clicks if c.inside])
    out = []
    for axis in range(3):
        half = max(MIN_HALF, int(math.ceil(half_mm / spacing[axis])))
        lo = int(inside[:, axis].min()) - half
        hi = int(inside[:, axis].max()) + half + 1
        out.append(slice(max(lo, 0), min(hi, int(shape[axis]))))
    return (out[0], out[1], out[2])


def _crop(array: Any, box: Box) -> np.ndarray:
    """``array[box]`` as numpy, reading only the box (a damaged zarr chunk: ScanError)."""
    if hasattr(array, "store") and hasattr(array, "chunks"):
        return read(array, box)
    return np.asarray(array[box])


def _is_box_shaped(annotations: Any, mask: np.ndarray) -> bool:
    return tuple(np.shape(annotations)) == mask.shape


def _propose(
    image: Any,
    annotations: Any,
    probability: Any,
    clicks: Sequence[Click],
    code: int,
    spacing: tuple[float, float, float],
    box: Box,
) -> tuple[np.ndarray, bool]:
    """The lesion in ``box`` (bool, the box's shape), and whether the box looks too small: the
    lesion reaches its border, or most of its border looks like the lesion seeds (a crop
    inside a large even lesion has no edge to stop at)."""
    intensity = _normalised(_crop(image, box), spacing)
    seeds = seeds_of(_crop(annotations, box), clicks, code, spacing, box, intensity)
    seed_faces(seeds)
    channels = [intensity]
    if probability is not None:
        prob = np.nan_to_num(_crop(probability, box).astype(np.float32), nan=0.0)
        channels.append(np.clip(prob, 0.0, 1.0))
    lesion = flood(np.stack(channels, axis=-1), seeds, spacing) > 0.5
    lesion[seeds == LESION] = True
    lesion[seeds == NOT_LESION] = False
    lesion = _connected_to_clicks(lesion, clicks, box)
    shape = np.shape(image)
    small = _reaches_border(lesion, box, shape) or _border_like_clicks(
        intensity, clicks, spacing, box, shape
    )
    return lesion, small


def _normalised(crop: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """The crop's intensity smoothed (:data:`SMOOTH_MM`, within the slice where slices are
    thicker), clipped to its 1st-99th percentile and scaled to 0-1: noise makes no edges, and
    bright bone or air elsewhere in the crop does not flatten the lesion's."""
    sigma = np.array([SMOOTH_MM / s if s <= 2 * SMOOTH_MM else 0.0 for s in spacing])
    values = ndi.gaussian_filter(crop.astype(np.float32), sigma, mode="nearest")
    lo, hi = np.percentile(values, (1, 99))
    if hi <= lo:
        return np.zeros(values.shape, np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def _border_like_clicks(
    intensity: np.ndarray,
    clicks: Sequence[Click],
    spacing: Sequence[float],
    box: Box,
    shape: Sequence[int],
) -> bool:
    """Whether the crop's faces inside the scan cannot be told from the image around the
    inside clicks (:data:`AROUND_MM`): their means differ by less than :data:`LIKE` pooled
    standard deviations."""
    faces = [
        np.take(intensity, index, axis=axis).ravel()
        for axis, (index, inner) in crop_faces(box, shape)
        if inner
    ]
    if not faces:
        return False
    around = []
    for c in (c for c in clicks if c.inside):
        near = tuple(
            slice(max(v - b.start - r, 0), v - b.start + r + 1)
            for v, b, r in zip(c.at, box, (int(AROUND_MM // s) for s in spacing), strict=True)
        )
        around.append(intensity[near].ravel())
    border, inside = np.concatenate(faces), np.concatenate(around)
    spread = math.sqrt((float(np.var(border)) + float(np.var(inside))) / 2)
    return abs(float(border.mean()) - float(inside.mean())) < LIKE * max(spread, 1e-3)


def _reaches_border(mask: np.ndarray, box: Box, shape: Sequence[int]) -> bool:
    """Whether the lesion reaches a face of the crop that lies inside the scan (the voxels
    next to the face: the face itself is a "not lesion" seed)."""
    for axis, (index, inner) in crop_faces(box, shape):
        if inner and mask.shape[axis] > 2:
            near = 1 if index == 0 else index - 1
            if np.take(mask, near, axis=axis).any():
                return True
    return False


def _connected_to_clicks(lesion: np.ndarray, clicks: Sequence[Click], box: Box) -> np.ndarray:
    """The parts of ``lesion`` (26-connected) that hold an inside click."""
    labels, _ = ndi.label(lesion, np.ones((3, 3, 3), bool))
    keep = {
        int(labels[tuple(v - b.start for v, b in zip(c.at, box, strict=True))])
        for c in clicks
        if c.inside
    }
    keep.discard(0)
    return np.isin(labels, sorted(keep))


def write_grown(scan: Scan, grown: Grown) -> int:
    """Write the proposal into the scan as annotation with provenance *grown*.

    The box is read, its proposed voxels that are still unannotated set (paint made since the
    proposal wins) and written back in one region write (atomic per chunk;
    :meth:`Scan.write_annotations`). Returns the voxels written.
    """
    inside = all(0 <= b.start <= b.stop <= n for b, n in zip(grown.box, scan.shape, strict=True))
    if not inside or grown.mask.shape != tuple(b.stop - b.start for b in grown.box):
        raise ScanError(
            f"the proposal's box {_box_text(grown.box)} does not fit the scan (shape "
            f"{scan.shape}): grow on this scan, then write"
        )
    current = read(scan.annotations, grown.box)
    new = grown.mask & (current == NOT_ANNOTATED)
    if not new.any():
        return 0
    scan.write_annotations(
        np.where(new, np.uint8(grown.code), current), region=grown.box, source=GROWN
    )
    return int(np.count_nonzero(new))


def _box_text(box: Box) -> str:
    return " ".join(f"{a} {b.start}-{b.stop - 1}" for a, b in zip("zyx", box, strict=True))
