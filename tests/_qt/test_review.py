"""The Review section: heatmap, the queue of both kinds, one-click answers with undo, shortcuts,
and the fine-tune that re-ranks (real napari.Viewer)."""

import numpy as np
import pytest
from qtpy.QtCore import Qt

from dock_helpers import dock_with_model
from engine_helpers import tiny_scan
from napari_asymseg._qt.dock import AsymsegDock
from napari_asymseg._qt.layers import camera_of, layer_for
from napari_asymseg._qt.review import KEYS
from napari_asymseg.review import queue as rq
from napari_asymseg.samples.sample_data import sample_scan
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED
from napari_asymseg.store.provenance import REVIEWED, read_provenance
from napari_asymseg.store.scan import Scan

pytestmark = pytest.mark.viewer


@pytest.fixture
def dock(make_napari_viewer, tmp_path, qtbot):
    return dock_with_model(make_napari_viewer, tmp_path, qtbot, steps=8)


def predict_and_rank(dock, qtbot):
    dock.train_section.predict_button.click()
    qtbot.waitUntil(lambda: not dock.train_section.running, timeout=120_000)
    review = dock.review_section
    qtbot.waitUntil(lambda: review.worker is None and bool(review.items))
    qtbot.waitUntil(lambda: review.list.currentRow() == 0)  # the top item, a turn later


def with_false_alarm(dock, qtbot) -> rq.Item:
    """A known false alarm (a 6 x 6 square the model calls lesion on an unpainted slice) in the
    stored prediction, ranked first; returns its item, selected."""
    scan, review = Scan.open(dock.scan.path), dock.review_section
    free = np.flatnonzero((dock.annotations_layer.data == NOT_ANNOTATED).all(axis=(1, 2)))
    z = int(free[len(free) // 2])
    pred = np.asarray(scan.result("prediction")[...])
    prob = np.asarray(scan.result("probability")[...], np.float32)
    pred[z - 1 : z + 2], prob[z - 1 : z + 2] = 0, 0.0  # nothing else near it called lesion
    pred[z, 4:10, 4:10], prob[z, 4:10, 4:10] = 1, 0.5
    scan.write_result("prediction", pred)
    scan.write_result("probability", prob)
    review.find_items()
    qtbot.waitUntil(lambda: review.worker is None and review.list.currentRow() == 0)
    row = next(
        k
        for k, i in enumerate(review.items)
        if i.kind == rq.FALSE_ALARM and i.center[0] == z and i.bbox[1:3] == (4, 4)
    )
    review.list.setCurrentRow(row)
    return review.items[row]


def test_prediction_shows_heatmap_and_the_ranked_queue(dock, qtbot):
    predict_and_rank(dock, qtbot)
    # the status line sums the prediction up: its lesions and their volume
    status = dock.train_section.status.text()
    assert status.startswith("prediction saved to sample-lesions.zarr: ")
    assert status.endswith(" mL in all") or status.endswith("no lesion found")
    review, viewer, path = dock.review_section, dock.viewer, dock.scan.path
    heat = layer_for(viewer, path, "risk")
    stored = np.asarray(Scan.open(path).result("risk")[...])
    assert heat.visible and heat.blending == "translucent"  # the paint keeps its colour
    # the next step is in view: the dock scrolled to the answer buttons
    button, viewport = review.lesion_button, dock.scroll_area.viewport()
    qtbot.waitUntil(
        lambda: viewport.rect().contains(button.mapTo(viewport, button.rect().topLeft()))
    )
    assert dock.sections["Review"].expanded
    np.testing.assert_array_equal(np.asarray(heat.data), stored)
    items = review.items
    assert review.list.count() == len(items)
    assert items == list(rq.stored_queue(Scan.open(path)).items)
    gains = [i.gain for i in items if not i.answered]
    assert gains == sorted(gains, reverse=True)
    points = layer_for(viewer, path, "flags")
    np.testing.assert_array_equal(points.data, [i.center for i in items])
    assert review.list.currentRow() == 0  # the top item is on screen
    assert viewer.dims.current_step[0] == items[0].center[0]
    review.opacity.setValue(25)
    assert heat.opacity == pytest.approx(0.25)
    review.opacity.setValue(0)
    assert not heat.visible


def test_reject_a_false_alarm_in_one_click_then_undo(dock, qtbot):
    predict_and_rank(dock, qtbot)
    item = with_false_alarm(dock, qtbot)
    review, layer, viewer = dock.review_section, dock.annotations_layer, dock.viewer
    z = item.center[0]
    assert viewer.dims.current_step[0] == z
    world = [c * s for c, s in zip(item.center, dock.scan.spacing, strict=True)]
    assert np.allclose(camera_of(viewer).center[-2:], world[-2:])
    before = np.array(layer.data, copy=True)
    review.not_lesion_button.click()
    changed = layer.data != before
    assert changed.sum() == 36 and (layer.data[z, 4:10, 4:10] == BACKGROUND).all()
    answered = next(i for i in review.items if i.center == item.center)
    assert (
        answered.status == rq.NOT_LESION
        and "not lesion" in review.list.item(review.items.index(answered)).text()
    )
    assert not review.items[review.list.currentRow()].answered  # on to the next open item
    dock.save_now()
    stored = rq.stored_queue(Scan.open(dock.scan.path))
    assert stored.item(answered.id).status == rq.NOT_LESION
    assert (Scan.open(dock.scan.path).read_annotations()[z, 4:10, 4:10] == BACKGROUND).all()
    # Undo answer: the voxels as they were, the item open again and current
    review.undo_button.click()
    np.testing.assert_array_equal(layer.data, before)
    reopened = review.items[review.list.currentRow()]
    assert reopened.center == item.center and not reopened.answered
    # napari's own undo (Ctrl+Z in the layer) takes the write back too; re-ranking then
    # forgets the answer instead of claiming it
    review.not_lesion_button.click()
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)
    review.find_items()
    qtbot.waitUntil(lambda: review.worker is None)
    assert not [i for i in review.items if i.answered]
    assert any(i.center == item.center for i in review.items)


def test_shortcuts_answer_and_move_on(dock, qtbot):
    predict_and_rank(dock, qtbot)
    item = with_false_alarm(dock, qtbot)
    review, layer, viewer = dock.review_section, dock.annotations_layer, dock.viewer
    review.tune_after.setValue(0)  # no fine-tune here
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, KEYS["accept"])
    z = item.center[0]
    assert (layer.data[z, 4:10, 4:10] == 2).all()  # painted lesion: the predicted class
    assert next(i for i in review.items if i.center == item.center).status == rq.LESION
    qtbot.keyClick(canvas, KEYS["undo"])
    assert (layer.data[z, 4:10, 4:10] == NOT_ANNOTATED).all()
    row = review.list.currentRow()
    qtbot.keyClick(canvas, KEYS["next"])
    assert review.list.currentRow() != row or len(review.items) == 1
    qtbot.keyClick(canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)  # previous
    assert review.list.currentRow() == row
    qtbot.keyClick(canvas, KEYS["next"])
    qtbot.keyClick(canvas, KEYS["reject"])
    assert sum(i.answered for i in review.items) == 1


