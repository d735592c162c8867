"""Fill between painted slices: a lesion's shape on the unpainted slices between two slices
where it is painted.

:func:`fill_between` takes a scan's annotation codes and proposes codes for unannotated voxels;
``asymseg fill`` writes them with :func:`write_fill` (provenance *filled*,
:mod:`napari_asymseg.store.provenance`); the dock will preview them. The rules, each covered by
``tests/annotate/test_interpolate.py``:

- **Which slices.** Per class, every two consecutive slices painted with that class (*lesion
  slices*) with unpainted slices between them are a pair; nothing is filled beyond the first
  and last lesion slice of a class.
- **Which lesions.** The class's 2D lesions (8-connected) on the two slices are matched by
  :func:`~napari_asymseg.annotate.shapes.match_lesions`: lesions whose painted areas overlap
  are one lesion (one-to-several when it splits or merges); two that do not overlap are one
  lesion that moved when each is the other's nearest and the gap between them is at most half
  the larger one's equivalent radius. Any other lesion is left out with a one-line reason: it
  ends somewhere between, and only the user knows where.
- **A painted slice between ends a lesion.** Where a slice between the pair is painted (with
  background or another class) over at least half (:data:`ENDS`) of the lesion's shape there,
  the lesion is not there: that lesion is left out, so two runs of a lesion separated by a
  painted lesion-free slice are never bridged.
- **Paint wins.** Only unannotated voxels are proposed; a voxel that two classes would fill is
  left unannotated.
- **Which axis.** Slices are planes of the axis the user painted: Z normally; where the
  annotations are whole planes of Y or X (or, without whole planes, touch the fewest planes of
  it), the fill runs along that axis. Whole planes of two axes are refused in one line.

The shape between is a blend of signed distance maps with the centroids aligned
(:func:`~napari_asymseg.annotate.shapes.blend_sdf`), chosen over ITK's morphological contour
interpolation by measurement (docs/methods.md, "Fill between slices").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_asymseg.annotate.shapes import (
    EIGHT,
    Between,
    Match,
    blend_sdf,
    crop_around,
    match_lesions,
)
from napari_asymseg.errors import ScanError
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED, class_of_code, code_of_class
from napari_asymseg.store.arrays import bounding_box, read
from napari_asymseg.store.provenance import FILLED
from napari_asymseg.store.scan import Scan

AXES = "ZYX"
ENDS = 0.5
"""Share of a lesion's shape on a slice between that, painted without the lesion, ends it."""
NOTHING_TO_FILL = (
    "nothing to fill: no class has two painted lesion slices with unpainted slices between "
    "them: paint the lesion on two slices with unpainted slices between them, then fill"
)


@dataclass(frozen=True)
class Skipped:
    """Slices between ``first`` and ``last`` that class ``klass`` was not filled on, and why
    (one line, without the class's name)."""

    klass: int
    first: int
    last: int
    reason: str


@dataclass(frozen=True, eq=False)  # eq=False: an array field makes __eq__ ambiguous
class Fill:
    """The proposal of :func:`fill_between`.

    Attributes
    ----------
    codes
        uint8, the annotations' shape: the annotation code to set, ``0`` to leave a voxel as
        it is. Only unannotated voxels are ever set.
    axis
        The axis whose planes are the slices (0 Z, 1 Y, 2 X).
    filled
        Class (1..K) -> {slice index along ``axis``: voxels filled}.
    skipped
        What was not filled, with the reason.
    """

    codes: np.ndarray
    axis: int
    filled: dict[int, dict[int, int]]
    skipped: tuple[Skipped, ...]

    @property
    def voxels(self) -> int:
        return sum(sum(per.values()) for per in self.filled.values())

    def lines(self, names: Sequence[str]) -> list[str]:
        """The report: per class the slices filled and their voxels, then what was skipped.
        ``names[k - 1]`` names class ``k``."""
        word = plane_word(self.axis)
        out = []
        for k, per in sorted(self.filled.items()):
            if per:
                each = ", ".join(f"{z}: {n}" for z, n in sorted(per.items()))
                many = f"{len(per)} {word}s" if len(per) > 1 else f"1 {word}"
                out.append(f"{names[k - 1]}: {sum(per.values())} voxels on {many}: {each}")
        for s in self.skipped:
            out.append(f"{names[s.klass - 1]}, {word}s {s.first}-{s.last}: not filled: {s.reason}")
        return out


