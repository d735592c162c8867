"""The Annotate section's shape tools in a real napari.Viewer (under Xvfb): fill between
slices and grow from a click, previewed, accepted as one undoable step with their provenance,
or discarded."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils._test_utils import read_only_mouse_event
from napari.utils.interactions import (
    mouse_move_callbacks,
    mouse_press_callbacks,
    mouse_release_callbacks,
)

from dock_helpers import empty_dock
from napari_asymseg._qt.layers import layer_for
from napari_asymseg.samples.sample_data import sample_scan
from napari_asymseg.store import provenance
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED
from napari_asymseg.store.scan import Scan

pytestmark = pytest.mark.viewer


@pytest.fixture
def said(monkeypatch):
    """The notifications the tools show, as (kind, line)."""
    out: list[tuple[str, str]] = []
    for module in ("tools", "grow_clicks"):
        for kind in ("show_error", "show_info"):
            monkeypatch.setattr(
                f"napari_asymseg._qt.{module}.{kind}",
                lambda line, kind=kind: out.append((kind, line)),
            )
    return out


def open_dock(make_napari_viewer, qtbot, path):
    dock = empty_dock(make_napari_viewer)
    dock.open_scan(path)
    qtbot.waitUntil(lambda: layer_for(dock.viewer, dock.scan.path, "risk") is not None)
    return dock


@pytest.fixture
def dock(make_napari_viewer, qtbot, tmp_path):
    """The dock on the sample scan (painted on slices 11, 15, 18, 22 and 30)."""
    return open_dock(make_napari_viewer, qtbot, sample_scan(tmp_path))


def previews(viewer) -> list:
    return [
        lay for lay in viewer.layers if lay.metadata.get("asymseg", {}).get("role") == "preview"
    ]


def stored(dock) -> tuple[np.ndarray, np.ndarray]:
    """The scan's annotations and provenance on disk."""
    scan = Scan.open(dock.scan.path, mode="r")
    return scan.read_annotations(), provenance.read_provenance(scan.group)


def test_fill_preview_accept_is_one_undo_step_recorded_as_filled(dock, said):
    layer, tools = dock.annotations_layer, dock.annotate_section.tools
    before = np.array(layer.data, copy=True)
    proposed = tools.fill()
    assert proposed > 0
    (preview,) = previews(dock.viewer)
    assert preview.name == "fill preview"
    assert dock.viewer.layers.selection.active is layer  # its keys and Ctrl+Z stay
    np.testing.assert_array_equal(layer.data, before)  # a preview only
    text = tools.summary.text()
    assert text.startswith("lesion: 1096 voxels on 5 slices: 16: 262") and "Shift+A accept" in text
    assert "left out: " in text and "lesion, slices 15-18, 18-22, 22-30" in text
    assert "slices 22-30: not filled: the lesion at slice 22" in tools.summary.toolTip()

    assert tools.accept() == proposed
    assert not previews(dock.viewer)
    new = np.asarray(layer.data) != before
    assert new.sum() == proposed and (before[new] == NOT_ANNOTATED).all()
    annotations, sources = stored(dock)
    np.testing.assert_array_equal(annotations, layer.data)
    assert (sources[new] == provenance.FILLED).all()
    assert (sources[before != NOT_ANNOTATED] == provenance.PAINTED).all()
    assert said[-1][0] == "show_info" and "filled" in said[-1][1]

    layer.undo()  # one Ctrl+Z takes the whole fill back
    np.testing.assert_array_equal(layer.data, before)
    dock.save_now()
    np.testing.assert_array_equal(stored(dock)[0], before)


def test_discard_leaves_nothing_and_paint_wins(dock, said):
    layer, tools = dock.annotations_layer, dock.annotate_section.tools
    before = np.array(layer.data, copy=True)
    tools.fill()
    tools.discard()
    assert not previews(dock.viewer) and tools.proposal is None
    np.testing.assert_array_equal(layer.data, before)
    assert dock.scan.group.get(provenance.PROVENANCE) is None  # nothing written by a tool
    assert tools.accept() == 0 and "nothing to accept" in said[-1][1]

    # painted after the preview: the fill leaves those voxels as painted
    proposed = tools.fill()
    box, codes = tools.proposal.box, tools.proposal.codes
    local = np.argwhere(codes)[:5]
    painted = tuple((local + [s.start for s in box]).T)
    layer.data_setitem(painted, BACKGROUND)
    assert tools.accept() == proposed - 5
    assert (np.asarray(layer.data)[painted] == BACKGROUND).all()
    annotations, sources = stored(dock)
    assert (annotations[painted] == BACKGROUND).all()
    assert (sources[painted] == provenance.PAINTED).all()


