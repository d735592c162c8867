"""The dock's Study section, in a real napari.Viewer (under Xvfb): a study opens, its scans are
listed with their status, Next scan, Mark done, Train on the study's annotated scans, and a
200-scan study opens without blocking the event loop."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from dock_helpers import empty_dock
from napari_asymseg.samples.synthetic import sparse_annotations, synthetic_scan
from napari_asymseg.store.scan import Scan
from napari_asymseg.study.study import STUDY_FILE, Study

pytestmark = pytest.mark.viewer

COLUMN = {"scan": 0, "painted": 1, "lesion": 2, "done": 5}


def make_scan(path, seed: int, shape=(16, 32, 32), painted: bool = True):
    """A small synthetic scan; ``painted``: a few lesion slices and an empty one annotated."""
    syn = synthetic_scan(seed, shape=shape)
    ann = sparse_annotations(syn.ground_truth, 2, seed=seed) if painted else None
    return Scan.create(path, syn.image, spacing=syn.spacing, annotations=ann).path


def make_study(folder, scans: dict[str, bool], shape=(16, 32, 32)) -> Study:
    """A study of scans named by ``scans`` (name -> painted), made by the study's own add."""
    sources = folder / "sources"
    sources.mkdir()
    paths = [
        make_scan(sources / f"{name}.zarr", i, shape, painted)
        for i, (name, painted) in enumerate(scans.items())
    ]
    study = Study.init(folder / "study")
    study.add(paths)
    return study


@pytest.fixture
def study(tmp_path) -> Study:
    return make_study(tmp_path, {"anna": True, "ben": True, "cleo": False})


@pytest.fixture
def dock(make_napari_viewer):
    return empty_dock(make_napari_viewer)


def opened(dock, qtbot, study: Study):
    assert dock.open_study(study.path) is not None
    section = dock.study_section
    qtbot.waitUntil(lambda: section.statuses is not None and section.worker is None)
    return section


def cell(section, row: int, column: str) -> str:
    return section.table.item(row, COLUMN[column]).text()


def test_the_study_lists_its_scans_with_their_status(dock, qtbot, study):
    section = opened(dock, qtbot, study)
    assert dock.sections["Study"].expanded
    rows = section.table.rowCount()
    assert [cell(section, r, "scan") for r in range(rows)] == ["anna", "ben", "cleo"]
    for row, status in enumerate(study.status()):
        assert cell(section, row, "painted") == str(status.painted_slices)
        assert cell(section, row, "lesion") == str(status.lesion_slices)
    assert int(cell(section, 0, "painted")) > 0 and int(cell(section, 1, "lesion")) > 0
    assert cell(section, 2, "painted") == "0"
    assert "3 scans, 2 annotated" in section.info.text()


def test_next_scan_opens_the_unannotated_one(dock, qtbot, study):
    section = opened(dock, qtbot, study)
    section.next_button.click()
    qtbot.waitUntil(lambda: dock.scan is not None)
    assert dock.scan.path.resolve() == study.scan_path("cleo").resolve()
    assert section.selected().name == "cleo"  # its row selected
    assert dock.annotations_layer.editable  # opened as by hand: its painting is saved


def test_a_double_click_opens_the_scan(dock, qtbot, study):
    section = opened(dock, qtbot, study)
    section.table.cellDoubleClicked.emit(1, 0)
    qtbot.waitUntil(lambda: dock.scan is not None)
    assert dock.scan.path.resolve() == study.scan_path("ben").resolve()


def test_a_scan_of_a_study_opened_by_hand_opens_its_study(dock, qtbot, study):
    dock.open_scan(study.scan_path("anna"))
    section = dock.study_section
    qtbot.waitUntil(lambda: section.statuses is not None)
    assert section.study is not None and section.study.path.resolve() == study.path.resolve()


def test_mark_done_is_written_to_the_study(dock, qtbot, study):
    section = opened(dock, qtbot, study)
    section.table.selectRow(2)
    section.done_button.click()
    assert json.loads((study.path / STUDY_FILE).read_text())["scans"][2]["done"] is True
    assert Study.open(study.path).status("cleo")[0].done
    assert cell(section, 2, "done") == "✓"
    section.next_button.click()  # cleo is done: the next is an annotated scan, or none
    qtbot.wait(50)
    assert dock.scan is None or dock.scan.path.name != "cleo.zarr"
    section.table.selectRow(2)
    assert section.done_button.isChecked()
    section.done_button.click()  # undone
    assert not Study.open(study.path).status("cleo")[0].done


def test_painting_updates_the_open_scans_row(dock, qtbot, study):
    section = opened(dock, qtbot, study)
    section.open_row(2)
    qtbot.waitUntil(lambda: dock.annotations_layer is not None)
    layer = dock.annotations_layer
    data = np.asarray(layer.data).copy()
    data[3] = 1
    data[3, 10:14, 10:14] = 2
    layer.data = data
    dock.save_now()
    qtbot.waitUntil(lambda: cell(section, 2, "painted") == "1", timeout=10_000)
    assert cell(section, 2, "lesion") == "1"
    qtbot.waitUntil(lambda: "3 annotated" in section.info.text(), timeout=10_000)


