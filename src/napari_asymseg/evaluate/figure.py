"""The quality figure: how good is the prediction on the voxels nobody painted? In seconds.

The only truth a scan holds is its paint, and the network was trained on all of it, so no
painted voxel can judge it (the cross-validation that held painted slices out cost two more
trainings and erred low by up to 0.54 on the real scans, docs/training.md). And the network
cannot judge itself: the expected DSC from its own probabilities overstated exactly where it
was wrong (brain2: 0.60 against a true 0.00), because a network trained on few lesion voxels
is confidently wrong on lesion it has not seen (Li et al.).

What does know the unpainted lesion is its shape. A lesion is one object whose outline changes
smoothly from slice to slice: between two painted slices it is close to the fill between them
(:func:`~napari_asymseg.annotate.interpolate.fill_between`), and beyond a lesion's last painted
slice it goes on and closes, over about its radius, like the end of an ellipsoid
(:func:`ends`). That *reference* is image-blind, so it errs where the network errs least (an
outline the image shows) and not where the network errs most (a lesion it does not see, an
island of false positives far from the paint). Its outline is uncertain by about a voxel, so
each voxel is lesion with a probability that falls from 0.62 just inside the outline to 0.38
just outside and to nothing a few voxels away (:func:`likelihood`). The figure is the DSC the
prediction is expected to have against that reference on the unpainted voxels, with its
sensitivity and precision (:func:`figure`). Chosen by measurement against the naive expected
DSC and the cross-validation (``benchmarks/quality_figure.py``, docs/training.md).

Its interval says how far the reference's guesses can move it: from the lowest expected DSC
against a *lean* reference (ends half as long), the nominal one and a *full* one (ends half as
long again), to the highest DSC against any of them taken as exact (a prediction whose outline
is right), widened on each side by :data:`MARGIN`. What it cannot see it says: a lesion
nobody painted on any slice is not in the reference, so a predicted region far from all paint
counts against the figure, and the figure names how much of the prediction that is.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_asymseg.annotate.shapes import EIGHT
from napari_asymseg.errors import ScanError
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED

MARGIN = 0.10
"""Added on each side of the interval: twice the figure's largest error against the truth on
the real-scan runs that chose the rule (0.05, ``benchmarks/results/quality_figure.json``),
for scans unlike them."""
WIDTH = 1.0
"""How uncertain the reference's outline is, in in-plane voxels (:func:`likelihood`)."""
MARGIN_VOXELS = 8
"""Beyond this many in-plane voxels from the reference a voxel is not lesion (p < 0.001)."""
LEAN, FULL = 0.5, 1.5
"""How long a lesion's end is in the lean and the full reference, in its radii."""
NEED = (
    "paint the lesion on a slice (its whole outline, the rest of that slice background) to get a "
    "quality figure"
)


@dataclass(frozen=True)
class Figure:
    """The prediction's quality on the unpainted voxels, judged against the painted shape."""

    dsc: float
    low: float
    high: float
    sensitivity: float
    precision: float
    reference_voxels: int
    """Unpainted voxels the reference calls lesion."""
    far_voxels: int
    """Predicted voxels far from every painted lesion (counted as false positives)."""
    note: str
    seconds: float = 0.0

    @property
    def known(self) -> bool:
        return not math.isnan(self.dsc)

    def line(self) -> str:
        """One line for a status bar or a terminal."""
        if not self.known:
            return f"quality on unpainted voxels unknown: {self.note}"
        return (
            f"quality on unpainted voxels: DSC about {self.dsc:.2f} (likely {self.low:.2f}-"
            f"{self.high:.2f}; sensitivity {self.sensitivity:.2f}, precision "
            f"{self.precision:.2f}){'; ' + self.note if self.note else ''}"
        )

    def as_dict(self) -> dict:
        """Its fields, JSON-ready (None where NaN): the scan's state, quality.json, the demo."""
        from napari_asymseg.store.atomic import without_nan

        return without_nan(dataclasses.asdict(self))

    @staticmethod
    def meaning() -> str:
        """What the figure means, in one sentence (the dock's tooltip)."""
        return (
            "How well the prediction agrees, on the voxels nobody painted, with the lesion's "
            "shape carried from the painted slices (filled between them, closing beyond them); "
            "the range is where the true DSC lay on the real scans measured."
        )


