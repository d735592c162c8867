"""Tests for the synthetic scan generator.

The generator exists to reproduce few-case overfitting on rare lesions, so besides the
contract (types, determinism, validation) these tests check the properties that make the
benchmark meaningful: foreground stays rare, lesion appearance shifts between scans, and
no intensity window alone segments the lesions.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_asymseg.samples.synthetic import SyntheticScan, sparse_annotations, synthetic_scan

SMALL = (24, 64, 64)  # keeps the suite fast; lesion sizes scale with the volume
SEEDS = range(10)


@pytest.fixture(scope="module")
def small_scans() -> list[SyntheticScan]:
    return [synthetic_scan(seed, SMALL) for seed in SEEDS]


def _contrast(scan: SyntheticScan) -> float:
    """Mean lesion intensity relative to a 2-voxel ring of surrounding tissue."""
    gt = scan.ground_truth.astype(bool)
    ring = ndi.binary_dilation(gt, iterations=2) & ~gt
    return float(scan.image[gt].mean() / scan.image[ring].mean() - 1)


def test_same_seed_gives_identical_scan() -> None:
    a, b = synthetic_scan(3, SMALL), synthetic_scan(3, SMALL)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
    assert (a.spacing, a.seed) == (b.spacing, b.seed)


def test_different_seeds_give_different_scans(small_scans: list[SyntheticScan]) -> None:
    for i, a in enumerate(small_scans):
        for b in small_scans[i + 1 :]:
            assert not np.array_equal(a.image, b.image)
            assert not np.array_equal(a.ground_truth, b.ground_truth)


def test_global_numpy_rng_is_untouched() -> None:
    # The legacy global state is read on purpose: drawing from it would break determinism.
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    synthetic_scan(0, SMALL)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


def test_arrays_shape_dtype_and_spacing() -> None:
    scan = synthetic_scan(5, (20, 48, 56), spacing=(2.5, 0.9, 0.7))
    assert scan.image.shape == scan.ground_truth.shape == (20, 48, 56)
    assert scan.image.dtype == np.float32 and scan.ground_truth.dtype == np.uint8
    assert np.isfinite(scan.image).all() and scan.image.min() >= 0
    assert set(np.unique(scan.ground_truth)) == {0, 1}
    assert scan.spacing == (2.5, 0.9, 0.7) and all(isinstance(s, float) for s in scan.spacing)
    assert scan.seed == 5
    # MR-like range: dark air around the body, tissue in the hundreds.
    assert np.percentile(scan.image, 5) < 50
    tissue = scan.image[(scan.ground_truth == 0) & (scan.image > 60)]
    assert 100 < np.median(tissue) < 1000


def test_default_shape_and_spacing() -> None:
    scan = synthetic_scan(0)
    assert scan.image.shape == (40, 112, 112) and scan.spacing == (2.0, 0.8, 0.8)


def test_default_fg_fraction_is_rare_and_varies(small_scans: list[SyntheticScan]) -> None:
    fractions = np.array([s.fg_fraction for s in small_scans])
    assert ((fractions >= 0.002) & (fractions <= 0.02)).all(), fractions
    assert fractions.max() / fractions.min() > 2  # drawn, not constant
    for scan in small_scans:
        assert scan.fg_fraction == np.count_nonzero(scan.ground_truth) / scan.ground_truth.size


@pytest.mark.parametrize("target", [0.002, 0.006, 0.02])
def test_requested_fg_fraction_is_hit(target: float) -> None:
    for seed in range(3):
        got = synthetic_scan(seed, SMALL, fg_fraction=target).fg_fraction
        assert abs(got / target - 1) <= 0.25, (seed, got)


def test_lesions_are_inside_the_body_and_off_the_border(
    small_scans: list[SyntheticScan],
) -> None:
    for scan in small_scans:
        gt = scan.ground_truth
        for axis in range(3):
            assert not gt.take([0, -1], axis=axis).any()
        # Lesion voxels sit in tissue, not in air (air is Rician noise near 0).
        assert np.median(scan.image[gt == 1]) > 60


def test_lesion_count_in_range_and_varies(small_scans: list[SyntheticScan]) -> None:
    counts = [ndi.label(s.ground_truth)[1] for s in small_scans]
    assert all(1 <= c <= 5 for c in counts), counts
    assert len(set(counts)) >= 3, counts


def test_lesion_appearance_shifts_between_scans(small_scans: list[SyntheticScan]) -> None:
    contrast = np.array([_contrast(s) for s in small_scans])
    assert (contrast > 0.1).any() and (contrast < -0.1).any(), contrast  # hyper and hypo
    assert np.ptp(np.abs(contrast)) > 0.15, contrast  # magnitude varies too
    assert (np.abs(contrast) > 0.05).all(), contrast  # but lesions stay distinguishable


def test_polarity_fixes_bright_or_dark_and_nothing_else() -> None:
    """Given a polarity, lesions are all bright (or dark); the rest of each scan's look and
    its lesion plan stay as drawn, and a scan already of that polarity is unchanged."""
    own = [synthetic_scan(s, shape=SMALL) for s in range(6)]
    for want in (1, -1):
        fixed = [synthetic_scan(s, shape=SMALL, polarity=want) for s in range(6)]
        assert all(np.sign(_contrast(f)) == want for f in fixed)
        for a, b in zip(own, fixed, strict=True):
            np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
            if np.sign(_contrast(a)) == want:
                np.testing.assert_array_equal(a.image, b.image)
    assert len({np.sign(_contrast(s)) for s in own}) == 2  # drawn, they differ


def test_no_intensity_window_segments_the_lesions(small_scans: list[SyntheticScan]) -> None:
    # Lesion-like spots, vessels and bright/dark tissue classes must defeat thresholding.
    best = []
    for scan in small_scans:
        gt, im = scan.ground_truth.astype(bool), scan.image
        lows = np.percentile(im[gt], [0, 5, 10, 20, 30, 50])
        highs = np.percentile(im[gt], [50, 70, 80, 90, 95, 100])
        dice = 0.0
        for lo in lows:
            for hi in highs:
                pred = (im >= lo) & (im <= hi) & (im > 60)
                dice = max(dice, 2 * (pred & gt).sum() / (pred.sum() + gt.sum()))
        best.append(dice)
    assert np.median(best) < 0.4, best


def test_anisotropic_spacing_is_respected() -> None:
    iso = synthetic_scan(2, (32, 32, 32), spacing=(1.0, 1.0, 1.0), fg_fraction=0.01)
    aniso = synthetic_scan(2, (16, 32, 32), spacing=(2.0, 1.0, 1.0), fg_fraction=0.01)
    assert aniso.spacing == (2.0, 1.0, 1.0)
    # Same physical lesion volume fraction; extent along z in mm stays comparable, so the
    # lesion spans about half as many slices when slices are twice as thick.
    z_iso = np.flatnonzero(iso.ground_truth.any((1, 2))).size
    z_aniso = np.flatnonzero(aniso.ground_truth.any((1, 2))).size
    assert z_aniso < z_iso


def test_tiny_volume_still_has_a_lesion() -> None:
    scan = synthetic_scan(0, (3, 8, 8))
    assert scan.ground_truth.any() and np.isfinite(scan.image).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (10, 10)},
        {"shape": (0, 32, 32)},
        {"shape": (2, 32, 32)},
        {"shape": (-8, 32, 32)},
        {"shape": (8.5, 32, 32)},
        {"shape": (True, 32, 32)},
        {"shape": "abc"},
        {"shape": 32},
        {"spacing": (1.0, 1.0)},
        {"spacing": (0.0, 1.0, 1.0)},
        {"spacing": (-1.0, 1.0, 1.0)},
        {"spacing": (float("nan"), 1.0, 1.0)},
        {"spacing": (float("inf"), 1.0, 1.0)},
        {"spacing": ("a", 1.0, 1.0)},
        {"fg_fraction": 0.0},
        {"fg_fraction": -0.01},
        {"fg_fraction": 0.5},
        {"seed": -1},
        {"seed": 1.5},
        {"polarity": 0},
        {"polarity": 2},
        {"polarity": True},
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict) -> None:
    args = {"seed": 0, "shape": SMALL, **kwargs}
    with pytest.raises(ValueError) as info:
        synthetic_scan(**args)
    assert "\n" not in str(info.value)


# --- sparse_annotations -------------------------------------------------------------------


def _annotated(ann: np.ndarray, axis: int = 0) -> np.ndarray:
    return np.flatnonzero(np.moveaxis(ann, axis, 0).any((1, 2)))


def test_sparse_annotations_labels(small_scans: list[SyntheticScan]) -> None:
    for scan in small_scans[:5]:
        gt = scan.ground_truth
        ann = sparse_annotations(gt, 4, seed=1, n_empty=1)
        assert ann.shape == gt.shape and ann.dtype == np.uint8
        assert set(np.unique(ann)) <= {0, 1, 2}
        done = _annotated(ann)
        for z in done:
            np.testing.assert_array_equal(ann[z], gt[z] + 1)
        has_lesion = gt[done].any((1, 2))
        n_lesion_slices = np.count_nonzero(gt.any((1, 2)))
        assert has_lesion.sum() == min(4, n_lesion_slices)
        assert (~has_lesion).sum() == 1  # the requested empty slice
        assert not ann[np.setdiff1d(np.arange(gt.shape[0]), done)].any()


def test_sparse_annotations_deterministic(small_scans: list[SyntheticScan]) -> None:
    gt = small_scans[0].ground_truth
    np.testing.assert_array_equal(sparse_annotations(gt, seed=7), sparse_annotations(gt, seed=7))


def _two_lesions() -> np.ndarray:
    gt = np.zeros((20, 16, 16), np.uint8)
    gt[2:9, 2:10, 2:10] = 1  # big lesion over 7 slices
    gt[14:16, 11:13, 11:13] = 1  # small lesion over 2 slices
    return gt


def test_sparse_annotations_cover_different_lesions() -> None:
    gt = _two_lesions()
    for seed in range(5):
        done = _annotated(sparse_annotations(gt, 2, seed=seed, n_empty=0))
        assert len(done) == 2
        assert any(2 <= z < 9 for z in done) and any(14 <= z < 16 for z in done), done
        # A third slice goes to the big lesion but not right next to the first pick.
        done = _annotated(sparse_annotations(gt, 3, seed=seed, n_empty=0))
        big = sorted(z for z in done if z < 9)
        assert len(big) == 2 and big[1] - big[0] >= 2, done


def test_sparse_annotations_prefer_slice_with_most_lesion() -> None:
    gt = np.zeros((9, 20, 20), np.uint8)
    for z, half in zip(range(2, 7), [1, 3, 6, 3, 1], strict=True):
        gt[z, 10 - half : 10 + half, 10 - half : 10 + half] = 1
    for seed in range(5):
        ann = sparse_annotations(gt, 1, seed=seed, n_empty=0)
        assert _annotated(ann).tolist() == [4]


def test_sparse_annotations_all_lesion_slices_when_few() -> None:
    gt = _two_lesions()
    ann = sparse_annotations(gt, 50, seed=0, n_empty=2)
    done = _annotated(ann)
    lesion_slices = np.flatnonzero(gt.any((1, 2)))
    assert set(lesion_slices) <= set(done)
    assert len(done) == len(lesion_slices) + 2


def test_sparse_annotations_along_other_axis() -> None:
    gt = _two_lesions()
    ann = sparse_annotations(gt, 3, seed=0, n_empty=1, axis=2)
    done = _annotated(ann, axis=2)
    assert len(done) == 4
    for x in done:
        np.testing.assert_array_equal(ann[:, :, x], gt[:, :, x] + 1)


@pytest.mark.parametrize(
    ("gt", "kwargs"),
    [
        (np.ones((8, 8), np.uint8), {}),
        (np.ones((2, 8, 8, 8), np.uint8), {}),
        (np.zeros((8, 8, 8), np.uint8), {}),
        (np.ones((8, 8, 8), np.uint8), {"n_slices": -1}),
        (np.ones((8, 8, 8), np.uint8), {"n_empty": -1}),
        (np.ones((8, 8, 8), np.uint8), {"axis": 3}),
    ],
)
def test_sparse_annotations_errors(gt: np.ndarray, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        sparse_annotations(gt, **kwargs)


@pytest.mark.timeout(120)  # a hang guard only; the checks below do not depend on the machine
def test_default_scan_is_cheap() -> None:
    """The generator is plain numpy/scipy, usable anywhere (benchmarks, docs, CI): in a fresh
    interpreter it imports no torch, MONAI, dask or Qt, and its peak memory stays a small
    multiple of the scan it returns (about 9x today), so no hidden full-volume float64 pass or
    oversized intermediate creeps in. Both are counted, not timed."""
    code = textwrap.dedent(
        """
        import json, sys, tracemalloc
        from napari_asymseg.samples.synthetic import synthetic_scan
        tracemalloc.start()
        scan = synthetic_scan(11)
        peak = tracemalloc.get_traced_memory()[1]
        heavy = [m for m in ('torch', 'monai', 'dask', 'napari', 'qtpy') if m in sys.modules]
        print(json.dumps([heavy, peak / scan.image.nbytes]))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    heavy, ratio = json.loads(result.stdout)
    assert not heavy, f"the generator pulled in {heavy}"
    assert ratio < 20, f"peak memory is {ratio:.1f}x the image"
