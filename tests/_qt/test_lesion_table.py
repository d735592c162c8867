"""The Lesions section: one row per lesion, largest first, detected / missed / false against the
scan's reference, a click that goes to the lesion (real napari.Viewer)."""

import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt

from dock_helpers import dock_with_model, empty_dock
from napari_asymseg._qt import lesion_table as lt
from napari_asymseg._qt.dock import AsymsegDock
from napari_asymseg._qt.layers import camera_of, layer_for
from napari_asymseg.evaluate.lesions import lesion_report
from napari_asymseg.store.scan import Scan

pytestmark = pytest.mark.viewer

SPACING = (2.0, 0.5, 0.5)
SHAPE = (20, 32, 32)
BIG = (slice(2, 7), slice(4, 12), slice(4, 12))  # reference lesion, half of it predicted
SMALL = (slice(12, 15), slice(20, 24), slice(20, 24))  # reference lesion, missed
FALSE = (slice(16, 19), slice(2, 5), slice(22, 26))  # predicted, no reference lesion there


def blobs_scan(tmp_path, *, reference: bool) -> Scan:
    """A scan whose stored prediction finds half of one of two reference lesions and adds a
    false one (without ``reference``: the same prediction, no ground truth)."""
    rng = np.random.default_rng(0)
    ref = np.zeros(SHAPE, np.uint8)
    ref[BIG] = ref[SMALL] = 1
    scan = Scan.create(
        tmp_path / "blobs.zarr",
        rng.normal(100, 20, SHAPE).astype(np.float32),
        spacing=SPACING,
        ground_truth=ref if reference else None,
    )
    scan.write_result("prediction", prediction())
    return scan


def prediction() -> np.ndarray:
    pred = np.zeros(SHAPE, np.uint8)
    pred[2:7, 4:8, 4:12] = 1  # half of BIG
    pred[FALSE] = 1
    return pred


def reference() -> np.ndarray:
    ref = np.zeros(SHAPE, np.uint8)
    ref[BIG] = ref[SMALL] = 1
    return ref


@pytest.fixture
def dock(make_napari_viewer):
    return empty_dock(make_napari_viewer)


def opened(dock: AsymsegDock, path, qtbot) -> lt.LesionTable:
    """Open the scan; return the lesion table once its report is in."""
    dock.open_scan(path)
    table = dock.lesion_table
    qtbot.waitUntil(lambda: table.worker is not None or table.rows, timeout=10_000)
    qtbot.waitUntil(lambda: table.worker is None, timeout=30_000)
    return table


def column(table: lt.LesionTable, col: int) -> list[str]:
    return [table.table.item(r, col).text() for r in range(table.table.rowCount())]


def millilitres(table: lt.LesionTable) -> list[float]:
    return [table.table.item(r, lt.VOLUME).key for r in range(table.table.rowCount())]


def click(table: lt.LesionTable, row: int, qtbot) -> None:
    view = table.table
    view.scrollToItem(view.item(row, lt.VOLUME))
    rect = view.visualItemRect(view.item(row, lt.VOLUME))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_with_a_reference_each_lesion_is_detected_missed_or_false(dock, tmp_path, qtbot):
    scan = blobs_scan(tmp_path, reference=True)
    table = opened(dock, scan.path, qtbot)  # a stored prediction: counted when the scan opens
    entry = lesion_report(prediction(), SPACING, 1, reference())[1]
    voxel_ml = np.prod(SPACING) / 1000
    # the reference lesions (detected or missed) and the false one, largest first
    assert column(table, lt.STATUS) == ["detected", "missed", "false"]
    assert millilitres(table) == pytest.approx([320 * voxel_ml, 48 * voxel_ml, 36 * voxel_ml])
    assert sorted(millilitres(table)) == pytest.approx(
        sorted(
            [x["millilitres"] for x in entry["reference"]]
            + [x["millilitres"] for x in entry["predicted"] if x["false"]]
        )
    )
    assert column(table, lt.COVERED) == ["50%", "0%", "—"]  # per-lesion sensitivity
    assert column(table, lt.EXTENT) == ["10 × 4 × 4", "6 × 2 × 2", "6 × 1.5 × 2"]
    assert column(table, lt.NUMBER) == ["1", "2", "3"]
    assert table.table.isColumnHidden(lt.CLASS)  # one class: no column for it
    assert not table.table.isColumnHidden(lt.STATUS)
    assert table.summary.text() == (
        "lesion: 1/2 reference lesions found (1 missed, 0.02 mL), 1 false (0.02 mL); "
        "2 predicted lesions, 0.10 mL; voxel DSC 0.57"
    )
    assert not table.more.isVisibleTo(table)