def unknown(note: str) -> Figure:
    nan = math.nan
    return Figure(nan, nan, nan, nan, nan, 0, 0, note)


def ends(annotations: np.ndarray, spacing: Sequence[float], covered: np.ndarray, length: float):
    """Where each painted 2D lesion goes on beyond its painted slice, where nothing covers it.

    For every lesion painted on a slice (8-connected, per class) and each direction along the
    slices, unless the next slice is painted or ``covered`` (the fill between) holds at least
    half of the lesion's footprint there, the lesion closes like a ball (:class:`_End`): the
    ball through its outline here and the outline it overlaps on the nearest painted lesion
    slice the other way; without one, a ball of the outline's equivalent radius ``R`` (mm)
    centred here, its end ``length * R`` away. A slice is a slab as thick as the spacing: the
    lesion is on it when it reaches the slab's near face, its outline there moved in to the
    ball's radius in the middle of the part of the slab it reaches. Returns a boolean mask of
    unpainted voxels (Z planes)."""
    ann = np.asarray(annotations)
    out = np.zeros(ann.shape, bool)
    plane = (float(spacing[1]), float(spacing[2]))
    painted = (ann != NOT_ANNOTATED).any(axis=(1, 2))
    lesion_slices = np.flatnonzero((ann > BACKGROUND).any(axis=(1, 2)))
    for z in (int(z) for z in lesion_slices):
        for code in np.unique(ann[z][ann[z] > BACKGROUND]):
            labels, n = ndi.label(ann[z] == code, EIGHT)
            for k in range(1, n + 1):
                lesion = labels == k
                depth = ndi.distance_transform_edt(lesion, sampling=plane)
                for step in (-1, 1):
                    nxt = z + step
                    if not 0 <= nxt < ann.shape[0] or painted[nxt]:
                        continue
                    if covered[nxt][lesion].mean() >= 0.5:  # the fill between carries it on
                        continue
                    end = _End.fit(ann, lesion, z, step, code, lesion_slices, spacing, length)
                    end.draw(out, depth, z, step, painted, float(spacing[0]))
    return out & (ann == NOT_ANNOTATED)


@dataclass(frozen=True)
class _End:
    """A lesion's end beyond its painted slice: a ball of radius ``a`` whose centre lies ``c``
    mm beyond the slice (negative: behind it), the painted outline ``r`` mm in radius."""

    r: float
    c: float
    a: float

    @classmethod
    def fit(cls, ann, lesion, z, step, code, lesion_slices, spacing, length) -> _End:
        area = float(spacing[1]) * float(spacing[2])
        r1 = math.sqrt(np.count_nonzero(lesion) * area / math.pi)
        behind = [int(o) for o in lesion_slices if (o - z) * step < 0]
        if behind:
            o = min(behind, key=lambda o: abs(o - z))  # the nearest painted slice the other way
            labels, _ = ndi.label(ann[o] == code, EIGHT)
            ids = np.unique(labels[lesion & (labels > 0)])
            if ids.size:  # the same lesion there: the ball through both outlines
                r2 = math.sqrt(np.count_nonzero(np.isin(labels, ids)) * area / math.pi)
                s2 = -abs(o - z) * float(spacing[0])
                c = (r2**2 + s2**2 - r1**2) / (2 * s2)
                return cls(r1, c, math.sqrt(r1**2 + c**2))
        return cls(r1, 0.0, r1 * length)

    def draw(self, out, depth, z, step, painted, dz) -> None:
        """The end's outline on each unpainted slice it reaches, into ``out``."""
        reach, k = self.c + self.a, 1
        while 0 <= z + step * k < out.shape[0] and not painted[z + step * k]:
            near = (k - 0.5) * dz  # a slice holds a slab: the lesion reaches its near face
            if near >= reach:
                break
            d = (near + min(near + dz, reach)) / 2  # the middle of the slab's part in it
            radius = math.sqrt(max(0.0, self.a**2 - (d - self.c) ** 2))
            out[z + step * k] |= depth > max(0.0, self.r - radius)
            k += 1


