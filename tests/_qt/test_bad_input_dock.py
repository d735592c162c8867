"""The bad-input table, through the dock: each row is one notification and changes nothing.

The rows reuse the CLI table's builders (tests/test_bad_input.py); here the entry points are
the dock's Open scan, Import image, Train and Predict, and a full disk under autosave.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest

import dicom_helpers as dh
from dock_helpers import import_and_wait
from engine_helpers import tiny_config, tiny_scan
from napari_asymseg._qt.dock import AsymsegDock
from napari_asymseg.store.lock import ScanLock
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.loop import fit
from test_bad_input import (
    annotate,
    corrupt_checkpoint,
    corrupt_chunk,
    corrupt_metadata,
    fail_writes_below,
    nifti,
    plain_zarr,
    snapshot,
    truncated_nifti,
    write,
)

pytestmark = [pytest.mark.viewer, pytest.mark.slow]

MODULES = ("dock", "scan_section", "train", "export", "review")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("dock-workspace")
    scan = tiny_scan(root / "scan.zarr")
    ScanLock(scan.path, "test").release()
    list(fit(scan, tiny_config(steps=4, val_every=4), root / "model"))
    return root


@pytest.fixture
def setup(base, tmp_path, make_napari_viewer, monkeypatch):
    work = tmp_path / "w"
    shutil.copytree(base, work)
    shown: list[str] = []
    for module in MODULES:
        monkeypatch.setattr(f"napari_asymseg._qt.{module}.show_error", shown.append)
    viewer = make_napari_viewer()
    dock = AsymsegDock(viewer)
    viewer.window.add_dock_widget(dock, name="asymseg")
    return work, dock, shown


def open_it(dock, qtbot, path):
    dock.open_scan(path)


def train(dock, qtbot, scan_path):
    dock.open_scan(scan_path)
    dock.train_section.settings.steps.setValue(2)
    dock.train_section.start()
    qtbot.waitUntil(lambda: not dock.train_section.running, timeout=60_000)


def predict(dock, qtbot, model):
    model = Path(model)
    dock.open_scan(model.parent / "scan.zarr")
    dock.current_model = lambda: model
    dock.train_section.predict()
    qtbot.waitUntil(lambda: not dock.train_section.running, timeout=60_000)


# row -> (build the bad input, the dock action on it, a fragment of the notification)
ROWS = {
    "open missing scan": (lambda w: w / "missing.zarr", open_it, "no scan at"),
    "open corrupt metadata": (corrupt_metadata, open_it, "zarr group"),
    "open plain zarr": (plain_zarr, open_it, "not an asymseg scan"),
    "open an image file": (
        lambda w: nifti(w, np.zeros((5, 6, 7), "f4"), "i.nii.gz"),
        open_it,
        "is a file, not a scan (a .zarr folder): import it first, with Import image…",
    ),
    "open a plain folder": (lambda w: w, open_it, "a folder but not a scan"),
    "open damaged chunk": (corrupt_chunk, open_it, "damaged"),
    "import 2D image": (
        lambda w: nifti(w, np.zeros((5, 6), "f4"), "flat.nii.gz"),
        lambda d, q, path: import_and_wait(d, q, path),
        "3D volume",
    ),
    "import NaN image": (
        lambda w: nifti(w, np.full((5, 6, 7), np.nan, "f4"), "n.nii.gz"),
        lambda d, q, path: import_and_wait(d, q, path),
        "NaN",
    ),
    "import truncated NIfTI": (
        truncated_nifti,
        lambda d, q, path: import_and_wait(d, q, path),
        "cannot read",
    ),
    "import garbage": (
        lambda w: write(w, "g.nii.gz", b"x"),
        lambda d, q, path: import_and_wait(d, q, path),
        "cannot read",
    ),
    "import DICOM with a missing slice": (
        lambda w: dh.missing_slice(w / "dcm"),
        lambda d, q, path: import_and_wait(d, q, path),
        "slice(s) missing",
    ),
    "import DICOM gantry tilt": (
        lambda w: dh.gantry_tilt(w / "dcm"),
        lambda d, q, path: import_and_wait(d, q, path),
        "gantry tilt",
    ),
    "train no foreground": (lambda w: annotate(w, 1), train, "no foreground"),
    "train no background": (lambda w: annotate(w, 2), train, "no background"),
    "predict corrupt model": (corrupt_checkpoint, predict, "checkpoint"),
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_bad_input_in_the_dock_is_a_notification(row, setup, qtbot):
    work, dock, shown = setup
    build, act, fragment = ROWS[row]
    target = build(work)
    before = snapshot(work)
    act(dock, qtbot, target)
    qtbot.wait(50)
    assert len(shown) == 1, f"{row}: {shown}"
    assert fragment.lower() in shown[0].lower(), f"{row}: {shown[0]}"
    assert "Traceback" not in shown[0]
    assert snapshot(work) == before, row


def test_a_full_disk_under_autosave_loses_no_painting(setup, qtbot, monkeypatch):
    """Autosave on a full disk: one notification, the painting stays in the layer and is
    saved once there is room again."""
    work, dock, shown = setup
    dock.open_scan(work / "scan.zarr")
    layer = dock.annotations_layer
    autosave = dock.autosave
    fail_writes_below(monkeypatch, work / "scan.zarr" / "annotations", errno.ENOSPC)
    layer.data_setitem((np.array([0]), np.array([1]), np.array([1])), 2)
    for _ in range(3):  # three timer ticks: reported once, retried each time
        autosave._timed_flush()
    assert len(shown) == 1 and "no space left" in shown[0]
    assert Scan.open(work / "scan.zarr", mode="r").annotations[0, 1, 1] == 0
    assert layer.data[0, 1, 1] == 2
    monkeypatch.undo()
    autosave._timed_flush()
    assert Scan.open(work / "scan.zarr", mode="r").annotations[0, 1, 1] == 2