def test_train_learns_from_the_studys_annotated_scans(dock, qtbot, study, monkeypatch):
    learned = []

    def fake_fit(scans, cfg, out, **kwargs):
        learned.append((scans, out))
        yield from ()

    monkeypatch.setattr("napari_asymseg._qt.train.fit", fake_fit)
    section = opened(dock, qtbot, study)
    section.open_row(0)
    qtbot.waitUntil(lambda: dock.scan is not None)
    button = dock.train_section.train_button
    assert button.text().startswith("Train on 2 scans")
    assert "Train on 2 annotated scans of the study" in button.toolTip()
    button.click()
    qtbot.waitUntil(lambda: not dock.train_section.running)
    scans, out = learned[0]
    assert [p.resolve() for p in scans] == [p.resolve() for p in study.annotated()]
    assert {p.name for p in scans} == {"anna.zarr", "ben.zarr"}
    assert out.parent.resolve() == study.models.resolve()  # the study's run, not the scan's


def test_train_on_the_study_then_the_open_scan_is_predicted(dock, qtbot, study):
    """A real run (a few steps): the model learns from the study, the open scan is predicted
    and its row says so."""
    section = opened(dock, qtbot, study)
    section.open_row(1)
    qtbot.waitUntil(lambda: dock.scan is not None)
    train = dock.train_section
    train.settings.steps.setValue(4)
    train.settings.estimate_box.setChecked(False)
    train.train_button.click()
    qtbot.waitUntil(lambda: not train.running and dock.scan.result("prediction") is not None,
                    timeout=180_000)  # fmt: skip
    qtbot.waitUntil(lambda: section.table.item(1, 6).text() == "✓", timeout=10_000)
    assert dock.current_model().parent.resolve() == study.models.resolve()
    assert dock.scan.path.name == "ben.zarr"  # the prediction is the open scan's
    assert (
        study.scan_path("anna").is_dir()
        and Scan.open(study.scan_path("anna")).result("prediction") is None
    )  # only the open scan was predicted


def test_a_scan_outside_the_study_trains_alone(dock, qtbot, study, tmp_path, monkeypatch):
    learned = []

    def fake_fit(scans, cfg, out, **kwargs):
        learned.append(scans)
        yield from ()

    monkeypatch.setattr("napari_asymseg._qt.train.fit", fake_fit)
    opened(dock, qtbot, study)
    alone = make_scan(tmp_path / "alone.zarr", 7)
    dock.open_scan(alone)
    qtbot.waitUntil(lambda: dock.scan is not None)
    button = dock.train_section.train_button
    assert button.text().startswith("Train (")
    button.click()
    qtbot.waitUntil(lambda: not dock.train_section.running)
    assert learned[0] is dock.scan  # as without studies


@pytest.fixture(scope="module")
def big_study(tmp_path_factory) -> Study:
    """200 tiny scans, a third painted."""
    folder = tmp_path_factory.mktemp("big")
    return make_study(folder, {f"p{i:03d}": i % 3 == 0 for i in range(200)}, shape=(8, 16, 16))


def test_a_200_scan_study_opens_without_blocking_the_event_loop(dock, qtbot, big_study):
    """The longest gap between ticks of a 10 ms timer while the study opens and its list fills:
    the status is read in a thread, so the event loop is never held for 100 ms."""
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    section = dock.study_section
    timer.start()
    qtbot.wait(100)  # ticking
    QTimer.singleShot(0, lambda: dock.open_study(big_study.path))
    qtbot.waitUntil(lambda: section.statuses is not None, timeout=60_000)
    qtbot.wait(100)  # the list painted
    timer.stop()
    assert section.table.rowCount() == 200
    gaps = np.diff(ticks)
    print(f"longest gap between 10 ms ticks while opening 200 scans: {gaps.max() * 1000:.0f} ms")
    assert gaps.max() < 0.1


# -- the quality on the next patient (leave-one-scan-out) -----------------------------------------
def next_patient_study(tmp_path, annotated: int = 2) -> Study:
    """Two tiny scans (16x32x32, the engine tests' easy blobs), ``annotated`` of them painted."""
    from engine_helpers import tiny_scan

    sources = tmp_path / "sources"
    for k, name in enumerate(("brain1", "brain2")):
        tiny_scan(sources / f"{name}.zarr", annotate=k < annotated, seed=k, shape=(16, 32, 32))
    made = Study.init(tmp_path / "study")
    made.add([sources / "brain1.zarr", sources / "brain2.zarr"])
    return made


def tiny_settings(monkeypatch, dock, steps: int) -> None:
    """The Train section's settings give the engine tests' tiny network, ``steps`` per run."""
    from engine_helpers import tiny_config

    settings = dock.train_section.settings
    monkeypatch.setattr(settings, "config", lambda classes: tiny_config(steps, val_every=steps))


def status_lines(monkeypatch, dock) -> list[str]:
    """Every line the Train section's status shows from now on."""
    label, shown = dock.train_section.status, []
    set_text = label.setText
    monkeypatch.setattr(label, "setText", lambda text: (shown.append(text), set_text(text)))
    return shown


