"""Deterministic synthetic 3D scans with small, rare lesions.

Small-lesion segmentation combines extreme class imbalance (1:100 to 1:10,000 foreground
voxels) with few annotated cases. Li, Kamnitsas & Glocker (2019) showed that models trained
on few cases overfit the rare class: lesions in unseen scans look different, and sensitivity
collapses. These scans reproduce that on purpose. Each seed draws its own anatomy *and* its
own lesion appearance (polarity, contrast, texture, rim, size, count), and the background
holds lesion-like spots and vessels, so a model fit to a handful of scans meets a real shift
on the next ones and no global threshold solves the task.

Only ``numpy.random.default_rng(seed)`` is used, so a seed always yields the same scan.
"""

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

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


def _smooth_field(
    rng: np.random.Generator, shape: tuple[int, ...], spacing: np.ndarray, sigma_mm: float
) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length in mm.

    Large sigmas are filtered on a coarse grid and linearly upsampled: filtering full-size
    noise with a 20 mm kernel at 0.8 mm voxels would dominate the generation time.
    """
    full = np.asarray(shape)
    sig = sigma_mm / spacing
    step = np.maximum(1, np.floor(sig / 3)).astype(int)
    coarse = -(-full // step) + (step > 1)
    noise = rng.standard_normal(tuple(coarse), dtype=np.float32)
    field = ndi.gaussian_filter(noise, sig / step, mode="wrap", truncate=3.0)
    if (step > 1).any():
        field = ndi.zoom(field, full / coarse, order=1)[: full[0], : full[1], : full[2]]
    field -= field.mean()
    return field / max(float(field.std()), 1e-6)


def _body(rng: np.random.Generator, shape: tuple[int, int, int], sp: np.ndarray) -> np.ndarray:
    """Normalised radius of a smoothly deformed ellipsoid: < 1 inside the body."""
    semi = np.array([0.6, rng.uniform(0.38, 0.45), rng.uniform(0.34, 0.44)]) * np.asarray(shape)
    axes = np.ogrid[tuple(slice(0, n) for n in shape)]
    r2 = sum(((a - (n - 1) / 2) / s) ** 2 for a, n, s in zip(axes, shape, semi, strict=True))
    return np.sqrt(r2).astype(np.float32) * (1 + 0.06 * _smooth_field(rng, shape, sp, 25.0))


def _tissue(rng: np.random.Generator, radius: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Noise-free intensities: skin, skull, tissue classes, lesion-like spots and vessels."""
    shape = radius.shape
    inner = radius < 0.87
    # Multi-scale field thresholded at random quantiles: contiguous bins give nested,
    # anatomy-like layers (a CSF-like class next to GM-like next to WM-like, say).
    field = 0.6 * _smooth_field(rng, shape, sp, 12.0) + 0.35 * _smooth_field(rng, shape, sp, 5.0)
    field += 0.12 * _smooth_field(rng, shape, sp, 2.0)
    k = int(rng.integers(3, 5))
    cuts = np.quantile(field[inner], np.cumsum(rng.dirichlet(np.full(k, 3.0)))[:-1])
    palette = np.array([180.0, 420.0, 620.0, 820.0]) * rng.uniform(0.88, 1.12, 4)
    means = np.sort(rng.choice(palette, k, replace=False))[:: rng.choice([-1, 1])]
    tissue = np.zeros(shape, np.float32)
    tissue[inner] = means[np.searchsorted(cuts, field[inner])]
    tissue[(radius >= 0.87) & (radius < 0.93)] = 110.0 * rng.uniform(0.8, 1.2)  # dark bone
    tissue[(radius >= 0.93) & (radius < 1.0)] = 850.0 * rng.uniform(0.9, 1.1)  # bright fat
    tissue *= 1 + 0.06 * _smooth_field(rng, shape, sp, 1.5)  # within-class texture

    # Distractors with lesion-like contrast, both polarities: without them the lesions
    # would be the only compact outliers and a threshold would segment them.
    idx = np.flatnonzero(inner)
    n_spots = min(idx.size, int(rng.poisson(5 * tissue.size / 1e5)) + 3)
    impulses = np.zeros(tissue.size, np.float32)
    signs = rng.choice([-1.0, 1.0], n_spots)
    impulses[rng.choice(idx, n_spots, replace=False)] = signs * rng.uniform(0.3, 0.8, n_spots)
    sig = rng.uniform(0.8, 2.0) / sp
    delta = np.zeros(tuple(2 * np.ceil(3 * sig).astype(int) + 1), np.float32)
    delta[tuple(n // 2 for n in delta.shape)] = 1.0
    peak = ndi.gaussian_filter(delta, sig, mode="constant").max()  # exact discrete peak
    spots = ndi.gaussian_filter(impulses.reshape(shape), sig, mode="constant") / peak
    # Two random fields are both near zero along curves: cheap tubular "vessels".
    w = rng.uniform(0.06, 0.12)
    tubes = (np.abs(_smooth_field(rng, shape, sp, 8.0)) < w) & inner
    tubes &= np.abs(_smooth_field(rng, shape, sp, 8.0)) < w
    vessels = ndi.gaussian_filter(tubes.astype(np.float32), 0.5 / sp) * rng.uniform(0.2, 0.7)
    tissue *= np.clip(1 + spots + vessels, 0.2, None)
    return ndi.gaussian_filter(tissue, 0.5 / sp)  # partial-volume blur of all edges


def _add_lesion(
    rng: np.random.Generator,
    tissue: np.ndarray,
    allowed: np.ndarray,
    sp: np.ndarray,
    n_vox: int,
    look: dict[str, float],
) -> np.ndarray | None:
    """Carve one irregular ellipsoid of exactly ``n_vox`` allowed voxels, paint it in place.

    Returns the lesion as a full-size boolean mask, or None if there is no room left.
    """
    r_mm = (3 * n_vox * sp.prod() / (4 * math.pi)) ** (1 / 3)
    ratios = np.exp(rng.normal(0, 0.3, 3))
    semi = r_mm * ratios / ratios.prod() ** (1 / 3)
    rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    full = np.asarray(tissue.shape)
    half = np.ceil(semi.max() * (1 + 2 * look["irregular"]) / sp).astype(int) + 1
    half = np.minimum(half, (full - 3) // 2)  # the box must fit inside the 1-voxel frame
    box = tuple(2 * half + 1)
    rel = (np.indices(box).reshape(3, -1).T - half) * sp  # voxel offsets in mm
    dist = np.sqrt((((rel @ rot) / semi) ** 2).sum(-1)).reshape(box)
    # Smoothly perturbed radius gives irregular, still compact boundaries.
    perturb = np.clip(_smooth_field(rng, box, sp, max(r_mm / 3, 0.8)), -2, 2)
    level = dist - look["irregular"] * perturb
    lo, hi = 1 + half, full - 2 - half  # centre range that keeps the box off the volume border
    cand = np.argwhere(allowed[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]) + lo
    if cand.size == 0:
        return None
    best, best_score = None, -1.0
    for _ in range(25):  # prefer a spot where the whole blob fits inside the allowed tissue
        c = cand[rng.integers(len(cand))]
        sl = tuple(slice(a - h, a + h + 1) for a, h in zip(c, half, strict=True))
        score = float(allowed[sl][level < 1.1].mean())
        if score > best_score:
            best, best_score = sl, score
        if score == 1.0:
            break
    lvl = np.where(allowed[best], level, np.inf).ravel()
    n_ok = int(np.isfinite(lvl).sum())
    if n_ok == 0:
        return None
    order, k = np.argsort(lvl), min(n_vox, n_ok)
    for _ in range(8):  # the k lowest levels give the volume; islands are dropped and regrown
        mask = np.zeros(box, bool)
        mask.flat[order[:k]] = True
        lab, n = ndi.label(mask)
        if n > 1:
            mask = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
        got = int(np.count_nonzero(mask))
        if got >= n_vox or k == n_ok:
            break
        k = min(n_ok, k + n_vox - got)
    allowed[best] &= ~ndi.binary_dilation(mask, iterations=2)  # keep later lesions apart

    # Appearance relative to the local tissue, so contrast means the same in dark and
    # bright classes; the soft alpha mimics partial volume at the lesion edge.
    region = tissue[best]
    surround = ndi.gaussian_filter(region, max(3.0, r_mm / 2) / sp, mode="nearest")
    tex = np.clip(_smooth_field(rng, box, sp, look["tex_mm"]), -2.5, 2.5)
    contrast = look["polarity"] * look["contrast"] * rng.uniform(0.85, 1.15)
    factor = 1 + contrast * (1 + look["hetero"] * tex)
    if look["rim"]:
        edge = ndi.distance_transform_edt(mask, sampling=sp) <= look["rim_mm"]
        rim = ndi.gaussian_filter((mask & edge).astype(np.float32), look["edge_mm"] / sp)
        factor = factor * (1 - rim) + (1 + look["rim_c"]) * rim
    alpha = ndi.gaussian_filter(mask.astype(np.float32), look["edge_mm"] / sp)
    # The brighter (hyper) or darker (hypo) of the tissue underneath and its neighbourhood: a
    # lesion in bright tissue next to dark tissue would otherwise sink to the blurred average
    # and vanish into the bright tissue (seen in seed 0 before this).
    base = np.maximum(region, surround) if look["polarity"] > 0 else np.minimum(region, surround)
    region[...] = region * (1 - alpha) + base * factor * alpha
    assert best is not None  # set by the placement loop above
    return np.pad(mask, [(s.start, n - s.stop) for s, n in zip(best, full, strict=True)])


def _look(rng: np.random.Generator, polarity: float | None = None) -> dict[str, float]:
    """A lesion appearance: polarity, contrast, texture, rim and edge sharpness."""
    drawn = float(rng.choice([-1.0, 1.0]))  # drawn even when given: the stream stays the same
    polarity = drawn if polarity is None else float(polarity)
    return {
        "polarity": polarity,
        "contrast": rng.uniform(0.25, 0.7) if polarity > 0 else rng.uniform(0.25, 0.55),
        "hetero": rng.uniform(0.02, 0.2),
        "tex_mm": rng.uniform(0.8, 3.0),
        "rim": float(rng.random() < 0.35),
        "rim_c": rng.uniform(0.3, 0.8),
        "rim_mm": rng.uniform(0.8, 2.0),
        "irregular": rng.uniform(0.08, 0.3),
        "edge_mm": rng.uniform(0.3, 0.8),
    }


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
    rng = np.random.default_rng(seed)
    sp = np.asarray(sp_t)
    if fg_fraction is None:
        fg_fraction = float(np.exp(rng.uniform(*np.log(_FG_RANGE))))

    # Appearance and lesion plan come first so that a seed keeps its look at any shape.
    # One appearance per scan: this between-scan shift is what few-case training overfits.
    look = _look(rng, polarity)
    n_fg = max(1, round(fg_fraction * math.prod(dims)))
    n_les = int(min(rng.integers(1, 6), max(1, n_fg // 8)))
    share = 0.15 / n_les + 0.85 * rng.dirichlet(np.full(n_les, 1.5))  # no vanishing lesion
    vols = np.maximum(1, np.round(share * n_fg)).astype(int).tolist()

    radius = _body(rng, dims, sp)
    tissue = _tissue(rng, radius, sp)
    # Lesions sit in the inner tissue, never on the volume border (a 1-voxel frame).
    frame = np.zeros(dims, bool)
    frame[1:-1, 1:-1, 1:-1] = True
    allowed = (radius < 0.84) & frame
    if not allowed.any():
        allowed = frame
    ground_truth = np.zeros(dims, np.uint8)
    deficit = 0
    for i in range(len(vols) + 3):  # what did not fit rolls over to the next lesion
        if i < len(vols):
            want = vols[i] + deficit
        elif deficit > 0.05 * n_fg:  # only a real shortfall justifies an extra lesion
            want = deficit
        else:
            break
        mask = _add_lesion(rng, tissue, allowed, sp, want, look) if want > 0 else None
        if mask is not None:
            ground_truth[mask] = 1
        deficit = want - (0 if mask is None else int(np.count_nonzero(mask)))

    # Multiplicative coil bias, then Rician magnitude noise (air becomes Rayleigh, as in MR).
    bias = np.exp(rng.uniform(0.05, 0.2) * _smooth_field(rng, dims, sp, 60.0))
    sigma = rng.uniform(0.015, 0.04) * 500.0
    real = tissue * bias + sigma * rng.standard_normal(dims, dtype=np.float32)
    imag = sigma * rng.standard_normal(dims, dtype=np.float32)
    image = np.sqrt(real * real + imag * imag).astype(np.float32)
    return SyntheticScan(image, ground_truth, sp_t, int(seed))


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
    rng = np.random.default_rng(seed)
    labels, n_les = ndi.label(fg)
    depth = fg.shape[0]
    flat = (np.arange(depth)[:, None, None] * (n_les + 1) + labels).ravel()
    area = np.bincount(flat, minlength=depth * (n_les + 1)).reshape(depth, n_les + 1)[:, 1:]
    score = area * rng.uniform(0.9, 1.0, area.shape)
    lesion_slices = np.flatnonzero(area.sum(1))
    target = min(n_slices, lesion_slices.size)
    # Lesions take turns, largest first, so picks cover different lesions before a second
    # slice of one; the seeded 10% jitter varies near-ties between annotation sessions.
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
    empty = np.flatnonzero(area.sum(1) == 0)
    picked = rng.choice(empty, min(n_empty, empty.size), replace=False).tolist()
    out = np.zeros(fg.shape, np.uint8)
    for s in chosen + picked:
        out[s] = fg[s].astype(np.uint8) + 1
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))
