"""The Export section and the napari writer, in a real napari.Viewer (under Xvfb)."""

import numpy as np
import pytest

from dock_helpers import dock_with_model
from napari_asymseg._qt.layers import layer_for
from napari_asymseg.infer.predict import predict
from napari_asymseg.io.exporters import read_mask
from napari_asymseg.model.bundle import is_bundle
from napari_asymseg.store.scan import Scan

pytestmark = pytest.mark.viewer


@pytest.fixture
def dock(make_napari_viewer, tmp_path, qtbot):
    widget = dock_with_model(make_napari_viewer, tmp_path, qtbot, steps=4)
    list(predict(widget.scan, widget.current_model()))
    return widget


def wait(section, qtbot):
    qtbot.waitUntil(lambda: section.worker is None, timeout=120_000)


def test_export_prediction_and_annotations(dock, qtbot, tmp_path):
    section = dock.export_section
    scan = Scan.open(dock.scan.path)
    section.export_mask(tmp_path / "pred.nii.gz")
    wait(section, qtbot)
    vol = read_mask(tmp_path / "pred.nii.gz")
    np.testing.assert_array_equal(vol.data, scan.result("prediction")[...])
    np.testing.assert_allclose(vol.affine, scan.affine)
    # paint, then export the annotations at once: the unsaved stroke is included
    dock.annotations_layer.data_setitem((np.array([0]), np.array([5]), np.array([5])), 2)
    section.what.setCurrentText("annotations")
    section.export_mask(tmp_path / "ann.ome.zarr")
    wait(section, qtbot)
    ann = read_mask(tmp_path / "ann.ome.zarr").data
    assert ann[0, 5, 5] == 1
    expected = Scan.open(dock.scan.path).read_annotations()
    np.testing.assert_array_equal(ann, np.where(expected > 1, expected - 1, 0))


def test_export_and_load_a_model_bundle(dock, qtbot, tmp_path):
    section = dock.export_section
    first = dock.current_model()
    section.export_bundle(tmp_path / "model.zip")
    wait(section, qtbot)
    assert (tmp_path / "model.zip").is_file() and is_bundle(tmp_path / "model.zip")
    before = Scan.open(dock.scan.path).result("prediction")[...]
    loaded = section.load_model(tmp_path / "model.zip")
    assert loaded is not None and dock.current_model() == loaded != first
    dock.train_section.predict_button.click()
    qtbot.waitUntil(lambda: not dock.train_section.running, timeout=120_000)
    np.testing.assert_array_equal(Scan.open(dock.scan.path).result("prediction")[...], before)


def test_loading_a_broken_model_is_a_notification(dock, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_asymseg._qt.export.show_error", shown.append)
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    assert dock.export_section.load_model(tmp_path / "broken.pt") is None
    assert "damaged" in shown[0]


def test_napari_writer_saves_the_layer_as_shown(dock, tmp_path):
    layer = layer_for(dock.viewer, dock.scan.path, "prediction")
    layer.data = np.asarray(layer.data).copy()
    layer.data[1, 2, 3] = 1
    written = layer.save(str(tmp_path / "shown.nii.gz"), plugin="napari-asymseg")
    assert written
    vol = read_mask(tmp_path / "shown.nii.gz")
    assert vol.data[1, 2, 3] == 1
    np.testing.assert_allclose(vol.affine, dock.scan.affine)