def test_after_n_answers_the_fine_tune_starts_and_reranks(dock, qtbot):
    predict_and_rank(dock, qtbot)
    item = with_false_alarm(dock, qtbot)
    first_model = dock.current_model()
    review, train = dock.review_section, dock.train_section
    review.tune_after.setValue(1)
    review.not_lesion_button.click()
    assert train.running
    qtbot.waitUntil(lambda: dock.current_model() != first_model, timeout=120_000)
    qtbot.waitUntil(lambda: not train.running and review.worker is None, timeout=120_000)
    from napari_asymseg.model.load import load_checkpoint

    ckpt = load_checkpoint(dock.current_model())
    assert ckpt["config"]["train"]["steps"] == 40  # the fast fine-tune, at a gentler rate
    assert ckpt["config"]["train"]["lr"] == pytest.approx(1e-3)
    assert list(ckpt["config"]["model"]["filters"]) == [8, 16, 16]  # the network it started from
    ann = Scan.open(dock.scan.path).read_annotations()
    assert (ann[item.center[0], 4:10, 4:10] == BACKGROUND).all()  # saved before training
    # re-ranked on the new prediction: the answer is kept, listed after the open items
    stored = rq.stored_queue(Scan.open(dock.scan.path))
    assert review.items == list(stored.items)
    assert [i.center for i in review.items if i.answered] == [item.center]
    assert review.items[-1].answered


