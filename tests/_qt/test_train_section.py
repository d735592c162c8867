"""Train, predict and cancel from the dock, in a real napari.Viewer (under Xvfb)."""

import pytest

from napari_asymseg._qt.dock import AsymsegDock
from napari_asymseg.config import Config, rule
from napari_asymseg.errors import ScanError
from napari_asymseg.samples.sample_data import sample_scan
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.events import StepEnd

pytestmark = pytest.mark.viewer


@pytest.fixture
def dock(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = AsymsegDock(viewer)
    viewer.window.add_dock_widget(widget, name="asymseg")
    widget.open_scan(sample_scan(tmp_path))
    return widget


def roles(viewer):
    return {layer.metadata["asymseg"]["role"] for layer in viewer.layers}


def test_loss_parameters_follow_the_registry(dock):
    section = dock.train_section
    section.settings.loss.setCurrentText("asym_focal")
    assert {"margin", "gamma"} <= set(section.settings.params.inputs)
    section.settings.loss.setCurrentText("dice")
    assert "margin" not in section.settings.params.inputs
    section.settings.apply_preset()
    cfg = section.config()
    assert cfg.loss.name == "asym_focal" and cfg.loss.params["margin"] == 1.0
    assert cfg.regularizers.adversarial and cfg.regularizers.mixup


def test_forms_take_ranges_and_choices_from_the_config_schema(dock):
    section = dock.train_section
    defaults = Config()
    batch = rule("train", "batch_size")
    assert (
        section.settings.batch.minimum(),
        section.settings.batch.maximum(),
    ) == batch.widget_range()
    assert section.settings.batch.value() == defaults.train.batch_size
    assert (section.settings.steps.minimum(), section.settings.steps.maximum()) == rule(
        "train", "steps"
    ).widget_range()
    assert section.settings.steps.value() == defaults.train.steps
    sam = [section.settings.sam.itemText(i) for i in range(section.settings.sam.count())]
    assert tuple(sam) == rule("regularizers", "sam").choices
    assert section.settings.sam.currentText() == defaults.regularizers.sam
    smoothing = rule("regularizers", "label_smoothing").widget_range()
    assert (section.settings.smoothing.minimum(), section.settings.smoothing.maximum()) == smoothing
    # every value the dock offers passes the rule that training applies
    assert section.settings.seed.value() == defaults.train.seed
    section.settings.batch.setValue(section.settings.batch.maximum())
    section.settings.smoothing.setValue(section.settings.smoothing.maximum())
    section.settings.seed.setValue(7)  # another seed, when a model has not learned the paint
    cfg = section.config()
    assert cfg.train.seed == 7
    assert batch.accepts(cfg.train.batch_size) and cfg.train.batch_size == batch.widget_range()[1]
    assert rule("regularizers", "label_smoothing").accepts(cfg.regularizers.label_smoothing)


def test_train_then_prediction_appears(dock, qtbot):
    section = dock.train_section
    section.settings.steps.setValue(4)
    section.train_button.click()
    assert section.running and not section.train_button.isEnabled()
    qtbot.waitUntil(lambda: "prediction" in roles(dock.viewer), timeout=120_000)
    qtbot.waitUntil(
        lambda: not section.running and "probability" in roles(dock.viewer), timeout=120_000
    )
    assert section.curves.points["dsc"]  # the curves got their validation point
    # the live diagnostics: margin histograms of training patches and held-out slices
    assert sum(section.diagnostics.train) > 0 and sum(section.diagnostics.val) > 0
    assert section.diagnostics.step == 4
    # the verdict line under the curves reads this run's validations
    from napari_asymseg.train.verdict import training_verdict

    assert [h["step"] for h in section.history] == [p[0] for p in section.curves.points["dsc"]]
    assert section.verdict.text() == training_verdict(section.history) != ""
    assert dock.current_model() is not None
    assert Scan.open(dock.scan.path).result("prediction") is not None
    # with the prediction on screen, its quality figure (no more training) and the wait
    assert "quality on unpainted voxels" in section.quality.text()
    assert "Train to figure" in section.quality.text()
    assert (dock.current_model() / "quality.json").is_file()


def test_cancel_acts_within_a_step(dock, qtbot, monkeypatch):
    """Counted, not timed: after Cancel the engine finishes at most the step under way."""
    section = dock.train_section
    steps_done = []  # appended in the worker thread, as the engine yields each step

    def counting_drain(gen):
        for event in gen:
            if isinstance(event, StepEnd):
                steps_done.append(event.step)
            yield event

    monkeypatch.setattr("napari_asymseg._qt.train.drain", counting_drain)
    section.settings.steps.setValue(10_000)
    section.train_button.click()
    qtbot.waitUntil(lambda: section.pbar is not None and section.pbar.n >= 2, timeout=60_000)
    section.cancel_button.click()  # the worker's stop flag is set when this returns
    at_cancel = len(steps_done)
    qtbot.waitUntil(lambda: not section.running, timeout=120_000)  # a hang guard only
    assert len(steps_done) - at_cancel <= 1, steps_done[at_cancel:]
    assert section.train_button.isEnabled() and not section.cancel_button.isEnabled()


def test_rest_of_slice_is_background_is_undoable(dock):
    layer = dock.annotations_layer
    dock.viewer.dims.set_point(0, 0.0)
    before = layer.data[0].copy()
    assert (before == 0).any()
    filled = dock.annotate_section.rest_of_slice_background()
    assert filled == int((before == 0).sum())
    assert (layer.data[0] == 1).all()
    layer.undo()
    assert (layer.data[0] == before).all()


def test_rest_of_slice_has_a_key(dock, qtbot):
    from qtpy.QtCore import Qt

    layer = dock.annotations_layer
    dock.viewer.dims.set_point(0, 0.0)
    canvas = dock.viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_B, Qt.KeyboardModifier.ShiftModifier)
    assert (layer.data[0] == 1).all()  # every unpainted voxel of the slice is background
    assert layer.preserve_labels is False  # B alone (napari's preserve labels) was not fired


