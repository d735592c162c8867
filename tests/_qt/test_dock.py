"""The dock in a real napari.Viewer (under Xvfb): open, paint, autosave, reopen."""

import errno

import nibabel as nib
import numpy as np
import pytest

from dock_helpers import import_and_wait
from napari_asymseg._qt.dock import AsymsegDock
from napari_asymseg.samples.sample_data import sample_scan
from napari_asymseg.store import annotations as codes
from napari_asymseg.store.lock import ScanBusy, ScanLock
from napari_asymseg.store.scan import Scan

pytestmark = pytest.mark.viewer


def annotations_layer(viewer):
    return next(
        layer
        for layer in viewer.layers
        if layer.metadata.get("asymseg", {}).get("role") == "annotations"
    )


@pytest.fixture
def viewer_and_dock(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = AsymsegDock(viewer)
    viewer.window.add_dock_widget(dock, name="asymseg")
    return viewer, dock


def test_open_paint_autosave_reopen(viewer_and_dock, tmp_path):
    viewer, dock = viewer_and_dock
    path = sample_scan(tmp_path)
    dock.open_scan(path)
    layer = annotations_layer(viewer)
    image = next(lay for lay in viewer.layers if lay.metadata["asymseg"]["role"] == "image")
    assert tuple(image.scale) == pytest.approx((2.0, 0.8, 0.8))
    assert tuple(layer.scale) == pytest.approx((2.0, 0.8, 0.8))
    assert dock.scan is not None and dock.scan.path == path
    assert "foreground fraction" in dock.scan_section.info.text()

    # paint a lesion stroke the way the brush does (through the undo history)
    z = 30
    before = layer.data[z, 50:55, 60:64].copy()
    assert not (before == 2).all()
    coords = np.array([[z, y, x] for y in range(50, 55) for x in range(60, 64)])
    layer.data_setitem(tuple(coords.T), 2)
    assert (layer.data[z, 50:55, 60:64] == 2).all()
    assert dock.save_now() == 1
    assert (Scan.open(path).read_annotations()[z, 50:55, 60:64] == 2).all()

    # undo is saved too
    layer.undo()
    dock.save_now()
    np.testing.assert_array_equal(Scan.open(path).read_annotations()[z, 50:55, 60:64], before)

    # close the viewer's layers and reopen the scan: the painting is there
    layer.data_setitem(tuple(coords.T), 2)
    dock.save_now()
    viewer.layers.clear()
    dock.open_scan(path)
    assert (annotations_layer(viewer).data[z, 50:55, 60:64] == 2).all()


def test_brush_labels_and_statistics_follow_the_annotation_code(viewer_and_dock, tmp_path):
    viewer, dock = viewer_and_dock
    dock.open_scan(sample_scan(tmp_path))
    combo = dock.annotate_section.label
    items = [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())]
    lesion = codes.code_of_class(1)
    assert items == [
        (f"background [{codes.BACKGROUND}]", codes.BACKGROUND),
        (f"lesion [{lesion}]", lesion),
    ]
    assert annotations_layer(viewer).selected_label == lesion  # the first class is picked
    combo.setCurrentIndex(0)
    assert annotations_layer(viewer).selected_label == codes.BACKGROUND
    n = codes.counts(dock.scan.read_annotations(), 1)
    assert f"annotated voxels: {n['annotated']:,} (background {n['background']:,}; " in (
        dock.scan_section.info.text()
    )


def test_dock_is_as_wide_as_its_widest_section(viewer_and_dock, tmp_path, qtbot):
    viewer, dock = viewer_and_dock
    viewer.window._qt_window.resize(1400, 900)
    viewer.window._qt_window.show()
    dock.open_scan(sample_scan(tmp_path))
    content = dock.scroll_area.widget()

    def fits() -> bool:  # nothing cut off: no horizontal scrolling needed
        return dock.scroll_area.viewport().width() >= content.minimumSizeHint().width()

    qtbot.waitUntil(fits, timeout=3000)
    assert not dock.scroll_area.horizontalScrollBar().isVisible()