def fill_between(
    annotations: np.ndarray,
    spacing: Sequence[float] | None = None,
    classes: Sequence[int] | None = None,
    *,
    between: Between = blend_sdf,
) -> Fill:
    """Propose each class between two of its painted slices (the rules: module docstring).

    Parameters
    ----------
    annotations
        Annotation codes (Z, Y, X): 0 not annotated, 1 background, k+1 class k.
    spacing
        Voxel size in mm (Z, Y, X); 1 mm when left out. Only the in-plane sizes matter.
    classes
        The classes (1..K) to fill; all painted classes when left out.
    between
        The shapes between two painted shapes (:data:`~napari_asymseg.annotate.shapes.Between`);
        the default is the signed-distance blend. Measurements pass ITK's here.

    Raises
    ------
    ScanError
        Not a 3D array; annotations painted on whole planes of two axes; or no class with two
        painted lesion slices and unpainted slices between them (nothing to fill).
    """
    ann = np.asarray(annotations)
    if ann.ndim != 3:
        raise ScanError(f"annotations must be 3D (Z, Y, X), got {ann.ndim} dimensions")
    sp = tuple(float(s) for s in (spacing if spacing is not None else (1.0, 1.0, 1.0)))
    axis = painting_axis(ann != NOT_ANNOTATED)
    plane = (sp[1], sp[2]) if axis == 0 else (sp[0], sp[2]) if axis == 1 else (sp[0], sp[1])
    proposal = _Proposal(np.moveaxis(ann, axis, 0), axis, plane, between)
    for code, slices in _lesion_slices(proposal.view, classes).items():
        for z0, z1 in zip(slices, slices[1:], strict=False):
            if z1 - z0 > 1:
                proposal.pair(code, z0, z1)
    if not proposal.pairs:
        raise ScanError(NOTHING_TO_FILL)
    codes, filled = proposal.result()
    return Fill(np.moveaxis(codes, 0, axis), axis, filled, tuple(proposal.skipped))