def test_a_failed_write_changes_nothing_and_keeps_the_preview(dock, said):
    """A full disk at Accept: one line, the layer and the scan as they were, the preview kept
    to accept again (never the tool's voxels saved later as painting)."""
    import errno

    from test_bad_input import fail_writes_below

    layer, tools = dock.annotations_layer, dock.annotate_section.tools
    before = np.array(layer.data, copy=True)
    proposed = tools.fill()
    with pytest.MonkeyPatch.context() as full:
        fail_writes_below(full, dock.scan.path, errno.ENOSPC)
        assert tools.accept() == 0
    assert said[-1][0] == "show_error" and said[-1][1].startswith("not written: ")
    assert "\n" not in said[-1][1] and previews(dock.viewer) and tools.proposal is not None
    np.testing.assert_array_equal(layer.data, before)
    np.testing.assert_array_equal(stored(dock)[0], before)
    assert tools.accept() == proposed  # room again
    assert (stored(dock)[1][np.asarray(layer.data) != before] == provenance.FILLED).all()


def test_nothing_to_fill_and_two_axes_are_one_line(make_napari_viewer, qtbot, tmp_path, said):
    path = sample_scan(tmp_path)
    scan = Scan.open(path)
    ann = np.zeros(scan.shape, np.uint8)
    ann[11] = scan.read_annotations()[11]  # one painted slice: no pair
    scan.write_annotations(ann)
    dock = open_dock(make_napari_viewer, qtbot, path)
    tools = dock.annotate_section.tools
    assert tools.fill() == 0
    assert said[-1][0] == "show_error" and said[-1][1].startswith("nothing to fill")
    assert "\n" not in said[-1][1] and not previews(dock.viewer)

    layer = dock.annotations_layer
    ys = np.arange(layer.data.shape[1])
    xs = np.arange(layer.data.shape[2])
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    layer.data_setitem((np.full(yy.size, 20), yy.ravel(), xx.ravel()), BACKGROUND)  # a Z plane
    zs, xs2 = np.meshgrid(np.arange(layer.data.shape[0]), xs, indexing="ij")
    layer.data_setitem((zs.ravel(), np.full(zs.size, 5), xs2.ravel()), BACKGROUND)  # a Y plane
    assert tools.fill() == 0
    assert said[-1][0] == "show_error" and "two axes" in said[-1][1]
    assert not previews(dock.viewer)


def lesion_voxel(dock) -> tuple[int, int, int]:
    """A voxel deep in the largest reference lesion on an unpainted slice."""
    from scipy import ndimage as ndi

    truth = np.asarray(dock.scan.ground_truth[...]) > 0
    painted = (np.asarray(dock.annotations_layer.data) != NOT_ANNOTATED).any(axis=(1, 2))
    z = int((truth.sum(axis=(1, 2)) * ~painted).argmax())
    depth = ndi.distance_transform_edt(truth[z])
    y, x = np.unravel_index(int(depth.argmax()), depth.shape)
    return z, int(y), int(x)


def test_grow_click_preview_accept_recorded_as_grown(dock, said):
    layer, tools = dock.annotations_layer, dock.annotate_section.tools
    before = np.array(layer.data, copy=True)
    at = lesion_voxel(dock)
    proposed = tools.grow.click(at)
    assert proposed > 0, said
    (preview,) = previews(dock.viewer)
    assert preview.name == "grow preview" and "grow preview: lesion:" in tools.summary.text()
    assert tools.accept() == proposed
    new = np.asarray(layer.data) != before
    assert new[at] and new.sum() == proposed
    annotations, sources = stored(dock)
    np.testing.assert_array_equal(annotations, layer.data)
    assert (sources[new] == provenance.GROWN).all()
    assert tools.grow.clicks == []  # accepted: the next click starts a new lesion
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)