def test_scan_written_elsewhere_opens_read_only(viewer_and_dock, tmp_path, monkeypatch):
    viewer, dock = viewer_and_dock
    path = sample_scan(tmp_path)
    errors: list[str] = []
    monkeypatch.setattr("napari_asymseg._qt.dock.show_error", errors.append)
    with ScanLock(path, "asymseg predict"):  # e.g. the CLI predicting into it
        dock.open_scan(path)
        layer = annotations_layer(viewer)
        assert dock.read_only and not layer.editable and dock.autosave is None
        dock.train_section.start()  # refused with a notification, nothing runs
        assert not dock.train_section.running
        assert errors and "read-only" in errors[-1] and "asymseg predict" in errors[-1]
    # once the other writer is done, opening the scan again makes it editable
    viewer.layers.clear()
    dock.open_scan(path)
    assert not dock.read_only and annotations_layer(viewer).editable
    with pytest.raises(ScanBusy):  # and now the dock is the one writer
        ScanLock(path, "asymseg flag").acquire()


def test_autosave_timer_saves_without_a_call(viewer_and_dock, tmp_path, qtbot):
    viewer, dock = viewer_and_dock
    path = sample_scan(tmp_path)
    dock.open_scan(path)
    dock.autosave._timer.setInterval(100)
    layer = annotations_layer(viewer)
    layer.data_setitem((np.array([1]), np.array([2]), np.array([3])), 2)
    qtbot.waitUntil(lambda: Scan.open(path, mode="r").annotations[1, 2, 3] == 2, timeout=3000)


def test_bad_scan_is_a_notification_not_a_traceback(viewer_and_dock, tmp_path, monkeypatch):
    viewer, dock = viewer_and_dock
    shown = []
    monkeypatch.setattr("napari_asymseg._qt.dock.show_error", shown.append)
    dock.open_scan(tmp_path / "missing.zarr")
    assert shown and "no scan at" in shown[0]
    assert len(viewer.layers) == 0


def test_import_image_from_dock(viewer_and_dock, tmp_path, volume, qtbot):
    viewer, dock = viewer_and_dock
    nib.save(nib.Nifti1Image(volume, np.diag([0.5, 0.5, 2.0, 1.0])), tmp_path / "ct.nii.gz")
    out = import_and_wait(dock, qtbot, tmp_path / "ct.nii.gz")
    assert out == tmp_path / "ct.zarr"
    assert dock.scan.path == out
    assert tuple(annotations_layer(viewer).scale) == pytest.approx((2.0, 0.5, 0.5))


def test_sample_and_dock_through_the_plugin_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-asymseg", "lesions")
    _, dock = viewer.window.add_plugin_dock_widget("napari-asymseg", "asymseg")
    assert isinstance(dock, AsymsegDock)
    assert dock.scan is not None  # the dock adopted the already-open sample
    assert {lay.metadata["asymseg"]["role"] for lay in viewer.layers} == {"image", "annotations"}


def test_an_open_scan_keeps_full_collections_out_of_the_clicks(viewer_and_dock, tmp_path, qtbot):
    """Opening a scan freezes the objects alive then out of the collector (a full collection
    of them stalled one review answer in ten by ~400 ms); closing it gives them back."""
    import gc

    viewer, dock = viewer_and_dock
    gc.unfreeze()
    dock.open_scan(sample_scan(tmp_path))
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=3000)
    assert gc.get_freeze_count() > 10_000  # napari, Qt and the scan's layers
    viewer.layers.remove(dock.annotations_layer)
    assert dock.annotations_layer is None
    assert gc.get_freeze_count() == 0


def test_a_scan_opens_on_its_painted_lesion_ready_to_paint(viewer_and_dock, tmp_path, qtbot):
    viewer, dock = viewer_and_dock
    path = sample_scan(tmp_path)
    dock.open_scan(path)
    layer = annotations_layer(viewer)
    qtbot.waitUntil(lambda: layer.mode == "paint", timeout=3000)
    painted = (Scan.open(path, mode="r").read_annotations() > codes.BACKGROUND).sum(axis=(1, 2))
    assert viewer.dims.current_step[0] == int(painted.argmax()) and painted.max() > 0
    assert layer.selected_label == codes.code_of_class(1)  # the lesion on the brush
    assert viewer.layers.selection.active is layer


# -- another scan opened, napari closed -------------------------------------------------------


def stroke(layer, z=1, value=2) -> None:
    """One small stroke, painted the way the brush paints (no save asked for)."""
    layer.data_setitem((np.array([z, z]), np.array([2, 2]), np.array([3, 4])), value)


def scan_roles(viewer, path) -> list[str]:
    return [
        lay.metadata["asymseg"]["role"]
        for lay in viewer.layers
        if lay.metadata.get("asymseg", {}).get("scan") == str(path)
    ]


