"""The Scan section in a real napari.Viewer: importing over an existing scan never replaces it,
and a class can be renamed from the dock."""

import nibabel as nib
import numpy as np
import pytest

from dock_helpers import import_and_wait
from napari_asymseg._qt.dock import AsymsegDock
from napari_asymseg._qt.scan_section import free_sibling
from napari_asymseg.store import annotations as codes
from napari_asymseg.store.scan import Scan

pytestmark = pytest.mark.viewer


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = AsymsegDock(viewer)
    viewer.window.add_dock_widget(widget, name="asymseg")
    return widget


def _painted_import(dock, qtbot, tmp_path, volume):
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "ct.nii.gz")
    out = import_and_wait(dock, qtbot, tmp_path / "ct.nii.gz")
    scan = Scan.open(out, mode="r+")
    ann = scan.read_annotations()
    ann[3, 2:5, 2:5] = codes.code_of_class(1)
    scan.write_annotations(ann)
    return out, ann


@pytest.mark.parametrize("choice", ["open", "new", ""])
def test_importing_again_never_replaces_the_scan(
    dock, qtbot, tmp_path, volume, monkeypatch, choice
):
    out, painted = _painted_import(dock, qtbot, tmp_path, volume)
    asked = []
    monkeypatch.setattr(dock.scan_section, "ask_existing", lambda p: asked.append(p) or choice)
    shown = []
    monkeypatch.setattr("napari_asymseg._qt.scan_section.show_error", shown.append)
    again = import_and_wait(dock, qtbot, tmp_path / "ct.nii.gz")
    assert asked == [out] and not shown  # asked, not told to "pass --overwrite"
    assert np.array_equal(Scan.open(out).read_annotations(), painted)  # the paint is kept
    if choice == "open":
        assert again == out and dock.scan.path == out
    elif choice == "new":
        assert again == tmp_path / "ct-2.zarr" and dock.scan.path == again
        assert free_sibling(out) == tmp_path / "ct-3.zarr"
    else:
        assert again is None


def test_an_imported_class_is_renamed_from_the_dock(
    dock, qtbot, tmp_path, volume, labels, monkeypatch
):
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "ct-labels.nii.gz")
    from napari_asymseg.io.importers import import_scan

    import_scan(tmp_path / "ct.nii.gz", tmp_path / "ct.zarr", labels=tmp_path / "ct-labels.nii.gz")
    dock.open_scan(tmp_path / "ct.zarr")
    section = dock.annotate_section
    assert section.label.itemText(1) == "class1 [2]"  # what an import without names calls it
    monkeypatch.setattr(
        "napari_asymseg._qt.annotate.QInputDialog.getText", lambda *a, **k: ("tumour", True)
    )
    section.label.setCurrentIndex(1)
    section.rename_button.click()
    assert section.label.itemText(1) == "tumour [2]" and section.label.currentIndex() == 1
    assert Scan.open(tmp_path / "ct.zarr").classes == ("tumour", "class2")
    assert dock.scan.classes == ("tumour", "class2")
    shown = []
    monkeypatch.setattr("napari_asymseg._qt.annotate.show_error", shown.append)
    assert not section.rename(1, "  ")  # refused in one line, nothing changed
    assert shown and "a class needs a name" in shown[0]
    assert Scan.open(tmp_path / "ct.zarr").classes == ("tumour", "class2")
