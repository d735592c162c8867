"""The lesions of a synthetic scan: their appearance, shape, placement and painting.

Part of :mod:`napari_asymseg.samples.synthetic`; every function draws from the ``rng`` it is
given, in a fixed order, so a seed always yields the same scan.
"""

import math

import numpy as np
from scipy import ndimage as ndi

from napari_asymseg.samples.anatomy import smooth_field


def paint_lesions(
    rng: np.random.Generator,
    tissue: np.ndarray,
    radius: np.ndarray,
    sp: np.ndarray,
    vols: list[int],
    n_fg: int,
    look: dict[str, float],
) -> np.ndarray:
    """Paint lesions of volumes ``vols`` into ``tissue``; their mask (uint8, 1 = lesion)."""
    dims = tissue.shape
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
        mask = add_lesion(rng, tissue, allowed, sp, want, look) if want > 0 else None
        if mask is not None:
            ground_truth[mask] = 1
        deficit = want - (0 if mask is None else int(np.count_nonzero(mask)))
    return ground_truth


def add_lesion(
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
    r_mm, half, level = _lesion_level(rng, tissue.shape, sp, n_vox, look["irregular"])
    best = _place(rng, allowed, level, half)
    if best is None:
        return None
    mask = _grow(np.where(allowed[best], level, np.inf), n_vox)
    if mask is None:
        return None
    allowed[best] &= ~ndi.binary_dilation(mask, iterations=2)  # keep later lesions apart
    _paint(rng, tissue[best], mask, sp, r_mm, look)
    return np.pad(mask, [(s.start, n - s.stop) for s, n in zip(best, tissue.shape, strict=True)])


def _lesion_level(
    rng: np.random.Generator, shape: tuple[int, ...], sp: np.ndarray, n_vox: int, irregular: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """A randomly rotated, irregular ellipsoid of volume ``n_vox`` voxels in a box.

    Returns its radius in mm, the box's half size and a level map over the box: below 1
    inside the ellipsoid, perturbed by a smooth field so the boundary is irregular.
    """
    r_mm = (3 * n_vox * sp.prod() / (4 * math.pi)) ** (1 / 3)
    ratios = np.exp(rng.normal(0, 0.3, 3))
    semi = r_mm * ratios / ratios.prod() ** (1 / 3)
    rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    full = np.asarray(shape)
    half = np.ceil(semi.max() * (1 + 2 * irregular) / sp).astype(int) + 1
    half = np.minimum(half, (full - 3) // 2)  # the box must fit inside the 1-voxel frame
    box = tuple(2 * half + 1)
    rel = (np.indices(box).reshape(3, -1).T - half) * sp  # voxel offsets in mm
    dist = np.sqrt((((rel @ rot) / semi) ** 2).sum(-1)).reshape(box)
    # Smoothly perturbed radius gives irregular, still compact boundaries.
    perturb = np.clip(smooth_field(rng, box, sp, max(r_mm / 3, 0.8)), -2, 2)
    return r_mm, half, dist - irregular * perturb


def _place(
    rng: np.random.Generator, allowed: np.ndarray, level: np.ndarray, half: np.ndarray
) -> tuple[slice, ...] | None:
    """The box (as slices) where the lesion goes, or None if no allowed centre is left."""
    full = np.asarray(allowed.shape)
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
    assert best is not None  # the centre voxel is always below 1.1, so a score is >= 0
    return best


def _grow(level: np.ndarray, n_vox: int) -> np.ndarray | None:
    """The ``n_vox`` voxels of lowest finite ``level`` as one connected mask (None if none)."""
    box = level.shape
    lvl = level.ravel()
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
    return mask


def _paint(
    rng: np.random.Generator,
    region: np.ndarray,
    mask: np.ndarray,
    sp: np.ndarray,
    r_mm: float,
    look: dict[str, float],
) -> None:
    """Paint the lesion ``mask`` into ``region`` (a view of the tissue) in place.

    Appearance is relative to the local tissue, so contrast means the same in dark and bright
    classes; the soft alpha mimics partial volume at the lesion edge.
    """
    surround = ndi.gaussian_filter(region, max(3.0, r_mm / 2) / sp, mode="nearest")
    tex = np.clip(smooth_field(rng, mask.shape, sp, look["tex_mm"]), -2.5, 2.5)
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


def draw_look(rng: np.random.Generator, polarity: float | None = None) -> dict[str, float]:
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