def test_opening_another_scan_closes_the_first_after_saving_it(viewer_and_dock, tmp_path, qtbot):
    """The first scan's painting is saved, its lock freed, and its layers leave the viewer:
    nothing can be painted on a layer that is no longer saved."""
    viewer, dock = viewer_and_dock
    first, second = sample_scan(tmp_path / "a"), sample_scan(tmp_path / "b")
    dock.open_scan(first)
    old = dock.annotations_layer
    stroke(old)  # no save asked for: the switch saves it
    dock.open_scan(second)
    assert not old.editable  # at once, before its layers leave the viewer
    assert Scan.open(first, mode="r").annotations[1, 2, 3] == 2
    ScanLock(first, "asymseg flag").acquire().release()  # the first scan is free
    qtbot.waitUntil(lambda: not scan_roles(viewer, first), timeout=3000)
    assert dock.scan.path == second and dock.annotations_layer.editable
    assert set(scan_roles(viewer, second)) >= {"image", "annotations", "prediction", "risk"}


def test_opening_the_same_scan_again_replaces_its_layers(viewer_and_dock, tmp_path, qtbot):
    viewer, dock = viewer_and_dock
    path = sample_scan(tmp_path)
    dock.open_scan(path)
    qtbot.waitUntil(lambda: "prediction" in scan_roles(viewer, path), timeout=3000)
    old = dock.annotations_layer
    stroke(old)
    dock.open_scan(path)
    new = dock.annotations_layer
    assert new is not old and not old.editable and new.editable
    assert new.data[1, 2, 3] == 2  # read back from the scan: the stroke was saved first
    qtbot.waitUntil(lambda: old not in viewer.layers, timeout=3000)
    roles = scan_roles(viewer, path)
    assert sorted(roles) == sorted(set(roles))  # one layer of each role: the new ones
    with pytest.raises(ScanBusy):  # the dock still writes it
        ScanLock(path, "asymseg flag").acquire()


def test_a_last_save_that_fails_keeps_the_painting_on_screen(
    viewer_and_dock, tmp_path, qtbot, monkeypatch
):
    from test_bad_input import fail_writes_below

    viewer, dock = viewer_and_dock
    shown: list[str] = []
    monkeypatch.setattr("napari_asymseg._qt.dock.show_error", shown.append)
    first, second = sample_scan(tmp_path / "a"), sample_scan(tmp_path / "b")
    dock.open_scan(first)
    old = dock.annotations_layer
    fail_writes_below(monkeypatch, first / "annotations", errno.ENOSPC)
    stroke(old)
    dock.open_scan(second)
    qtbot.waitUntil(lambda: "image" not in scan_roles(viewer, first), timeout=3000)
    assert old in viewer.layers and not old.editable and old.name.endswith("(not saved)")
    assert old.data[1, 2, 3] == 2
    assert len(shown) == 1 and "not saved" in shown[0] and old.name in shown[0]


def test_closing_the_viewer_stops_the_training_and_saves_the_painting(
    viewer_and_dock, tmp_path, qtbot
):
    """Closing napari right after a stroke, while a training runs: the stroke is on disk, the
    training's thread was asked to stop and has ended, the run is recorded as cancelled."""
    from napari_asymseg.train import runs

    viewer, dock = viewer_and_dock
    path = sample_scan(tmp_path)
    dock.open_scan(path)
    section = dock.train_section
    section.settings.steps.setValue(10_000)
    section.train_button.click()
    qtbot.waitUntil(lambda: section.pbar.n >= 2, timeout=60_000)
    worker, run = section.worker, section.run_out
    stroke(dock.annotations_layer, z=30)
    viewer.close()
    assert worker.abort_requested and not worker.is_running and not section.running
    assert runs.read_summary(run)["status"] == runs.CANCELLED
    assert Scan.open(path, mode="r").annotations[30, 2, 3] == 2
    ScanLock(path, "asymseg flag").acquire().release()


def test_closing_the_window_saves_and_frees_the_scan(viewer_and_dock, tmp_path, qtbot):
    """The window's close button (napari never calls the dock's closeEvent, nor removes the
    layers): the dock hears the window close."""
    viewer, dock = viewer_and_dock
    path = sample_scan(tmp_path)
    dock.open_scan(path)
    stroke(dock.annotations_layer)
    viewer.window._qt_window.close()
    assert dock.closed
    assert Scan.open(path, mode="r").annotations[1, 2, 3] == 2
    ScanLock(path, "asymseg flag").acquire().release()
