"""Grow from a click: a blob grown from one click, "not this" clicks, paint that wins, the
crop enlarged for a large lesion, the model's probability, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from napari_asymseg.annotate.grow import Click, grow, write_grown
from napari_asymseg.errors import ScanError
from napari_asymseg.store.provenance import GROWN, PAINTED, read_provenance
from napari_asymseg.store.scan import Scan

SHAPE = (24, 64, 64)


def ball(centre, radius, shape=SHAPE, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    zz, yy, xx = np.indices(shape).astype(float)
    cz, cy, cx = centre
    d = ((zz - cz) * spacing[0]) ** 2 + ((yy - cy) * spacing[1]) ** 2
    return d + ((xx - cx) * spacing[2]) ** 2 <= radius**2


def image(lesions, shape=SHAPE, noise=10.0, seed=0) -> np.ndarray:
    """Tissue at 100, lesions at 160, Gaussian noise (CT-like: contrast 6 noise sds)."""
    img = np.full(shape, 100.0) + np.random.default_rng(seed).normal(0, noise, shape)
    for lesion in lesions:
        img[lesion] += 60
    return img.astype(np.float32)


def full(grown, shape=SHAPE) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[grown.box] = grown.mask
    return out


def dsc(a, b) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_a_click_inside_a_blob_grows_most_of_it_and_not_the_tissue_around():
    blob = ball((12, 32, 32), 7)
    grown = grow(image([blob]), np.zeros(SHAPE, np.uint8), [Click(12, 32, 32)], 2)
    got = full(grown)
    assert dsc(got, blob) > 0.9
    assert np.count_nonzero(got & ~blob) < 0.1 * blob.sum()
    assert grown.code == 2 and grown.voxels == np.count_nonzero(got)


def test_two_touching_blobs_a_not_this_click_removes_one():
    """Two overlapping blobs: one click grows both; a "not this" click on the second keeps
    the first."""
    first, second = ball((12, 32, 26), 6), ball((12, 32, 36), 6)
    img = image([first | second])
    ann = np.zeros(SHAPE, np.uint8)
    both = full(grow(img, ann, [Click(12, 32, 23)], 2))
    assert np.count_nonzero(both & second) > 0.8 * second.sum()
    one = full(grow(img, ann, [Click(12, 32, 23), Click(12, 32, 39, inside=False)], 2))
    assert np.count_nonzero(one & first) > 0.8 * first.sum()
    assert np.count_nonzero(one & second) < 0.2 * second.sum()


def test_painted_voxels_are_seeds_and_never_changed(tmp_path):
    blob = ball((12, 32, 32), 7)
    img = image([blob])
    ann = np.zeros(SHAPE, np.uint8)
    ann[12] = np.where(blob[12], 2, 1)  # one slice painted: the lesion, the rest background
    ann[12, 32, 36] = 1  # a voxel of the lesion painted background: paint wins
    grown = grow(img, ann, [Click(14, 32, 32)], 2)
    codes = grown.codes(ann)
    assert not codes[ann[grown.box] != 0].any()  # only unannotated voxels are proposed
    scan = Scan.create(tmp_path / "s.zarr", img, annotations=ann, classes=("lesion",))
    written = write_grown(scan, grown)
    after = scan.read_annotations()
    assert np.array_equal(after[ann != 0], ann[ann != 0])
    assert written == np.count_nonzero(after != ann) == np.count_nonzero(codes)
    source = read_provenance(scan.group)
    assert (source[after != ann] == GROWN).all() and (source[ann != 0] == PAINTED).all()
    assert dsc(after == 2, blob) > 0.9


def test_paint_made_after_the_proposal_wins(tmp_path):
    blob = ball((12, 32, 32), 7)
    scan = Scan.create(tmp_path / "s.zarr", image([blob]), classes=("lesion",))
    grown = grow(scan.image, scan.annotations, [Click(12, 32, 32)], 2)
    painted = np.zeros(SHAPE, np.uint8)
    painted[10] = 1  # the user paints slice 10 background meanwhile
    scan.write_annotations(painted)
    write_grown(scan, grown)
    assert (scan.read_annotations()[10] == 1).all()


def test_a_lesion_larger_than_the_crop_enlarges_it():
    """A 30 mm-radius lesion: the first crop (20 mm each way) lies inside it."""
    shape = (40, 120, 120)
    blob = ball((20, 60, 60), 30, shape=shape, spacing=(2.0, 1.0, 1.0))
    img = image([blob], shape=shape)
    grown = grow(img, np.zeros(shape, np.uint8), [Click(20, 60, 60)], 2, (2.0, 1.0, 1.0))
    assert dsc(full(grown, shape), blob) > 0.9


def test_the_models_probability_adds_an_edge_the_image_lacks():
    """A lesion invisible in the image: the probability's edge bounds it."""
    blob = ball((12, 32, 32), 7)
    img = image([], noise=1.0)
    prob = np.where(blob, 0.9, 0.05).astype(np.float16)
    grown = grow(img, np.zeros(SHAPE, np.uint8), [Click(12, 32, 32)], 2, probability=prob)
    assert dsc(full(grown), blob) > 0.9


def test_a_zarr_image_is_read_only_in_the_crop(tmp_path):
    blob = ball((12, 32, 32), 7)
    scan = Scan.create(tmp_path / "s.zarr", image([blob]), classes=("lesion",))
    grown = grow(scan.image, scan.annotations, [Click(12, 32, 32)], 2, scan.spacing)
    assert dsc(full(grown), blob) > 0.9 and grown.per_slice(scan.annotations)


@pytest.mark.parametrize(
    ("clicks", "code", "words"),
    [
        ([Click(12, 32, 64)], 2, "is outside the scan"),
        ([Click(-1, 32, 32)], 2, "is outside the scan"),
        ([Click(12, 32, 32, inside=False)], 2, "add a click inside the lesion"),
        ([], 2, "add a click inside the lesion"),
        ([Click(12, 32, 32)], 1, "give a class's code"),
    ],
)
def test_bad_input_raises_one_line_naming_the_fix(clicks, code, words):
    img = image([ball((12, 32, 32), 7)])
    with pytest.raises(ScanError, match=words) as err:
        grow(img, np.zeros(SHAPE, np.uint8), clicks, code)
    assert "\n" not in str(err.value) and ": " in str(err.value)


def test_a_proposal_already_painted_is_nothing_to_grow():
    blob = ball((12, 32, 32), 7)
    ann = np.where(blob, 2, 1).astype(np.uint8)  # every voxel painted
    with pytest.raises(ScanError, match="nothing to grow"):
        grow(image([blob]), ann, [Click(12, 32, 32)], 2)


def test_arrays_of_other_shapes_are_refused():
    with pytest.raises(ScanError, match="give the annotations of this scan"):
        grow(np.zeros(SHAPE), np.zeros((2, 2, 2), np.uint8), [Click(1, 1, 1)], 2)


def test_a_click_near_the_lesions_edge_seeds_only_the_lesion():
    """The click's 3 mm ball reaches past the lesion's edge: only its voxels that look like
    the clicked one seed the lesion, so the tissue beyond is not grown."""
    blob = ball((12, 32, 32), 6)
    grown = grow(image([blob]), np.zeros(SHAPE, np.uint8), [Click(12, 32, 37)], 2)
    got = full(grown)
    assert dsc(got, blob) > 0.9
    assert np.count_nonzero(got & ~blob) < 0.02 * blob.sum()
