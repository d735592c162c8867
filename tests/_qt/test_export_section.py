"""The Export section and the napari writer, in a real napari.Viewer (under Xvfb)."""

import numpy as np
import pytest
from qtpy.QtWidgets import QFileDialog

from dock_helpers import dock_with_model, empty_dock
from napari_asymseg._qt.layers import layer_for
from napari_asymseg.infer.predict import predict
from napari_asymseg.io.exporters import read_mask
from napari_asymseg.model.bundle import is_bundle
from napari_asymseg.samples.sample_data import sample_scan
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


# ----------------------------------------------------------------------------- replacing files


@pytest.fixture
def open_dock(make_napari_viewer, tmp_path):
    """The dock with the sample scan open (no model: exporting annotations needs none)."""
    widget = empty_dock(make_napari_viewer)
    widget.open_scan(sample_scan(tmp_path))
    widget.export_section.what.setCurrentText("annotations")
    return widget


def _save_dialog_answers(monkeypatch, path, kind):
    """The save dialog returns ``path`` (as typed) and the chosen filter; records its options."""
    asked = []

    def dialog(parent, caption, default, filters, options=None):
        asked.append(options)
        return str(path), kind

    monkeypatch.setattr("napari_asymseg._qt.export.QFileDialog.getSaveFileName", dialog)
    return asked


def test_a_name_that_gains_a_suffix_is_asked_about_before_replacing(
    open_dock, tmp_path, qtbot, monkeypatch
):
    """Typing ``mask`` with NIfTI chosen writes ``mask.nii.gz``: when that exists, the dock
    asks about it (the dialog could only ask about ``mask``), and No keeps it byte for byte."""
    section = open_dock.export_section
    existing = tmp_path / "mask.nii.gz"
    existing.write_bytes(b"the user's earlier mask")
    options = _save_dialog_answers(monkeypatch, tmp_path / "mask", "NIfTI (*.nii.gz *.nii)")
    questions = []
    answer = {"replace": False}

    def confirm(paths):
        questions.append(paths)
        return answer["replace"]

    monkeypatch.setattr(section, "confirm_replace", confirm)
    section.mask_button.click()
    assert questions == [[existing]] and section.worker is None
    assert existing.read_bytes() == b"the user's earlier mask"
    # the dialog's own question is off: it would ask about "mask", not the file written
    assert options[0] & QFileDialog.Option.DontConfirmOverwrite
    answer["replace"] = True
    section.mask_button.click()
    wait(section, qtbot)
    np.testing.assert_array_equal(
        read_mask(existing).data, np.where(open_dock.scan.read_annotations() > 1, 1, 0)
    )


def test_a_new_name_is_written_without_a_question(open_dock, tmp_path, qtbot, monkeypatch):
    section = open_dock.export_section
    _save_dialog_answers(monkeypatch, tmp_path / "fresh", "TIFF (*.tif *.tiff)")
    monkeypatch.setattr(section, "confirm_replace", lambda paths: pytest.fail("asked"))
    section.mask_button.click()
    wait(section, qtbot)
    assert (tmp_path / "fresh.tif").is_file()


def test_the_replace_question_names_the_files(open_dock, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    asked = []

    def question(parent, title, text, buttons, default):
        asked.append(text)
        assert default == QMessageBox.StandardButton.No  # Enter keeps the file
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", question)
    (tmp_path / "seg_image").mkdir()
    paths = [tmp_path / "seg.dcm", tmp_path / "seg_image"]
    assert open_dock.export_section.confirm_replace(paths) is False
    assert asked == [f"seg.dcm and seg_image/ already exist in {tmp_path}. Replace them?"]


def test_a_seg_image_folder_of_the_user_is_refused_in_one_line(open_dock, tmp_path, monkeypatch):
    """The SEG of a scan not from DICOM needs NAME_image/ for its image series: a folder of
    that name holding other files is never replaced, and the dock says so without asking."""
    section = open_dock.export_section
    folder = tmp_path / "seg_image"
    folder.mkdir()
    (folder / "scan01.dcm").write_bytes(b"a series of the user's")
    errors = []
    monkeypatch.setattr("napari_asymseg._qt.export.show_error", errors.append)
    monkeypatch.setattr(section, "confirm_replace", lambda paths: pytest.fail("asked"))
    section.export_mask(tmp_path / "seg.dcm", modality="MR")
    assert section.worker is None and len(errors) == 1
    assert "holds files that no SEG export wrote" in errors[0]
    assert sorted(p.name for p in folder.iterdir()) == ["scan01.dcm"]
    assert not (tmp_path / "seg.dcm").exists()


def test_an_existing_bundle_is_asked_about(dock, tmp_path, monkeypatch):
    section = dock.export_section
    (tmp_path / "model.zip").write_bytes(b"an older bundle")
    questions = []
    monkeypatch.setattr(section, "confirm_replace", lambda paths: questions.append(paths))
    section.export_bundle(tmp_path / "model.zip")
    assert questions == [[tmp_path / "model.zip"]] and section.worker is None
    assert (tmp_path / "model.zip").read_bytes() == b"an older bundle"