def test_train_without_scan_is_a_notification(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    widget = AsymsegDock(viewer)
    shown = []
    monkeypatch.setattr("napari_asymseg._qt.train.show_error", shown.append)
    widget.train_section.train_button.click()
    assert shown and "open a scan first" in shown[0]


def test_patch_widget(dock, monkeypatch):
    section = dock.train_section
    assert section.config().data.patch_size is None
    section.settings.patch.setText("16 64 64")
    assert section.config().data.patch_size == (16, 64, 64)
    section.settings.patch.setText("2 64 64")  # below the schema's smallest patch side
    with pytest.raises(ScanError, match="each at least 4"):
        section.settings.patch_size()
    section.settings.patch.setText("16 x")
    shown = []
    monkeypatch.setattr("napari_asymseg._qt.train.show_error", shown.append)
    section.train_button.click()
    assert shown and "three positive integers" in shown[0] and not section.running


def test_a_time_budget_and_the_time_left(dock, monkeypatch):
    """Settings: minutes instead of steps; the bar re-totals when the run is planned and says
    the time left from the pace so far."""
    section = dock.train_section
    settings = section.settings
    # the default: a planned run within 2 minutes, and the Train button says so
    assert (settings.steps.value(), settings.minutes.value()) == (0, 2.0)
    assert settings.steps.text() == "planned" and settings.minutes.isEnabled()
    assert section.train_button.text() == "Train (about 2 min)"
    settings.minutes.setValue(2.5)
    assert section.config().train.minutes == 2.5 and section.config().train.steps == 0
    assert section.train_button.text() == "Train (about 2.5 min)"
    settings.steps.setValue(50)  # exactly 50 steps: the minutes do not apply
    assert section.train_button.text() == "Train (50 steps)" and not settings.minutes.isEnabled()
    assert section.config().train.steps == 50
    settings.steps.setValue(0)
    assert settings.minutes.isEnabled()
    bar = section.pbar
    monkeypatch.setattr("napari_asymseg._qt.progress.time.perf_counter", lambda: 100.0)
    bar.start(360, "training")
    assert bar.time_left(now=130.0) == ""  # too few steps to tell
    bar.set(25)
    assert bar.time_left(now=150.0) == "about 11:10 left"  # 2 s a step, 335 to go
    bar.retotal(100)
    assert bar.maximum() == 100 and bar.time_left(now=150.0) == "about 2:30 left"
    bar.finish()


def test_the_quality_figure_follows_the_paint(dock, qtbot):
    """After a prediction, saved painting (or a review answer) brings the figure again for the
    voxels still unpainted, in a thread, without a training."""
    import numpy as np

    scan = dock.scan
    truth = np.asarray(scan.ground_truth[...])
    scan.write_result("prediction", truth)  # a prediction as a Train would leave
    section = dock.train_section
    assert section.quality.text() == ""
    layer = dock.annotations_layer
    ann = scan.read_annotations()
    z = next(z for z in range(truth.shape[0]) if truth[z].any() and not ann[z].any())
    yy, xx = np.nonzero(np.ones(truth.shape[1:], bool))
    layer.data_setitem((np.full(yy.size, z), yy, xx), (truth[z].ravel() > 0).astype(np.uint8) + 1)
    dock.autosave.flush(force=True)  # what the autosave's timer does
    qtbot.waitUntil(lambda: "quality on unpainted voxels" in section.quality.text(), timeout=30_000)
    shown = Scan.open(scan.path).read_attr("quality_figure")
    assert shown is not None and shown["note"] in section.quality.toolTip()
