"""Renaming a scan's classes: the name is checked, stored whole, and the codes stay."""

import numpy as np
import pytest

from engine_helpers import tiny_scan
from napari_asymseg.errors import ScanError
from napari_asymseg.store.classes import rename_class
from napari_asymseg.store.scan import Scan


def test_a_class_is_renamed_on_disk_and_in_the_open_scan(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    before = scan.read_annotations()
    assert rename_class(scan, 1, "  tumour core ") == "tumour core"
    assert scan.classes == ("tumour core",)
    again = Scan.open(scan.path)
    assert again.classes == ("tumour core",) and again.spacing == scan.spacing
    assert np.array_equal(again.read_annotations(), before)  # the codes do not change


@pytest.mark.parametrize(
    ("number", "name", "said"),
    [
        (2, "x", "has classes 1 to 1, not 2"),
        (1, "   ", "a class needs a name"),
        (1, "a,b", "without commas"),
        (1, "x" * 65, "at most 64"),
    ],
)
def test_a_bad_class_name_is_refused_in_one_line(tmp_path, number, name, said):
    scan = tiny_scan(tmp_path / "s.zarr")
    with pytest.raises(ScanError, match=said):
        rename_class(scan, number, name)
    assert Scan.open(scan.path).classes == scan.classes == ("lesion",)


def test_two_classes_cannot_share_a_name(tmp_path):
    scan = Scan.create(
        tmp_path / "two.zarr", np.zeros((4, 8, 8), np.float32), classes=("class1", "class2")
    )
    with pytest.raises(ScanError, match="a class named 'Class2' already"):
        rename_class(scan, 1, "Class2")
    rename_class(scan, 2, "oedema")
    assert Scan.open(scan.path).classes == ("class1", "oedema")