def test_a_not_this_click_removes(dock, said):
    tools = dock.annotate_section.tools
    at = lesion_voxel(dock)
    assert tools.grow.click(at) > 0
    box, codes = tools.proposal.box, tools.proposal.codes
    # a proposed voxel far from the first click, on the same slice
    zs, ys, xs = np.nonzero(codes)
    far = np.argmax(np.abs(ys + box[1].start - at[1]) + np.abs(xs + box[2].start - at[2]))
    other = (int(zs[far] + box[0].start), int(ys[far] + box[1].start), int(xs[far] + box[2].start))
    assert tools.grow.click(other, inside=False) > 0
    assert len(tools.grow.clicks) == 2 and not tools.grow.clicks[1].inside
    box, codes = tools.proposal.box, tools.proposal.codes
    local = tuple(v - s.start for v, s in zip(other, box, strict=True))
    assert codes[local] == 0
    assert "(1 not this)" in tools.summary.text()


def click(viewer, position, modifiers=(), move=(0, 0)) -> None:
    """Press, maybe move, and release the mouse at the world ``position`` of the canvas."""
    kw = {"position": position, "button": 1, "modifiers": list(modifiers)}
    mouse_press_callbacks(viewer, read_only_mouse_event(type="mouse_press", **kw))
    if any(move):
        moved = read_only_mouse_event(
            type="mouse_move", is_dragging=True, pos=np.asarray(move, float), **kw
        )
        mouse_move_callbacks(viewer, moved)
    mouse_release_callbacks(viewer, read_only_mouse_event(type="mouse_release", **kw))


def test_grow_mode_clicks_on_the_canvas(dock, said):
    viewer, layer, tools = dock.viewer, dock.annotations_layer, dock.annotate_section.tools
    tools.grow.button.click()
    assert tools.grow.on and layer.mode == "pan_zoom"  # a click grows, never paints
    world = tuple(v * s for v, s in zip(lesion_voxel(dock), dock.scan.spacing, strict=True))
    click(viewer, world, move=(30, 0))  # a drag (panning): no click
    assert not tools.grow.clicks and tools.proposal is None
    click(viewer, world)
    assert len(tools.grow.clicks) == 1 and tools.grow.clicks[0].inside
    assert tools.proposal is not None
    click(viewer, (world[0], world[1] + 4.0, world[2]), modifiers=["Shift"])
    assert len(tools.grow.clicks) == 2 and not tools.grow.clicks[1].inside

    # outside the scan: one line, nothing added
    click(viewer, (world[0], -50.0, world[2]))
    assert said[-1][0] == "show_error" and "outside the scan" in said[-1][1]
    assert len(tools.grow.clicks) == 2
    tools.discard()
    assert not tools.grow.clicks and not previews(viewer)

    layer.mode = "paint"  # picking another mode (P) leaves grow mode
    assert not tools.grow.on
    click(viewer, world)
    assert not tools.grow.clicks


def test_grow_refuses_a_background_brush(dock, said):
    dock.annotate_section.label.setCurrentIndex(0)  # background on the brush
    assert dock.annotate_section.tools.grow.click(lesion_voxel(dock)) == 0
    assert said[-1][0] == "show_error" and "not background" in said[-1][1]


def test_keys_over_the_canvas_with_the_annotations_active(dock, said):
    """The keys reach the tools while the annotations layer is active (its own keymap comes
    first: none of these keys is taken there)."""
    viewer, layer, tools = dock.viewer, dock.annotations_layer, dock.annotate_section.tools
    keys = viewer.window._qt_viewer._key_map_handler
    assert viewer.layers.selection.active is layer
    before = np.array(layer.data, copy=True)

    def press(key: str) -> None:
        assert keys.press_key(key)
        keys.release_key(key)

    press("Shift-F")
    assert tools.proposal is not None and previews(viewer)
    press("Shift-D")
    assert tools.proposal is None and not previews(viewer)
    press("Shift-F")
    press("Shift-A")
    assert not previews(viewer) and (np.asarray(layer.data) != before).any()
    press("G")
    assert tools.grow.on and layer.mode == "pan_zoom"
    press("G")
    assert not tools.grow.on and layer.mode == "paint"