def fill_box(
    annotations: np.ndarray, spacing: Sequence[float]
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """The fill between the painted slices of ``annotations`` in its bounding box: ``(box,
    codes)`` with ``codes`` the annotation code it proposes for each unannotated voxel (0
    elsewhere), or None when there is nothing to fill (the prediction's fill, the quality
    figure's reference)."""
    try:
        fill = fill_between(annotations, spacing)
    except ScanError:  # fewer than two painted lesion slices of any class
        return None
    codes = np.where(np.asarray(annotations) == NOT_ANNOTATED, fill.codes, NOT_ANNOTATED)
    if not codes.any():
        return None
    box = bounding_box(codes != NOT_ANNOTATED)
    return box, codes[box]


def painting_axis(annotated: np.ndarray) -> int:
    """The axis whose planes the user painted (0 Z, 1 Y, 2 X).

    The axis with whole annotated planes (the dock paints the rest of a slice background) when
    there is one; without whole planes (strokes only), the axis whose planes the annotations
    touch the smallest share of, Z first on a tie.

    Raises
    ------
    ScanError
        Whole planes of two axes are annotated (and neither axis is annotated throughout).
    """
    others = ((1, 2), (0, 2), (0, 1))
    whole = [int(annotated.all(axis=o).sum()) for o in others]
    with_whole = [a for a in range(3) if 0 < whole[a] < annotated.shape[a]]
    if len(with_whole) > 1:
        a, b = with_whole[:2]
        raise ScanError(
            f"the annotations are whole planes of two axes ({AXES[a]} and {AXES[b]}): fill "
            f"works along one axis: paint the lesion's slices along one of them, then fill"
        )
    if with_whole:
        return with_whole[0]
    return int(np.argmin([annotated.any(axis=o).mean() for o in others]))


def plane_word(axis: int) -> str:
    """What a slice is called along ``axis``: ``slice`` (Z), ``Y plane``, ``X plane``."""
    return "slice" if axis == 0 else f"{AXES[axis]} plane"


def _lesion_slices(view: np.ndarray, classes: Sequence[int] | None) -> dict[int, list[int]]:
    """Annotation code -> the slices painted with it, for the wanted classes."""
    wanted = None if classes is None else {code_of_class(int(k)) for k in classes}
    found: dict[int, list[int]] = {}
    for z in range(view.shape[0]):
        present = np.flatnonzero(np.bincount(view[z].ravel(), minlength=BACKGROUND + 1))
        for code in present[present > BACKGROUND]:
            if wanted is None or int(code) in wanted:
                found.setdefault(int(code), []).append(z)
    return found


class _Proposal:
    """The codes proposed so far (slices first: the painting axis moved to 0), the voxels two
    classes want (left out at the end) and the reasons of what was skipped."""

    def __init__(
        self, view: np.ndarray, axis: int, spacing: tuple[float, float], between: Between
    ) -> None:
        self.view, self.axis, self.spacing, self.between = view, axis, spacing, between
        self.codes = np.zeros(view.shape, np.uint8)
        self.clash: dict[int, np.ndarray] = {}
        self.skipped: list[Skipped] = []
        self.pairs = 0
        self.word = plane_word(axis)

    def pair(self, code: int, z0: int, z1: int) -> None:
        """Fill class ``code`` between its lesion slices ``z0`` and ``z1``."""
        self.pairs += 1
        first, _ = ndi.label(self.view[z0] == code, EIGHT)
        last, _ = ndi.label(self.view[z1] == code, EIGHT)
        matches, alone0, alone1 = match_lesions(first, last, self.spacing)
        for labels, alone, z, other in ((first, alone0, z0, z1), (last, alone1, z1, z0)):
            for label in alone:
                self._skip(
                    code,
                    z0,
                    z1,
                    f"the lesion at {self._where(labels, label, z)} has none overlapping or near "
                    f"it on {self.word} {other}: it begins or ends between them; paint the "
                    f"{self.word} where it does to fill up to it",
                )
        boxes = (ndi.find_objects(first), ndi.find_objects(last))
        for match in matches:
            self._lesion(code, z0, z1, (first, last), boxes, match)

    def _lesion(
        self,
        code: int,
        z0: int,
        z1: int,
        labels: tuple[np.ndarray, np.ndarray],
        boxes: tuple[list, list],
        match: Match,
    ) -> None:
        """Fill one matched lesion between ``z0`` and ``z1``, unless a painted slice ends it."""
        ends = [[boxes[0][i - 1] for i in match.first], [boxes[1][j - 1] for j in match.last]]
        centre = [np.mean([[(s.start + s.stop) / 2 for s in b] for b in e], 0) for e in ends]
        margin = 2 + int(np.ceil(np.abs(centre[1] - centre[0]).max()))
        crop = crop_around(ends[0] + ends[1], self.view.shape[1:], margin)
        first = np.isin(labels[0][crop], match.first)
        last = np.isin(labels[1][crop], match.last)
        shapes = self.between(first, last, z1 - z0 - 1, self.spacing)
        for z, shape in enumerate(shapes, z0 + 1):
            painted = int(np.count_nonzero(shape & (self.view[z][crop] != NOT_ANNOTATED)))
            if shape.any() and painted >= ENDS * np.count_nonzero(shape):
                where = self._where(labels[0], match.first[0], z0)
                self._skip(
                    code,
                    z0,
                    z1,
                    f"{self.word} {z} is painted without this class where the lesion from "
                    f"{where} would be: it ends before; paint the {self.word} where it ends to "
                    "fill up to it",
                )
                return
        for z, shape in enumerate(shapes, z0 + 1):
            target = self.codes[z][crop]  # a view: written in place
            free = shape & (self.view[z][crop] == NOT_ANNOTATED)
            other = free & (target != 0) & (target != code)
            target[free & (target == 0)] = code
            if other.any():
                self.clash.setdefault(z, np.zeros(self.view.shape[1:], bool))[crop] |= other

    def _where(self, labels: np.ndarray, label: int, z: int) -> str:
        """``slice 8 (z 8, y 120, x 88)``: where a lesion is, in the scan's axes."""
        u, v = (int(round(c)) for c in ndi.center_of_mass(labels == label))
        at = [u, v]
        at.insert(self.axis, z)
        return f"{self.word} {z} (z {at[0]}, y {at[1]}, x {at[2]})"

    def _skip(self, code: int, z0: int, z1: int, reason: str) -> None:
        self.skipped.append(Skipped(class_of_code(code), z0, z1, reason))

    def result(self) -> tuple[np.ndarray, dict[int, dict[int, int]]]:
        """The codes, voxels two classes want left out, and voxels per class and slice."""
        for z, clash in self.clash.items():
            self.codes[z][clash] = NOT_ANNOTATED
        filled: dict[int, dict[int, int]] = {}
        for index in np.flatnonzero(self.codes.reshape(len(self.codes), -1).any(axis=1)):
            counts = np.bincount(self.codes[index].ravel())
            for code in np.flatnonzero(counts[1:]) + 1:
                filled.setdefault(class_of_code(int(code)), {})[int(index)] = int(counts[code])
        return self.codes, filled


def write_fill(scan: Scan, fill: Fill) -> int:
    """Write the proposal into the scan as annotation with provenance *filled*.

    The slab of slices it touches is read, its proposed voxels that are still unannotated set
    (paint made since the proposal wins) and written back in one region write (atomic per
    chunk; :meth:`Scan.write_annotations`). Returns the voxels written.
    """
    if fill.codes.shape != scan.shape:
        raise ScanError(
            f"the fill was proposed for annotations of shape {fill.codes.shape}, the scan is "
            f"{scan.shape}: fill this scan's annotations"
        )
    along = np.moveaxis(fill.codes, fill.axis, 0)
    touched = np.flatnonzero(along.reshape(len(along), -1).any(axis=1))
    if not touched.size:
        return 0
    region = [slice(None)] * 3
    region[fill.axis] = slice(int(touched[0]), int(touched[-1]) + 1)
    box = tuple(region)
    current = read(scan.annotations, box)
    proposed = fill.codes[box]
    new = (proposed != NOT_ANNOTATED) & (current == NOT_ANNOTATED)
    scan.write_annotations(np.where(new, proposed, current), region=box, source=FILLED)
    return int(np.count_nonzero(new))