def test_the_stored_figure_on_the_next_patient_shows_when_a_study_opens(dock, qtbot, study):
    from napari_asymseg.store.atomic import write_json
    from napari_asymseg.train.loso import LOSO, StudyFigure

    line = opened(dock, qtbot, study).next_patient.line
    assert line.isVisibleTo(dock)  # shown once the dock is
    assert "On the next patient</b>: not measured yet (needs 2 annotated scans" in line.text()
    assert "one training per annotated scan" in line.toolTip()
    assert "errs low" in line.toolTip() and "unpainted voxels" in line.toolTip()  # not the scan's
    figure = StudyFigure(0.42, 0.5, 0.36, 2, {"anna.zarr": 0.4, "ben.zarr": 0.45})
    study.models.mkdir(exist_ok=True)  # made by the study's first training
    write_json(study.models / LOSO, figure.as_dict())
    opened(dock, qtbot, study)
    assert "On the next patient</b>: DSC 0.42 (sensitivity 0.50, precision 0.36" in line.text()
    assert "leave-one-scan-out over 2 annotated scans, scans 0.40-0.45" in line.text()
    assert "on the next patient: DSC" not in line.text()  # said once
    assert "quality on unpainted voxels" not in line.text()  # the Train section's, per scan


def test_quality_on_next_patient_runs_leave_one_scan_out(dock, qtbot, tmp_path, monkeypatch):
    """A real leave-one-scan-out (2 folds of 4 steps) through the Train section's worker."""
    from napari_asymseg.train.loso import LOSO, read_study_figure

    made = next_patient_study(tmp_path)
    tiny_settings(monkeypatch, dock, steps=4)
    section, train = opened(dock, qtbot, made), dock.train_section
    shown = status_lines(monkeypatch, dock)
    button = section.next_patient.button
    assert button.isEnabled()
    button.click()
    assert train.running and not button.isEnabled() and not train.train_button.isEnabled()
    assert train.cancel_button.isEnabled() and train.pbar.total == 2 * 4  # folds x steps
    qtbot.waitUntil(lambda: not train.running, timeout=180_000)
    assert train.pbar.n == 2 * 4  # the bar advanced every step of both folds
    left = [s for s in shown if " left out: DSC " in s]
    assert [s.split(":")[0] for s in left] == ["scan 1 of 2 left out", "scan 2 of 2 left out"]
    stored = read_study_figure(made.models)
    assert (made.models / LOSO).is_file() and stored is not None and stored.scans == 2
    text = section.next_patient.line.text()
    assert f"DSC {stored.dsc:.2f}" in text and "over 2 annotated scans" in text
    assert button.isEnabled() and train.train_button.isEnabled()


def test_cancel_stops_quality_on_next_patient(dock, qtbot, tmp_path, monkeypatch):
    from napari_asymseg.train.loso import LOSO

    made = next_patient_study(tmp_path)
    tiny_settings(monkeypatch, dock, steps=500)
    section, train = opened(dock, qtbot, made), dock.train_section
    section.next_patient.button.click()
    qtbot.waitUntil(lambda: train.pbar.n >= 1, timeout=60_000)
    train.cancel_button.click()
    qtbot.waitUntil(lambda: not train.running, timeout=60_000)
    assert train.pbar.n < 2 * 500 and not (made.models / LOSO).exists()
    assert "not measured yet" in section.next_patient.line.text()  # the figure kept before
    assert section.next_patient.button.isEnabled()


def test_one_annotated_scan_is_one_notification(dock, qtbot, tmp_path, monkeypatch):
    from napari_asymseg.train.loso import LOSO

    made = next_patient_study(tmp_path, annotated=1)
    shown: list[str] = []
    monkeypatch.setattr("napari_asymseg._qt.train.show_error", shown.append)
    section, train = opened(dock, qtbot, made), dock.train_section
    section.next_patient.button.click()
    qtbot.waitUntil(lambda: not train.running, timeout=30_000)
    assert len(shown) == 1 and "needs 2 annotated scans" in shown[0] and "\n" not in shown[0]
    assert not (made.models / LOSO).exists()
    assert "not measured yet" in section.next_patient.line.text()


def test_quality_on_next_patient_waits_for_a_training(dock, qtbot, study, monkeypatch):
    """While Train runs the button is off, and back on once the training ends."""
    import threading

    from napari_asymseg.train.events import Notice

    release = threading.Event()

    def slow_fit(scans, cfg, out, **kwargs):
        while not release.is_set():
            yield Notice("training", warn=False)
            time.sleep(0.02)

    monkeypatch.setattr("napari_asymseg._qt.train.fit", slow_fit)
    section = opened(dock, qtbot, study)
    section.open_row(0)
    qtbot.waitUntil(lambda: dock.scan is not None)
    button, train = section.next_patient.button, dock.train_section
    assert button.isEnabled()
    train.train_button.click()
    assert train.running and not button.isEnabled()
    release.set()
    qtbot.waitUntil(lambda: not train.running, timeout=30_000)
    assert button.isEnabled()
