"""The Review section: heatmap, flags, jump-to, mark done, fine-tune (real napari.Viewer)."""

import numpy as np
import pytest

from dock_helpers import dock_with_model
from napari_asymseg._qt.dock import AsymsegDock
from napari_asymseg._qt.layers import layer_for
from napari_asymseg._qt.review import camera_of
from napari_asymseg.review.flags import stored_flags
from napari_asymseg.samples.sample_data import sample_scan
from napari_asymseg.store.scan import Scan

pytestmark = pytest.mark.viewer


@pytest.fixture
def dock(make_napari_viewer, tmp_path, qtbot):
    return dock_with_model(make_napari_viewer, tmp_path, qtbot, steps=8)


def predict_and_flag(dock, qtbot):
    dock.train_section.predict_button.click()
    qtbot.waitUntil(lambda: not dock.train_section.running, timeout=120_000)
    qtbot.waitUntil(lambda: dock.review_section.worker is None and bool(dock.review_section.flags))


def test_prediction_shows_heatmap_and_ranked_flags(dock, qtbot):
    predict_and_flag(dock, qtbot)
    review, viewer, path = dock.review_section, dock.viewer, dock.scan.path
    heat = layer_for(viewer, path, "risk")
    stored = np.asarray(Scan.open(path).result("risk")[...])
    assert heat.visible and heat.blending == "additive" and heat.colormap.name == "inferno"
    np.testing.assert_array_equal(np.asarray(heat.data), stored)
    flags = review.flags
    assert review.list.count() == len(flags) and flags == stored_flags(Scan.open(path))
    points = layer_for(viewer, path, "flags")
    np.testing.assert_array_equal(points.data, [f.center for f in flags])
    review.opacity.setValue(25)
    assert heat.opacity == pytest.approx(0.25)
    review.opacity.setValue(0)
    assert not heat.visible


def test_click_a_flag_jumps_there_and_done_is_remembered(dock, qtbot):
    predict_and_flag(dock, qtbot)
    review, viewer = dock.review_section, dock.viewer
    row = min(1, len(review.flags) - 1)
    flag = review.flags[row]
    review.list.setCurrentRow(row)
    assert viewer.dims.current_step[0] == flag.center[0]
    world = [c * s for c, s in zip(flag.center, dock.scan.spacing, strict=True)]
    assert np.allclose(camera_of(viewer).center[-2:], world[-2:])
    assert viewer.layers.selection.active is dock.annotations_layer  # ready to paint
    review.done_button.click()
    assert review.flags[row].done and "done" in review.list.item(row).text()
    assert f"z {flag.center[0]}," in review.list.item(row).toolTip()
    assert stored_flags(Scan.open(dock.scan.path))[row].done
    # recomputing keeps it done, and done flags go to the end of the list
    review.find_flags()
    qtbot.waitUntil(lambda: review.worker is None)
    assert review.flags[-1].done and flag.center in [f.center for f in review.flags if f.done]


def test_annotate_then_fine_tune_warm_starts(dock, qtbot):
    predict_and_flag(dock, qtbot)
    first_model = dock.current_model()
    review = dock.review_section
    flag = review.flags[0]
    z, y, x = flag.center
    dock.annotations_layer.data_setitem((np.array([z]), np.array([y]), np.array([x])), 2)
    review.finetune_button.click()
    train = dock.train_section
    assert train.running
    qtbot.waitUntil(lambda: dock.current_model() != first_model, timeout=120_000)
    qtbot.waitUntil(lambda: not train.running and review.worker is None, timeout=120_000)
    from napari_asymseg.model.load import load_checkpoint

    ckpt = load_checkpoint(dock.current_model())
    assert ckpt["config"]["train"]["steps"] == 40  # the fast fine-tune, at a gentler rate
    assert ckpt["config"]["train"]["lr"] == pytest.approx(1e-3)
    assert list(ckpt["config"]["model"]["filters"]) == [8, 16, 16]  # the network it started from
    assert Scan.open(dock.scan.path).read_annotations()[z, y, x] == 2  # saved first


def test_fine_tune_without_model_is_a_notification(make_napari_viewer, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    widget = AsymsegDock(viewer)
    widget.open_scan(sample_scan(tmp_path))
    shown = []
    monkeypatch.setattr("napari_asymseg._qt.review.show_error", shown.append)
    widget.review_section.fine_tune()
    widget.review_section.toggle_done()
    assert "no model yet" in shown[0] and "pick a flag" in shown[1]
