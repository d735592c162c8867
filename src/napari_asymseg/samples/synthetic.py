"""Deterministic synthetic 3D scans with small, rare lesions.

Small-lesion segmentation combines extreme class imbalance (1:100 to 1:10,000 foreground
voxels) with few annotated cases. Li, Kamnitsas & Glocker (2019) showed that models trained
on few cases overfit the rare class: lesions in unseen scans look different, and sensitivity
collapses. These scans reproduce that on purpose. Each seed draws its own anatomy *and* its
own lesion appearance (polarity, contrast, texture, rim, size, count), and the background
holds lesion-like spots and vessels, so a model fit to a handful of scans meets a real shift
on the next ones and no global threshold solves the task.

Only ``numpy.random.default_rng(seed)`` is used, so a seed always yields the same scan. The
anatomy is drawn by :mod:`.anatomy`, the lesions by :mod:`.lesions`; this module assembles a
scan from them and simulates the clinician's sparse annotations.
"""

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_asymseg.samples.anatomy import body_radius, smooth_field, tissue_intensities
from napari_asymseg.samples.lesions import draw_look, paint_lesions
from napari_asymseg.store.annotations import from_mask

_FG_RANGE = (0.002, 0.02)  # default lesion volume fraction, drawn log-uniformly
_MIN_EDGE = 3  # lesions stay off the border, so each axis needs one interior voxel


@dataclass(frozen=True, eq=False)  # eq=False: array fields make dataclass __eq__ ambiguous
class SyntheticScan:
    """A synthetic scan and the exact lesion mask painted into it.

    Attributes
    ----------
    image : numpy.ndarray
        float32 ``(Z, Y, X)`` MR-like magnitude image: air near 0, tissue about 100 to 1000.
    ground_truth : numpy.ndarray
        uint8 ``(Z, Y, X)``; 0 background, 1 lesion.
    spacing : tuple of float
        Voxel size ``(z, y, x)`` in mm.
    seed : int
        Seed that reproduces this scan with :func:`synthetic_scan`.
    """

    image: np.ndarray
    ground_truth: np.ndarray
    spacing: tuple[float, float, float]
    seed: int

    @property
    def fg_fraction(self) -> float:
        """Fraction of all voxels that are lesion."""
        return float(np.count_nonzero(self.ground_truth)) / self.ground_truth.size


def _triplet(values: object, cast: Callable[[Any], Any], low: float, what: str) -> tuple:
    """Validate 3 finite numbers >= ``low``; bools are refused, operator.index refuses floats."""
    try:
        out = tuple(cast(v) for v in values)  # type: ignore[attr-defined]
        bad = any(isinstance(v, bool) for v in values)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        out, bad = (), True
    if bad or len(out) != 3 or not all(math.isfinite(v) and v >= low for v in out):
        raise ValueError(f"{what}, got {values!r}")
    return out