def test_answers_without_a_scan_model_or_item_are_notifications(
    make_napari_viewer, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    widget = AsymsegDock(viewer)
    widget.open_scan(sample_scan(tmp_path))
    shown = []
    monkeypatch.setattr("napari_asymseg._qt.review.show_error", shown.append)
    monkeypatch.setattr("napari_asymseg._qt.review.show_info", shown.append)
    widget.review_section.fine_tune()
    widget.review_section.answer(rq.NOT_LESION)
    widget.review_section.undo_answer()
    widget.review_section.next_item()
    assert "no model yet" in shown[0] and "pick an item" in shown[1]
    assert "no answer to undo" in shown[2] and "nothing left to review" in shown[3]


def test_a_queue_older_than_the_prediction_is_refused_and_ranking_offered(dock, qtbot, monkeypatch):
    """Predicted again (by asymseg predict, napari closed): the stored queue describes the old
    prediction. It is not shown, nothing can be answered on it, and ranking again is offered."""
    predict_and_rank(dock, qtbot)
    review, layer, path = dock.review_section, dock.annotations_layer, dock.scan.path
    old = rq.stored_queue(Scan.open(path))
    scan = Scan.open(path)
    pred = np.asarray(scan.result("prediction")[...])
    pred[pred == 0], pred[pred > 0] = 1, 0  # another model: lesion where there was none
    scan.write_result("prediction", pred)
    offered, errors = [], []
    monkeypatch.setattr(
        "napari_asymseg._qt.review.offer", lambda msg, action, cb: offered.append((msg, cb))
    )
    monkeypatch.setattr("napari_asymseg._qt.review.show_error", errors.append)
    review.load()  # as when the scan opens
    assert review.items == [] and review.list.count() == 0
    line = f"the review queue of {path.name} is older than its prediction"
    assert review.summary.text().startswith(line) and "\n" not in review.summary.text()
    ((message, rank_again),) = offered
    assert message.startswith(line) and "Rank what to review" in message
    before = np.array(layer.data, copy=True)
    review.answer(rq.NOT_LESION)  # the R key: nothing to answer
    assert "pick an item" in errors[0]
    np.testing.assert_array_equal(layer.data, before)
    assert rq.stored_queue(Scan.open(path)) == old  # refused, not replaced
    offered.clear()  # the patched offer outlives the viewer: let go of the section
    rank_again()
    del rank_again
    qtbot.waitUntil(lambda: review.worker is None and bool(review.items))
    fresh = rq.stored_queue(Scan.open(path))
    assert fresh.prediction == rq.prediction_digest(pred) and review.items == list(fresh.items)


def test_undo_answer_keeps_what_was_painted_since(dock, qtbot, monkeypatch):
    predict_and_rank(dock, qtbot)
    item = with_false_alarm(dock, qtbot)
    review, layer = dock.review_section, dock.annotations_layer
    review.tune_after.setValue(0)
    shown = []
    monkeypatch.setattr("napari_asymseg._qt.review.show_info", shown.append)
    z = item.center[0]
    before = np.array(layer.data, copy=True)
    review.not_lesion_button.click()
    assert (layer.data[z, 4:10, 4:10] == BACKGROUND).all()
    stored = Scan.open(dock.scan.path)  # saved at once, recorded as a review answer
    assert (stored.read_annotations()[z, 4:10, 4:10] == BACKGROUND).all()
    assert (read_provenance(stored.group)[z, 4:10, 4:10] == REVIEWED).all()
    layer.data_setitem((np.full(6, z), np.full(6, 5), np.arange(4, 10)), 2)  # painted lesion
    review.undo_button.click()
    kept = np.zeros(layer.data.shape, bool)
    kept[z, 5, 4:10] = True
    assert (layer.data[kept] == 2).all()  # the user's paint since the answer stays
    np.testing.assert_array_equal(layer.data[~kept], before[~kept])  # the rest as before
    assert [m for m in shown if "6 voxel(s) you painted since were kept" in m]
    assert not next(i for i in review.items if i.center == item.center).answered
    dock.save_now()
    on_disk = Scan.open(dock.scan.path).read_annotations()
    assert (on_disk[z, 5, 4:10] == 2).all() and (on_disk[z, 6:10, 4:10] == NOT_ANNOTATED).all()


def test_the_keys_answer_while_the_review_list_has_the_focus(make_napari_viewer, tmp_path, qtbot):
    widget = dock_with_model(make_napari_viewer, tmp_path, qtbot, steps=8)
    window = widget.viewer.window._qt_window
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    predict_and_rank(widget, qtbot)
    item = with_false_alarm(widget, qtbot)
    review, layer = widget.review_section, widget.annotations_layer
    review.tune_after.setValue(0)
    row = review.items.index(item)
    review.dock.sections["Review"].set_expanded(True)
    widget.scroll_area.ensureWidgetVisible(review.list)
    review.list.scrollToItem(review.list.item(row))
    rect = review.list.visualItemRect(review.list.item(row))
    qtbot.mouseClick(review.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(review.list.hasFocus)
    assert review.list.currentRow() == row
    z = item.center[0]
    qtbot.keyClick(review.list, Qt.Key.Key_A)
    assert (layer.data[z, 4:10, 4:10] == 2).all()  # answered: painted lesion
    assert next(i for i in review.items if i.center == item.center).status == rq.LESION
    qtbot.keyClick(review.list, Qt.Key.Key_U)
    assert (layer.data[z, 4:10, 4:10] == NOT_ANNOTATED).all()
    assert review.list.currentRow() == row
    qtbot.keyClick(review.list, Qt.Key.Key_N)
    assert review.list.currentRow() != row or len(review.items) == 1
    qtbot.keyClick(review.list, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    assert review.list.currentRow() == row
    qtbot.keyClick(review.list, Qt.Key.Key_R)
    assert (layer.data[z, 4:10, 4:10] == BACKGROUND).all()


def test_a_ranking_that_ends_after_another_scan_opened_is_not_shown(
    dock, qtbot, tmp_path, monkeypatch
):
    import time

    predict_and_rank(dock, qtbot)
    review = dock.review_section
    build = rq.build_queue

    def slow(scan):  # the ranking ends after the other scan is open and its queue loaded
        queue = build(scan)
        time.sleep(1.5)
        return queue

    monkeypatch.setattr(rq, "build_queue", slow)
    review.find_items()  # rank again, and open another scan before it ends
    assert review.worker is not None
    other = tiny_scan(tmp_path / "other.zarr")
    dock.open_scan(other.path)
    qtbot.waitUntil(lambda: review.worker is None, timeout=60_000)
    assert dock.scan.path == other.path
    assert review.items == []  # not the first scan's queue in the second scan's list
