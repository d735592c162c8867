"""Fill between painted slices: known shapes, the pairing rules, paint that wins, other axes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_asymseg.annotate.interpolate import Fill, fill_between, painting_axis, write_fill
from napari_asymseg.annotate.shapes import blend_sdf
from napari_asymseg.errors import ScanError
from napari_asymseg.store.provenance import FILLED, read_provenance
from napari_asymseg.store.scan import Scan

SHAPE = (24, 64, 64)


def grid(shape=SHAPE, spacing=(1.0, 1.0, 1.0)):
    zz, yy, xx = np.indices(shape).astype(float)
    return zz * spacing[0], yy * spacing[1], xx * spacing[2]


def ball(centre, radius, shape=SHAPE, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A sphere (mm) on the grid."""
    zz, yy, xx = grid(shape, spacing)
    cz, cy, cx = centre
    return (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def painted(truth: np.ndarray, slices, axis: int = 0) -> np.ndarray:
    """Annotation codes: the slices (planes of ``axis``) painted whole, truth k as code k + 1."""
    ann = np.zeros(truth.shape, np.uint8)
    for i in slices:
        index = [slice(None)] * 3
        index[axis] = i
        ann[tuple(index)] = truth[tuple(index)].astype(np.uint8) + 1
    return ann


def dsc(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_a_sphere_painted_on_two_slices_is_filled_between():
    truth = ball((12, 32, 32), 10)
    fill = fill_between(painted(truth, [10, 14]))
    assert fill.axis == 0 and set(fill.filled) == {1}
    assert sorted(fill.filled[1]) == [11, 12, 13]
    for z in (11, 12, 13):
        assert dsc(fill.codes[z] == 2, truth[z]) >= 0.9
    assert fill.voxels == np.count_nonzero(fill.codes)


def test_an_ellipsoid_on_anisotropic_voxels():
    spacing = (3.0, 0.7, 0.7)
    zz, yy, xx = grid((16, 80, 80), spacing)
    truth = (zz - 22) ** 2 / 15**2 + (yy - 28) ** 2 / 12**2 + (xx - 28) ** 2 / 8**2 <= 1
    fill = fill_between(painted(truth, [5, 9]), spacing)
    for z in (6, 7, 8):
        assert dsc(fill.codes[z] == 2, truth[z]) >= 0.8


def test_a_cone_grows_linearly():
    zz, yy, xx = grid()
    truth = np.hypot(yy - 32, xx - 32) <= 1.5 * (zz - 2)
    fill = fill_between(painted(truth, [4, 20]))
    between = slice(5, 20)
    assert dsc(fill.codes[between] == 2, truth[between]) >= 0.95


def test_blending_a_shape_with_itself_gives_it_back():
    shape = ball((0, 20, 20), 9, shape=(1, 40, 40))[0]
    for step in blend_sdf(shape, shape, 3, (0.8, 0.8)):
        np.testing.assert_array_equal(step, shape)


def test_two_lesions_on_a_slice_are_filled_each():
    one, two = ball((12, 16, 16), 7), ball((12, 46, 44), 9)
    fill = fill_between(painted(one | two, [10, 14]))
    for z in (11, 12, 13):
        assert dsc(fill.codes[z] == 2, (one | two)[z]) >= 0.9
    assert not fill.skipped


def test_a_lesion_that_splits_is_filled_as_one():
    zz, yy, xx = grid()
    left = np.hypot(yy - 32, xx - 32 + 1.2 * zz) <= 8
    right = np.hypot(yy - 32, xx - 32 - 1.2 * zz) <= 8
    truth = left | right
    fill = fill_between(painted(truth, [2, 14]))
    assert not fill.skipped
    assert dsc(fill.codes[3:14] == 2, truth[3:14]) >= 0.65


def test_an_oblique_lesion_whose_ends_do_not_overlap_is_followed():
    zz, yy, xx = grid()
    tube = np.hypot(yy - 12 - 2 * zz, xx - 32) <= 7  # moves 16 voxels between slices 4 and 12
    ann = painted(tube, [4, 12])
    assert not ((ann[4] == 2) & (ann[12] == 2)).any()
    fill = fill_between(ann)
    assert not fill.skipped
    assert dsc(fill.codes[5:12] == 2, tube[5:12]) >= 0.9


def test_lesions_far_apart_are_left_out_with_a_reason():
    """A lesion that ends and another that begins between the slices are two lesions: the
    rule pairs lesions that do not overlap only where they nearly touch."""
    ann = painted(ball((6, 14, 14), 3) | ball((10, 50, 50), 3), [6, 10])
    fill = fill_between(ann)
    assert fill.voxels == 0 and not fill.codes.any()
    assert len(fill.skipped) == 2
    for skipped in fill.skipped:
        assert "none overlapping or near it" in skipped.reason
        assert "\n" not in skipped.reason and (skipped.first, skipped.last) == (6, 10)
    lines = fill.lines(["lesion"])
    assert any("slice 6 (z 6, y 14, x 14)" in line for line in lines)


def test_a_painted_lesion_free_slice_between_ends_the_lesion():
    """Lesion on 4 and 8 with slice 6 painted background: not bridged; 8 to 12 is filled."""
    zz, yy, xx = grid()
    column = np.hypot(yy - 32, xx - 32) <= 8
    truth = column & ((zz <= 5) | (zz >= 7))
    ann = painted(truth, [4, 6, 8, 12])
    fill = fill_between(ann)
    assert not fill.codes[5].any() and not fill.codes[7].any()
    assert sorted(fill.filled[1]) == [9, 10, 11]
    (skipped,) = fill.skipped
    assert (skipped.first, skipped.last) == (4, 8)
    assert "slice 6 is painted without this class" in skipped.reason


def test_a_background_stroke_beside_the_lesion_does_not_end_it():
    truth = ball((12, 32, 32), 10)
    ann = painted(truth, [10, 14])
    ann[12, 28:36, 36:44] = 1  # a stroke over part of the lesion on the middle slice
    fill = fill_between(ann)
    assert fill.filled[1].keys() == {11, 12, 13}
    assert not fill.codes[12, 28:36, 36:44].any()  # paint wins


def test_paint_is_never_overwritten_and_nothing_beyond_the_outer_slices():
    ann = painted(ball((12, 32, 32), 10), [8, 16])
    ann[12, 30:34, 30:34] = 1  # background and another class painted inside the shape
    ann[11, 28:32, 34:38] = 3
    fill = fill_between(ann)
    assert not fill.codes[ann != 0].any()
    assert not fill.codes[:9].any() and not fill.codes[16:].any()
    assert sorted(fill.filled[1]) == list(range(9, 16))


def test_classes_are_filled_apart():
    truth = ball((12, 18, 18), 8).astype(np.uint8) + 2 * ball((12, 44, 44), 8)
    fill = fill_between(painted(truth, [10, 14]))
    assert set(fill.filled) == {1, 2}
    assert dsc(fill.codes[11:14] == 2, truth[11:14] == 1) >= 0.9
    assert dsc(fill.codes[11:14] == 3, truth[11:14] == 2) >= 0.9
    only = fill_between(painted(truth, [10, 14]), classes=[2])
    assert set(only.filled) == {2} and not (only.codes == 2).any()


def test_voxels_two_classes_would_fill_are_left_out():
    """Strokes only: class 1 on slices 10 and 14, class 2 on 9 and 15 overlapping it."""
    one = ball((0, 32, 26), 8, shape=(1, 64, 64))[0]
    two = ball((0, 32, 38), 8, shape=(1, 64, 64))[0]
    ann = np.zeros(SHAPE, np.uint8)
    ann[[10, 14]] = np.where(one, 2, 0)
    ann[[9, 15]] = np.where(two, 3, 0)
    fill = fill_between(ann)
    for z in (11, 12, 13):
        assert not fill.codes[z][one & two].any()
        assert (fill.codes[z][one & ~two] == 2).all() and (fill.codes[z][two & ~one] == 3).all()
    assert (fill.codes[10][two & ~one] == 3).all() and not fill.codes[10][one].any()


@pytest.mark.parametrize("slices", [[10], [10, 11], []])
def test_nothing_to_fill_is_one_line(slices):
    ann = painted(ball((12, 32, 32), 10), slices)
    with pytest.raises(ScanError, match="paint the lesion on two slices with unpainted"):
        fill_between(ann)


def test_lesions_painted_on_y_planes_are_filled_along_y():
    truth = ball((12, 32, 32), 10)
    ann = painted(truth, [29, 35], axis=1)
    assert painting_axis(ann != 0) == 1
    fill = fill_between(ann, (2.0, 1.0, 1.0))
    assert fill.axis == 1 and sorted(fill.filled[1]) == [30, 31, 32, 33, 34]
    for y in (30, 32, 34):
        assert dsc(fill.codes[:, y] == 2, truth[:, y]) >= 0.9
    assert fill.lines(["lesion"])[0].startswith(f"lesion: {fill.voxels} voxels on 5 Y planes: 30: ")


def test_strokes_without_background_are_filled_along_the_fewest_planes():
    truth = ball((12, 32, 32), 10)
    ann = np.zeros(SHAPE, np.uint8)
    ann[[10, 14]] = np.where(truth[[10, 14]], 2, 0)  # the lesion only, no background
    fill = fill_between(ann)
    assert fill.axis == 0 and sorted(fill.filled[1]) == [11, 12, 13]


def test_whole_planes_of_two_axes_are_refused():
    ann = painted(ball((12, 32, 32), 10), [10, 14])
    ann[:, 5, :] = 1
    with pytest.raises(ScanError, match="whole planes of two axes \\(Z and Y\\)"):
        fill_between(ann)


def test_not_3d_is_refused():
    with pytest.raises(ScanError, match="3D"):
        fill_between(np.zeros((4, 4), np.uint8))


def test_report_names_classes_slices_and_voxels():
    fill = fill_between(painted(ball((12, 32, 32), 10), [10, 14]))
    (line,) = fill.lines(["tumour"])
    n = fill.filled[1]
    assert line == (
        f"tumour: {fill.voxels} voxels on 3 slices: 11: {n[11]}, 12: {n[12]}, 13: {n[13]}"
    )


def test_write_fill_writes_only_unannotated_voxels_as_filled(tmp_path):
    truth = ball((12, 32, 32), 10)
    ann = painted(truth, [10, 14])
    scan = Scan.create(tmp_path / "s.zarr", np.zeros(SHAPE, np.float32), annotations=ann)
    fill = fill_between(scan.read_annotations(), scan.spacing)
    late = np.zeros(SHAPE, np.uint8)
    late[12, 30:34, 30:34] = 1  # painted after the proposal: it wins
    scan.write_annotations(late[12:13] + ann[12:13], region=(slice(12, 13),))
    written = write_fill(scan, fill)
    after = Scan.open(scan.path).read_annotations()
    assert written == fill.voxels - 16
    assert (after[12, 30:34, 30:34] == 1).all()
    np.testing.assert_array_equal(after[[10, 14]], ann[[10, 14]])
    source = read_provenance(scan.group)
    assert (source[(after == 2) & (ann == 0)] == FILLED).all()
    assert (source[ann != 0] == 0).all() and (source[12, 30:34, 30:34] == 0).all()


def test_write_fill_refuses_another_grid(tmp_path):
    scan = Scan.create(tmp_path / "s.zarr", np.zeros((4, 8, 8), np.float32))
    fill = Fill(np.zeros((5, 8, 8), np.uint8), 0, {}, ())
    with pytest.raises(ScanError, match="shape"):
        write_fill(scan, fill)