def synthetic_scan(
    seed: int,
    shape: tuple[int, int, int] = (40, 112, 112),
    spacing: tuple[float, float, float] = (2.0, 0.8, 0.8),
    fg_fraction: float | None = None,
    polarity: int | None = None,
) -> SyntheticScan:
    """Generate one deterministic synthetic MR-like scan with 1 to 5 small lesions.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed and arguments always give identical arrays.
    shape : tuple of int
        ``(Z, Y, X)`` voxels, each at least 3.
    spacing : tuple of float
        ``(z, y, x)`` voxel size in mm; smoothness and lesion shapes are defined in mm.
    fg_fraction : float, optional
        Lesion volume fraction in ``(0, 0.1]``. If None it is drawn log-uniformly from
        ``[0.002, 0.02]``. Lesion volumes are exact by construction; the realised fraction
        only falls short when the body has no room left, which the defaults never hit.
    polarity : {1, -1}, optional
        Make the lesions hyper-intense (1) or hypo-intense (-1) instead of drawing it; their
        contrast, texture, rim and edges still vary from scan to scan. Scans of one MR
        sequence share a polarity (lesions are bright on FLAIR), so a benchmark that trains
        on a few scans and tests on others fixes it. None (default): drawn per scan.

    Returns
    -------
    SyntheticScan

    Raises
    ------
    ValueError
        On a malformed seed, shape, spacing or fg_fraction.
    """
    dims, sp_t = _check_scan_args(seed, shape, spacing, fg_fraction, polarity)
    rng = np.random.default_rng(seed)
    sp = np.asarray(sp_t)
    if fg_fraction is None:
        fg_fraction = float(np.exp(rng.uniform(*np.log(_FG_RANGE))))

    # Appearance and lesion plan come first so that a seed keeps its look at any shape.
    # One appearance per scan: this between-scan shift is what few-case training overfits.
    look = draw_look(rng, polarity)
    n_fg = max(1, round(fg_fraction * math.prod(dims)))
    n_les = int(min(rng.integers(1, 6), max(1, n_fg // 8)))
    share = 0.15 / n_les + 0.85 * rng.dirichlet(np.full(n_les, 1.5))  # no vanishing lesion
    vols = np.maximum(1, np.round(share * n_fg)).astype(int).tolist()

    radius = body_radius(rng, dims, sp)
    tissue = tissue_intensities(rng, radius, sp)
    ground_truth = paint_lesions(rng, tissue, radius, sp, vols, n_fg, look)
    return SyntheticScan(_acquire(rng, tissue, sp), ground_truth, sp_t, int(seed))


def _check_scan_args(
    seed: int,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    fg_fraction: float | None,
    polarity: int | None,
) -> tuple[tuple, tuple]:
    """Refuse malformed arguments of :func:`synthetic_scan`; the shape and spacing triplets."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if polarity not in (None, 1, -1) or isinstance(polarity, bool):
        raise ValueError(
            f"polarity must be 1 (bright lesions), -1 (dark) or None, got {polarity!r}"
        )
    dims = _triplet(shape, operator.index, _MIN_EDGE, f"shape must be 3 ints >= {_MIN_EDGE}")
    sp_t = _triplet(spacing, float, 1e-9, "spacing must be 3 positive finite floats (mm)")
    if fg_fraction is not None and not 0 < float(fg_fraction) <= 0.1:
        raise ValueError(f"fg_fraction must be in (0, 0.1], got {fg_fraction!r}")
    return dims, sp_t


def _acquire(rng: np.random.Generator, tissue: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Multiplicative coil bias, then Rician magnitude noise (air becomes Rayleigh, as in MR)."""
    dims = tissue.shape
    bias = np.exp(rng.uniform(0.05, 0.2) * smooth_field(rng, dims, sp, 60.0))
    sigma = rng.uniform(0.015, 0.04) * 500.0
    real = tissue * bias + sigma * rng.standard_normal(dims, dtype=np.float32)
    imag = sigma * rng.standard_normal(dims, dtype=np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def sparse_annotations(
    ground_truth: np.ndarray, n_slices: int = 4, *, seed: int = 0, n_empty: int = 1, axis: int = 0
) -> np.ndarray:
    """Simulate a clinician annotating a few whole slices of a scan.

    Parameters
    ----------
    ground_truth : numpy.ndarray
        3D mask; nonzero voxels are lesion.
    n_slices : int
        Lesion-bearing slices to annotate (all of them if fewer exist), most lesion first.
    seed : int
        Seed for the jitter and for choosing empty slices.
    n_empty : int
        Lesion-free slices to annotate too (fewer if fewer exist); they teach "no lesion".
    axis : int
        Axis the slices are taken along.

    Returns
    -------
    numpy.ndarray
        uint8, same shape: 0 not annotated, 1 annotated background, 2 annotated lesion.

    Raises
    ------
    ValueError
        If ground_truth is not 3D or has no foreground, or on a bad count or axis.
    """
    fg = _foreground_slices(ground_truth, n_slices, n_empty, axis)
    rng = np.random.default_rng(seed)
    labels, n_les = ndi.label(fg)
    depth = fg.shape[0]
    flat = (np.arange(depth)[:, None, None] * (n_les + 1) + labels).ravel()
    area = np.bincount(flat, minlength=depth * (n_les + 1)).reshape(depth, n_les + 1)[:, 1:]
    score = area * rng.uniform(0.9, 1.0, area.shape)
    chosen = _lesion_slices(area, score, n_slices)
    empty = np.flatnonzero(area.sum(1) == 0)
    picked = rng.choice(empty, min(n_empty, empty.size), replace=False).tolist()
    out = np.zeros(fg.shape, np.uint8)
    for s in chosen + picked:
        out[s] = from_mask(fg[s])  # 1 annotated background, 2 annotated lesion
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))


def _foreground_slices(
    ground_truth: np.ndarray, n_slices: int, n_empty: int, axis: int
) -> np.ndarray:
    """Check the arguments of :func:`sparse_annotations`; the lesion mask, ``axis`` first."""
    gt = np.asarray(ground_truth)
    if gt.ndim != 3:
        raise ValueError(f"ground_truth must be 3D, got shape {gt.shape}")
    for name, val in (("n_slices", n_slices), ("n_empty", n_empty)):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 0:
            raise ValueError(f"{name} must be a non-negative int, got {val!r}")
    if axis not in (-3, -2, -1, 0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    fg = np.moveaxis(gt != 0, axis, 0)
    if not fg.any():
        raise ValueError("ground_truth has no foreground voxels to annotate")
    return fg


def _lesion_slices(area: np.ndarray, score: np.ndarray, n_slices: int) -> list[int]:
    """Up to ``n_slices`` slices by ``score``, each lesion in turn (``area``: slice x lesion).

    Lesions take turns, largest first, so picks cover different lesions before a second
    slice of one; the seeded 10% jitter in ``score`` varies near-ties between sessions.
    """
    depth = area.shape[0]
    target = min(n_slices, np.flatnonzero(area.sum(1)).size)
    order = np.argsort(-area.sum(0), kind="stable")
    pos = np.arange(depth)
    chosen: list[int] = []
    while len(chosen) < target:
        for les in order:
            if len(chosen) == target:
                break
            s = score[:, les].copy()
            for c in chosen:  # factor 0 on picked slices, ~0.2 next to them, ~1 beyond 4
                s *= 1 - np.exp(-(((pos - c) / 2.0) ** 2))
            if s.max() > 0:
                chosen.append(int(s.argmax()))
    return chosen
