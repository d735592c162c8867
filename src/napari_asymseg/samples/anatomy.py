"""The anatomy of a synthetic scan: a deformed body, layered tissue, distractors, vessels.

Part of :mod:`napari_asymseg.samples.synthetic`; every function draws from the ``rng`` it is
given, in a fixed order, so a seed always yields the same scan.
"""

import numpy as np
from scipy import ndimage as ndi


def smooth_field(
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


def body_radius(
    rng: np.random.Generator, shape: tuple[int, int, int], sp: np.ndarray
) -> np.ndarray:
    """Normalised radius of a smoothly deformed ellipsoid: < 1 inside the body."""
    semi = np.array([0.6, rng.uniform(0.38, 0.45), rng.uniform(0.34, 0.44)]) * np.asarray(shape)
    axes = np.ogrid[tuple(slice(0, n) for n in shape)]
    r2 = sum(((a - (n - 1) / 2) / s) ** 2 for a, n, s in zip(axes, shape, semi, strict=True))
    return np.sqrt(r2).astype(np.float32) * (1 + 0.06 * smooth_field(rng, shape, sp, 25.0))


def tissue_intensities(rng: np.random.Generator, radius: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Noise-free intensities: skin, skull, tissue classes, lesion-like spots and vessels."""
    shape = radius.shape
    inner = radius < 0.87
    # Multi-scale field thresholded at random quantiles: contiguous bins give nested,
    # anatomy-like layers (a CSF-like class next to GM-like next to WM-like, say).
    field = 0.6 * smooth_field(rng, shape, sp, 12.0) + 0.35 * smooth_field(rng, shape, sp, 5.0)
    field += 0.12 * smooth_field(rng, shape, sp, 2.0)
    k = int(rng.integers(3, 5))
    cuts = np.quantile(field[inner], np.cumsum(rng.dirichlet(np.full(k, 3.0)))[:-1])
    palette = np.array([180.0, 420.0, 620.0, 820.0]) * rng.uniform(0.88, 1.12, 4)
    means = np.sort(rng.choice(palette, k, replace=False))[:: rng.choice([-1, 1])]
    tissue = np.zeros(shape, np.float32)
    tissue[inner] = means[np.searchsorted(cuts, field[inner])]
    tissue[(radius >= 0.87) & (radius < 0.93)] = 110.0 * rng.uniform(0.8, 1.2)  # dark bone
    tissue[(radius >= 0.93) & (radius < 1.0)] = 850.0 * rng.uniform(0.9, 1.1)  # bright fat
    tissue *= 1 + 0.06 * smooth_field(rng, shape, sp, 1.5)  # within-class texture

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
    tubes = (np.abs(smooth_field(rng, shape, sp, 8.0)) < w) & inner
    tubes &= np.abs(smooth_field(rng, shape, sp, 8.0)) < w
    vessels = ndi.gaussian_filter(tubes.astype(np.float32), 0.5 / sp) * rng.uniform(0.2, 0.7)
    tissue *= np.clip(1 + spots + vessels, 0.2, None)
    return ndi.gaussian_filter(tissue, 0.5 / sp)  # partial-volume blur of all edges