def test_a_click_goes_to_the_lesion_also_when_sorted(dock, tmp_path, qtbot):
    scan = blobs_scan(tmp_path, reference=True)
    table = opened(dock, scan.path, qtbot)
    viewer = dock.viewer
    for row, z in ((0, 4), (2, 17), (1, 13)):  # BIG, FALSE, SMALL: their centres' slices
        click(table, row, qtbot)
        assert viewer.dims.current_step[0] == z
    centre = table.rows[1].center  # the missed lesion
    world = [c * s for c, s in zip(centre, SPACING, strict=True)]
    click(table, 1, qtbot)
    assert np.allclose(camera_of(viewer).center[-2:], world[-2:])
    # sorted by status, the misses come first; a click still finds its lesion
    table.table.sortItems(lt.STATUS)
    assert column(table, lt.STATUS)[0] == "missed"
    viewer.dims.set_point(0, 0)
    click(table, 0, qtbot)
    assert viewer.dims.current_step[0] == 13


def test_without_a_reference_the_predicted_lesions(dock, tmp_path, qtbot, monkeypatch):
    scan = blobs_scan(tmp_path, reference=False)
    table = opened(dock, scan.path, qtbot)
    predicted = lesion_report(prediction(), SPACING, 1)[1]["predicted"]
    assert table.table.rowCount() == len(predicted) == 2
    assert millilitres(table) == pytest.approx(
        sorted((x["millilitres"] for x in predicted), reverse=True)
    )
    assert table.table.isColumnHidden(lt.STATUS) and table.table.isColumnHidden(lt.COVERED)
    assert table.summary.text() == "lesion: 2 predicted lesions, 0.10 mL"
    # a long list is cut at MAX_ROWS, the largest first, and says how many more there are
    monkeypatch.setattr(lt, "MAX_ROWS", 1)
    table.load()
    qtbot.waitUntil(lambda: table.worker is None and table.table.rowCount() == 1, timeout=30_000)
    assert millilitres(table) == pytest.approx([max(x["millilitres"] for x in predicted)])
    assert table.more.isVisibleTo(table) and table.more.text().startswith("… 1 more")


def test_a_scan_without_a_prediction_says_what_to_do(dock, tmp_path, qtbot):
    bare = Scan.create(tmp_path / "bare.zarr", np.zeros(SHAPE, np.float32), spacing=SPACING)
    dock.open_scan(bare.path)
    qtbot.waitUntil(lambda: layer_for(dock.viewer, bare.path, "risk") is not None)
    table = dock.lesion_table
    assert table.worker is None and table.table.rowCount() == 0
    assert table.summary.text() == "Predict the scan to see its lesions."


def test_every_prediction_fills_the_table_off_the_gui_thread(
    make_napari_viewer, tmp_path, qtbot, monkeypatch
):
    dock = dock_with_model(make_napari_viewer, tmp_path, qtbot, steps=8)
    table, threads = dock.lesion_table, []

    def counted(*args, **kwargs):
        threads.append(threading.current_thread())
        return lt_evaluate_scan(*args, **kwargs)

    lt_evaluate_scan = lt.evaluate_scan
    monkeypatch.setattr(lt, "evaluate_scan", counted)
    dock.train_section.predict_button.click()
    qtbot.waitUntil(lambda: bool(threads), timeout=120_000)
    qtbot.waitUntil(lambda: not dock.train_section.running and table.worker is None, timeout=60_000)
    assert threading.main_thread() not in threads  # the labelling never stalls the dock
    scan = Scan.open(dock.scan.path, mode="r")
    pred = np.asarray(scan.result("prediction")[...])
    entry = lesion_report(pred, scan.spacing, 1, np.asarray(scan.ground_truth[...]))[1]
    rows = [*entry["reference"], *(x for x in entry["predicted"] if x["false"])]
    assert table.table.rowCount() == min(len(rows), lt.MAX_ROWS)
    assert millilitres(table) == pytest.approx(
        sorted((x["millilitres"] for x in rows), reverse=True)[: lt.MAX_ROWS]
    )
    assert table.summary.text().startswith(
        f"lesion: {entry['detected']}/{len(entry['reference'])} reference lesions found"
    )
    assert dock.sections["Lesions"].expanded