def reference(
    annotations: np.ndarray, spacing: Sequence[float], fill: np.ndarray | None, length: float = 1.0
) -> np.ndarray:
    """The lesion's shape on the unpainted voxels: the fill between painted slices (any
    class) and the lesions' ends beyond them (:func:`ends`)."""
    ann = np.asarray(annotations)
    covered = fill if fill is not None else np.zeros(ann.shape, bool)
    return (covered | ends(ann, spacing, covered, length)) & (ann == NOT_ANNOTATED)


def likelihood(ref: np.ndarray, spacing: Sequence[float]) -> tuple[tuple[slice, ...], np.ndarray]:
    """How likely each voxel is lesion, by the reference ``ref``: its outline is uncertain by
    about one voxel in the plane (where a painted outline falls between voxels, and the
    voxels the lesion only partly fills), so the probability is a logistic of the signed
    in-plane distance to the outline, one in-plane voxel wide (:data:`WIDTH`). Returns the box
    around ``ref`` beyond which it is 0, and the probabilities in it (float32)."""
    from napari_asymseg.store.arrays import bounding_box

    plane = (float(spacing[1]), float(spacing[2]))
    box = _grown(bounding_box(ref), ref.shape, MARGIN_VOXELS)
    inside = ref[box]
    sampling = (1e6, *plane)  # in-plane distances: another slice is never nearer
    depth = ndi.distance_transform_edt(inside, sampling=sampling)
    away = ndi.distance_transform_edt(~inside, sampling=sampling)
    voxel = min(plane)
    signed = np.where(inside, 0.5 * voxel - depth, away - 0.5 * voxel)  # to the outline
    return box, (1.0 / (1.0 + np.exp(np.clip(signed / (WIDTH * voxel), -50, 50)))).astype(
        np.float32
    )


def _grown(box: tuple[slice, ...], shape: tuple[int, ...], by: int) -> tuple[slice, ...]:
    """``box`` grown by ``by`` voxels in the plane (the slices stay)."""
    z, y, x = box
    return (
        z,
        slice(max(0, y.start - by), min(shape[1], y.stop + by)),
        slice(max(0, x.start - by), min(shape[2], x.stop + by)),
    )


def _scores(
    on: np.ndarray, ref: np.ndarray, spacing: Sequence[float], unpainted: np.ndarray
) -> tuple[float, float, float]:
    """Expected DSC, sensitivity and precision of the predicted voxels ``on`` against the
    reference's likelihood (:func:`likelihood`), on the ``unpainted`` voxels."""
    tp = fn = 0.0
    if ref.any():
        box, q = likelihood(ref, spacing)
        q = np.where(unpainted[box], q, 0.0)
        inside_on = on[box]
        tp, fn = float(q[inside_on].sum()), float(q[~inside_on].sum())
    fp = float(np.count_nonzero(on)) - tp  # a predicted voxel outside the box: lesion 0
    dsc = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 1.0
    sens = tp / (tp + fn) if tp + fn > 0 else math.nan
    prec = tp / (tp + fp) if tp + fp > 0 else math.nan
    return dsc, sens, prec


def _hard(on: np.ndarray, ref: np.ndarray) -> float:
    """The DSC of ``on`` against ``ref`` taken as exact."""
    tp = int(np.count_nonzero(on & ref))
    total = int(np.count_nonzero(on)) + int(np.count_nonzero(ref))
    return 2 * tp / total if total else 1.0


