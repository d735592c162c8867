"""Under-segmentation flags: where the risk map says lesion is probably missed (METHODS.md §5).

Flags are connected regions of risk (:mod:`napari_asymseg.review.risk_map`) at or above a
threshold, ranked by their expected missed foreground volume (the sum of the risk over the
region). The flags keep no state of their own: they are the suspected misses of the review
queue (:mod:`napari_asymseg.review.queue`), which stores their answers
(:mod:`napari_asymseg.review.state`). A flag whose centre lies in the box of a miss the user
answered Lesion (painted there; ``asymseg flag --done``) is ``done``. The single-process
path (:func:`find_flags`, :func:`flag_scan`) and the dask path
(:func:`napari_asymseg.infer.scaleout.flag_dask`) share :class:`RegionStats` and
:func:`rank_regions`. The design choices were made by ``benchmarks/risk_quality.py``; see
docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from napari_asymseg.errors import ScanError
from napari_asymseg.review.items import BoxRecord
from napari_asymseg.review.risk_map import THRESHOLD, with_annotations
from napari_asymseg.review.state import painted
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED
from napari_asymseg.store.scan import Scan, read


# ----------------------------------------------------------------------------- flags
@dataclass(frozen=True)
class Flag(BoxRecord):
    """A region where foreground is probably missed."""

    id: int
    rank: int
    center: tuple[int, int, int]  # (z, y, x) voxel of the region's highest risk
    bbox: tuple[int, int, int, int, int, int]  # z0, y0, x0, z1, y1, x1 (end exclusive)
    voxels: int
    expected_missed: float  # expected missed foreground voxels: the sum of the risk
    expected_mm3: float
    max_risk: float  # highest risk on an unannotated voxel
    known_misses: int  # annotated foreground voxels the model predicts background
    status: str = "open"  # "open" or "done"

    @property
    def done(self) -> bool:
        return self.status == "done"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Flag:
        return cls(**cls.fields_of(d))


def find_flags(
    risk: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    annotations: np.ndarray | None = None,
    prediction: np.ndarray | None = None,
    threshold: float = THRESHOLD,
    min_expected: float = 1.0,
    min_known: int = 10,
    max_flags: int = 100,
    done: Iterable[BoxRecord] = (),
) -> list[Flag]:
    """Group voxels of risk >= ``threshold`` into 26-connected regions, ranked by expected
    missed volume; open flags first, then the ones a stored ``done`` flag covers.

    With ``annotations``, a region's expected missed volume counts its unannotated voxels only
    (that is where annotating helps) and its centre is its riskiest unannotated voxel; the
    annotated foreground the model misses is reported as ``known_misses`` (fine-tuning, not
    more painting, fixes those), and a region with ``min_known`` of them is kept even when
    nothing else in it is at risk.
    """

    r = np.asarray(risk, dtype=np.float32)
    if r.ndim != 3:
        raise ScanError(f"the risk map must be 3D, got shape {r.shape}")
    return rank_regions(
        labelled_stats(r, threshold, annotations, prediction),
        spacing=spacing,
        min_expected=min_expected,
        min_known=min_known,
        max_flags=max_flags,
        done=done,
    )


def labelled_stats(
    risk: np.ndarray,
    threshold: float,
    annotations: np.ndarray | None = None,
    prediction: np.ndarray | None = None,
) -> RegionStats:
    """:class:`RegionStats` of the 26-connected regions of ``risk >= threshold``."""
    from scipy import ndimage

    labels, n = ndimage.label(risk >= threshold, structure=np.ones((3, 3, 3), bool))
    return region_stats(risk, labels, np.arange(1, n + 1), annotations, prediction)


@dataclass
class RegionStats:
    """What ranking needs of each labelled region (arrays over the regions ``ids``).

    Positions are flat C-order indices into the volume (``offset`` added for a block of it);
    of equal maxima the first in C order counts, as in scipy's ``maximum_position``.
    """

    ids: np.ndarray
    sums: np.ndarray  # risk summed over unannotated voxels
    sizes: np.ndarray
    maxima: np.ndarray  # highest risk on an unannotated voxel
    peaks: np.ndarray  # where that is
    any_maxima: np.ndarray  # highest risk anywhere in the region
    any_peaks: np.ndarray
    lo: np.ndarray  # bounding box [n, 3], start
    hi: np.ndarray  # bounding box [n, 3], end (exclusive)
    known: np.ndarray  # annotated foreground predicted background
    shape: tuple[int, int, int]

    def merged(self, other: RegionStats) -> RegionStats:
        """The statistics of both (a region may span blocks: its parts are combined)."""
        ids = np.union1d(self.ids, other.ids)
        parts = [self._spread(ids), other._spread(ids)]
        a, b = parts

        def first_max(va, pa, vb, pb):
            take_b = (vb > va) | ((vb == va) & (pb < pa))
            return np.where(take_b, vb, va), np.where(take_b, pb, pa)

        maxima, peaks = first_max(a.maxima, a.peaks, b.maxima, b.peaks)
        any_maxima, any_peaks = first_max(a.any_maxima, a.any_peaks, b.any_maxima, b.any_peaks)
        return RegionStats(
            ids,
            a.sums + b.sums,
            a.sizes + b.sizes,
            maxima,
            peaks,
            any_maxima,
            any_peaks,
            np.minimum(a.lo, b.lo),
            np.maximum(a.hi, b.hi),
            a.known + b.known,
            self.shape,
        )

    def _spread(self, ids: np.ndarray) -> RegionStats:
        """These statistics over ``ids`` (a superset), neutral where a region is absent."""
        at = np.searchsorted(ids, self.ids)
        n = len(ids)

        def put(values, fill, dtype):
            out = np.full((n, *values.shape[1:]), fill, dtype)
            out[at] = values
            return out

        big = np.iinfo(np.int64).max
        return RegionStats(
            ids,
            put(self.sums, 0.0, np.float64),
            put(self.sizes, 0, np.int64),
            put(self.maxima, -np.inf, np.float64),
            put(self.peaks, big, np.int64),
            put(self.any_maxima, -np.inf, np.float64),
            put(self.any_peaks, big, np.int64),
            put(self.lo, big, np.int64),
            put(self.hi, -1, np.int64),
            put(self.known, 0, np.int64),
            self.shape,
        )


def region_stats(
    risk: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    annotations: np.ndarray | None = None,
    prediction: np.ndarray | None = None,
    *,
    offset: int = 0,
    shape: Sequence[int] | None = None,
) -> RegionStats:
    """:class:`RegionStats` of the regions ``ids`` of ``labels`` (a volume, or a block of
    whole slices starting at flat index ``offset`` of a volume of ``shape``)."""
    from scipy import ndimage

    r = np.asarray(risk, dtype=np.float32)
    full = tuple(int(v) for v in (shape or r.shape))
    ids = np.asarray(ids, np.int64)
    open_risk = r if annotations is None else r * (np.asarray(annotations) == NOT_ANNOTATED)
    n = len(ids)
    if n == 0:
        empty = np.zeros(0)
        return RegionStats(
            ids, empty, empty.astype(np.int64), empty, empty.astype(np.int64), empty,
            empty.astype(np.int64), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64),
            empty.astype(np.int64), (full[0], full[1], full[2]),
        )  # fmt: skip
    z_off = offset // (full[1] * full[2])

    def flat(positions) -> np.ndarray:
        pos = np.asarray(positions, np.int64).reshape(n, 3)
        return np.ravel_multi_index((pos[:, 0] + z_off, pos[:, 1], pos[:, 2]), full)

    slices = ndimage.find_objects(labels, max_label=int(ids.max()))
    boxes = [slices[i - 1] for i in ids]
    known = np.zeros(n, np.int64)
    if annotations is not None and prediction is not None:
        miss = (np.asarray(annotations) > BACKGROUND) & (np.asarray(prediction) == 0)
        known = np.bincount(labels[miss], minlength=int(ids.max()) + 1)[ids]
    return RegionStats(
        ids=ids,
        sums=np.asarray(ndimage.sum_labels(open_risk, labels, ids), np.float64),
        sizes=np.bincount(labels.ravel(), minlength=int(ids.max()) + 1)[ids].astype(np.int64),
        maxima=np.asarray(ndimage.maximum(open_risk, labels, ids), np.float64),
        peaks=flat(ndimage.maximum_position(open_risk, labels, ids)),
        any_maxima=np.asarray(ndimage.maximum(r, labels, ids), np.float64),
        any_peaks=flat(ndimage.maximum_position(r, labels, ids)),
        lo=np.array(
            [[sl.start + (z_off if d == 0 else 0) for d, sl in enumerate(b)] for b in boxes]
        ),
        hi=np.array(
            [[sl.stop + (z_off if d == 0 else 0) for d, sl in enumerate(b)] for b in boxes]
        ),
        known=known.astype(np.int64),
        shape=(full[0], full[1], full[2]),
    )


def rank_regions(
    stats: RegionStats,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    min_expected: float = 1.0,
    min_known: int = 10,
    max_flags: int = 100,
    done: Iterable[BoxRecord] = (),
) -> list[Flag]:
    """Flags from region statistics: ranked by expected missed volume, then known misses;
    open flags first, then the ones a ``done`` flag covers (see :func:`find_flags`)."""
    voxel_mm3 = float(np.prod(spacing))
    done = list(done)
    flags = []
    for i in np.lexsort((-stats.known, -stats.sums)):
        if stats.sums[i] < min_expected and stats.known[i] < min_known:
            continue
        peak = stats.peaks[i] if stats.maxima[i] > 0 else stats.any_peaks[i]
        center = tuple(int(v) for v in np.unravel_index(int(peak), stats.shape))
        status = "done" if any(d.contains(center) for d in done) else "open"
        lo, hi = (int(v) for v in stats.lo[i]), (int(v) for v in stats.hi[i])
        (z0, y0, x0), (z1, y1, x1) = lo, hi
        flags.append(
            Flag(
                id=0,
                rank=0,
                center=(center[0], center[1], center[2]),
                bbox=(z0, y0, x0, z1, y1, x1),
                voxels=int(stats.sizes[i]),
                expected_missed=float(stats.sums[i]),
                expected_mm3=float(stats.sums[i]) * voxel_mm3,
                max_risk=float(stats.maxima[i]),
                known_misses=int(stats.known[i]),
                status=status,
            )
        )
    ordered = [f for f in flags if not f.done] + [f for f in flags if f.done]
    return [replace(f, id=k + 1, rank=k + 1) for k, f in enumerate(ordered[:max_flags])]


# ----------------------------------------------------------------------------- the store
def stored_risk_arrays(scan: Scan) -> tuple[Any, Any]:
    """The stored risk map and prediction (zarr arrays); a clear error before any prediction."""
    results = scan.results()
    if "risk" not in results or "prediction" not in results:
        raise ScanError(
            f"{scan.path.name} has no risk map yet: predict it with a model first "
            "(asymseg flag SCAN --model MODEL, or Predict scan in the dock)"
        )
    return results["risk"], results["prediction"]


def _stored_risk(scan: Scan) -> tuple[np.ndarray, np.ndarray]:
    """The stored risk map and prediction, read."""
    risk, prediction = stored_risk_arrays(scan)
    return read(risk).astype(np.float32), read(prediction)


def current_risk(scan: Scan) -> np.ndarray:
    """The stored risk map, made exact on the scan's current annotations."""
    risk, prediction = _stored_risk(scan)
    return with_annotations(risk, scan.read_annotations(), prediction)


def flag_scan(
    scan: Scan,
    *,
    threshold: float = THRESHOLD,
    min_expected: float = 1.0,
    max_flags: int = 100,
) -> list[Flag]:
    """The scan's flags from its stored risk, made exact on its current annotations.

    Nothing is stored: the review queue holds the state. The misses answered Lesion in it are
    ``done`` here (a flag whose peak lies inside one's box).
    """
    risk, prediction = _stored_risk(scan)
    annotations = scan.read_annotations()
    stats = labelled_stats(
        with_annotations(risk, annotations, prediction), threshold, annotations, prediction
    )
    return flags_from_stats(scan, stats, min_expected=min_expected, max_flags=max_flags)


def flags_from_stats(
    scan: Scan,
    stats: RegionStats,
    *,
    min_expected: float = 1.0,
    max_flags: int = 100,
) -> list[Flag]:
    """The scan's ranked flags from its regions' statistics (from one process or merged from
    blocks); the misses answered Lesion in its review queue are ``done``."""
    return rank_regions(
        stats,
        spacing=scan.spacing,
        min_expected=min_expected,
        max_flags=max_flags,
        done=painted(scan),
    )
