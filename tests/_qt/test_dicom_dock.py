"""DICOM in the dock: Import DICOM… (one series, or a choice among several) and the Export
section's DICOM SEG, in a real napari.Viewer (under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

import dicom_helpers as dh
from dock_helpers import empty_dock, import_and_wait
from napari_asymseg.io.dicom_seg import read_seg

pytestmark = pytest.mark.viewer


@pytest.fixture
def dock(make_napari_viewer):
    return empty_dock(make_napari_viewer)


def test_import_a_dicom_folder_and_export_a_seg(dock, tmp_path, qtbot):
    dh.series(tmp_path / "CT_0001", modality="CT")
    out = import_and_wait(dock, qtbot, tmp_path / "CT_0001")
    assert out == tmp_path / "CT_0001.zarr" and dock.scan.path == out
    assert dock.scan.dicom["modality"] == "CT"
    layer = dock.annotations_layer
    layer.data_setitem((np.array([2, 2]), np.array([5, 6]), np.array([5, 5])), 2)  # paint lesion
    section = dock.export_section
    section.what.setCurrentText("annotations")
    section.export_mask(tmp_path / "seg.dcm")  # from DICOM: no question asked
    qtbot.waitUntil(lambda: section.worker is None, timeout=60_000)
    labels = read_seg(tmp_path / "seg.dcm", dock.scan.dicom["sop_instance_uids"])
    assert labels.sum() == 2 and labels[2, 5, 5] == 1
    assert dh.dciodvfy(tmp_path / "seg.dcm") == []


def test_several_series_ask_which_and_cancel_imports_nothing(dock, tmp_path, monkeypatch, qtbot):
    folder, _t1, t2 = dh.two_series(tmp_path / "study")
    asked = []

    def choose(parent, title, question, items, *args):
        asked.append(items)
        return next(i for i in items if i.startswith(t2)), True

    monkeypatch.setattr("napari_asymseg._qt.scan_section.QInputDialog.getItem", choose)
    out = import_and_wait(dock, qtbot, folder)
    assert len(asked[0]) == 2 and dock.scan.dicom["series_uid"] == t2
    monkeypatch.setattr(
        "napari_asymseg._qt.scan_section.QInputDialog.getItem", lambda *a: ("", False)
    )
    assert import_and_wait(dock, qtbot, folder, tmp_path / "other.zarr") is None
    assert not (tmp_path / "other.zarr").exists() and out.exists()


def test_seg_of_a_scan_not_from_dicom_asks_the_modality(dock, tmp_path, qtbot, monkeypatch):
    from engine_helpers import tiny_scan

    scan = tiny_scan(tmp_path / "tiny.zarr")
    dock.open_scan(scan.path)
    import qtpy.QtWidgets as qw

    monkeypatch.setattr(qw.QInputDialog, "getItem", lambda *a: ("", False))
    section = dock.export_section
    section.what.setCurrentText("annotations")
    section.export_mask(tmp_path / "cancelled.dcm")
    assert section.worker is None and not (tmp_path / "cancelled.dcm").exists()
    monkeypatch.setattr(qw.QInputDialog, "getItem", lambda *a: ("MR", True))
    section.export_mask(tmp_path / "seg.dcm")
    qtbot.waitUntil(lambda: section.worker is None, timeout=60_000)
    assert (tmp_path / "seg_image").is_dir() and dh.dciodvfy(tmp_path / "seg.dcm") == []