def figure(
    annotations: np.ndarray,
    prediction: np.ndarray,
    spacing: Sequence[float] | None = None,
    fill: np.ndarray | None = None,
) -> Figure:
    """The quality figure of ``prediction`` (class labels, 0 background) on the voxels
    ``annotations`` leaves unpainted (the rule: the module's text).

    ``fill``: the fill between the painted slices (boolean, lesion), computed here when left
    out. Works along the axis the user painted (Z normally).
    """
    t0 = time.perf_counter()
    ann, pred = np.asarray(annotations), np.asarray(prediction)
    if ann.shape != pred.shape:
        raise ScanError(
            f"the prediction's shape {pred.shape} is not the annotations' {ann.shape}: predict "
            "this scan again"
        )
    sp = tuple(float(s) for s in (spacing if spacing is not None else (1.0, 1.0, 1.0)))
    if not (ann > BACKGROUND).any():
        return unknown(NEED)
    from napari_asymseg.annotate.interpolate import painting_axis

    axis = painting_axis(ann != NOT_ANNOTATED)
    ann, pred = np.moveaxis(ann, axis, 0), np.moveaxis(pred, axis, 0)
    sp = (sp[axis], *(s for i, s in enumerate(sp) if i != axis))
    open_outline = unfinished(ann)
    if open_outline:
        return unknown(
            f"the lesion's outline is not painted on slice(s) {_listed(open_outline)}: paint "
            "background around the lesion there (its whole outline) to get a quality figure"
        )
    fill_z = _fill(ann, sp) if fill is None else np.moveaxis(np.asarray(fill, bool), axis, 0)
    unpainted = ann == NOT_ANNOTATED
    on = (pred > 0) & unpainted
    nominal = reference(ann, sp, fill_z)
    if not nominal.any():
        return unknown(
            "the painted lesion has no unpainted slice next to it: leave slices unpainted "
            "between or beyond the painted ones"
        )
    return _judged(on, nominal, ann, sp, fill_z, unpainted, t0)


def _judged(on, nominal, ann, sp, fill_z, unpainted, t0: float) -> Figure:
    """The figure of the predicted voxels ``on`` against the ``nominal`` reference, its
    interval from the lean and full references (the module's text), and its note."""
    dsc, sens, prec = _scores(on, nominal, sp, unpainted)
    lean = reference(ann, sp, _moved(fill_z, -1) & fill_z, LEAN)
    full = reference(ann, sp, _moved(fill_z, 1) | fill_z, FULL)
    soft = [_scores(on, r, sp, unpainted)[0] for r in (lean, full)]
    hard = [_hard(on, r) for r in (nominal, lean, full)]  # where the outline is exact
    far = int(np.count_nonzero(on & ~ndi.binary_dilation(full, iterations=2)))
    note = (
        f"{far} predicted voxels lie far from every painted lesion and count against it: if "
        "they are lesions nobody painted, it is better"
        if far
        else ""
    )
    return Figure(
        dsc=dsc,
        low=max(0.0, min(dsc, *soft) - MARGIN),
        high=min(1.0, max(dsc, *soft, *hard) + MARGIN),
        sensitivity=sens,
        precision=prec,
        reference_voxels=int(np.count_nonzero(nominal)),
        far_voxels=far,
        note=note,
        seconds=time.perf_counter() - t0,
    )


def _listed(slices: list[int]) -> str:
    return ", ".join(map(str, slices[:5])) + (" …" if len(slices) > 5 else "")


def unfinished(annotations: np.ndarray) -> list[int]:
    """The painted lesion slices (Z planes) whose lesion is mostly not bordered by painted
    voxels: strokes inside a lesion, not its outline, so its shape there is unknown."""
    out = []
    ring_of = np.ones((1, 3, 3), bool)
    for z in np.flatnonzero((annotations > BACKGROUND).any(axis=(1, 2))):
        lesion = annotations[z : z + 1] > BACKGROUND
        ring = ndi.binary_dilation(lesion, ring_of) & ~lesion
        if np.count_nonzero(annotations[z : z + 1][ring] == NOT_ANNOTATED) > 0.5 * ring.sum():
            out.append(int(z))
    return out


def _moved(mask: np.ndarray, by: int) -> np.ndarray:
    """``mask`` with its in-plane outlines moved out (``by`` > 0) or in by one voxel."""
    if not mask.any():
        return mask
    square = np.zeros((3, 3, 3), bool)
    square[1] = True
    op = ndi.binary_dilation if by > 0 else ndi.binary_erosion
    return op(mask, square)


def _fill(ann: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """The fill between the painted slices (any class) as a boolean mask (Z planes)."""
    from napari_asymseg.annotate.interpolate import fill_box

    mask = np.zeros(ann.shape, bool)
    found = fill_box(ann, spacing)
    if found is not None:
        box, codes = found
        mask[box] = codes > BACKGROUND
    return mask
