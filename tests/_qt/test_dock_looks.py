"""What the dock shows: the overlays' legend and switches, folding sections, nothing clipped,
plots with their own scales, and a progress bar that leaves napari's activity panel shut."""

import pytest
from napari.utils import progress
from qtpy.QtWidgets import QAbstractButton, QApplication, QLineEdit

from napari_asymseg._qt.dock import AsymsegDock
from napari_asymseg._qt.layers import layer_for
from napari_asymseg._qt.plots import CurvesWidget
from napari_asymseg.io import palette
from napari_asymseg.samples.sample_data import sample_scan

pytestmark = pytest.mark.viewer


@pytest.fixture
def dock(make_napari_viewer, tmp_path, qtbot):
    viewer = make_napari_viewer(show=True)
    widget = AsymsegDock(viewer)
    viewer.window.add_dock_widget(widget, name="asymseg")
    widget.open_scan(sample_scan(tmp_path))
    qtbot.waitUntil(lambda: layer_for(viewer, widget.scan.path, "risk") is not None)
    qtbot.waitUntil(lambda: widget.overlays.buttons["risk"].isEnabled())
    return widget


def test_the_legend_switches_the_overlays_and_follows_the_layer_list(dock):
    viewer, path = dock.viewer, dock.scan.path
    risk, button = layer_for(viewer, path, "risk"), dock.overlays.buttons["risk"]
    assert button.isChecked() and risk.visible
    button.click()  # one click hides the heatmap
    assert not risk.visible and not button.isChecked()
    risk.visible = True  # the eye in napari's layer list: the legend follows
    assert button.isChecked()
    for role in ("annotations", "prediction", "flags"):
        assert dock.overlays.buttons[role].isChecked() == layer_for(viewer, path, role).visible


def test_overlays_keep_the_paint_readable(dock):
    viewer, path = dock.viewer, dock.scan.path
    assert layer_for(viewer, path, "prediction").contour >= 1  # an outline over the paint
    risk = layer_for(viewer, path, "risk")
    assert risk.blending == "translucent"  # additive turned red paint pale yellow
    assert risk.colormap.map([0.0])[0][3] == 0.0  # no risk: fully transparent
    annotations = dock.annotations_layer
    assert tuple(annotations.colormap.map([2])[0][:3]) == pytest.approx(
        palette.rgba(palette.PAINT)[:3], abs=0.01
    )
    assert viewer.dims.axis_labels[0] == "z"  # napari's default label was "-3"


def test_settings_fold_and_nothing_is_clipped_at_the_default_width(dock, qtbot):
    section = dock.train_section
    assert not section.settings_box.expanded and not section.settings.isVisible()
    assert section.train_button.isVisible()  # the next step, without opening anything
    section.settings_box.header.click()
    assert section.settings.isVisible()
    QApplication.processEvents()
    assert dock.scroll_area.horizontalScrollBar().maximum() == 0  # nothing wider than the dock
    for button in dock.findChildren(QAbstractButton):
        if button.isVisible() and button.text():
            assert button.width() >= button.minimumSizeHint().width(), button.text()
    for edit in dock.findChildren(QLineEdit):
        if edit.isVisible() and edit.placeholderText():
            text = edit.fontMetrics().horizontalAdvance(edit.placeholderText())
            assert text < edit.width() - 8, edit.placeholderText()  # the hint is not cut
    dock.sections["Review"].header.click()
    assert not dock.review_section.isVisible()
    for text in ("Shift+B rest of slice", "Shift+N next / previous"):
        assert any(text in label.text() for label in dock.findChildren(type(section.status)))


def test_each_curve_has_its_own_scale_and_an_axis_of_steps(qtbot):
    curves = CurvesWidget()
    qtbot.addWidget(curves)
    for step, loss, shift in ((20, 0.9, 0.5), (40, 0.4, 2.5)):
        curves.add(step, {"dsc": 0.5, "train_loss": loss, "val_loss": loss, "logit_shift": shift})
    curves.show()
    qtbot.waitExposed(curves)
    QApplication.processEvents()  # pyqtgraph fits its auto ranges when it paints
    scores, losses, gap = curves.plots
    assert scores.viewRange()[1] == pytest.approx([0.0, 1.0], abs=0.05)  # fixed 0..1
    low, high = losses.viewRange()[1]
    assert low <= 0.4 and 0.9 <= high < 2.0  # the losses' own scale, not the gap's
    low, high = gap.viewRange()[1]
    assert low <= 0.5 and high >= 2.5
    assert gap.getAxis("bottom").labelText == "training step"
    assert scores.viewRange()[0][1] >= 40  # the step axis reaches the last validation
    assert "Dice" in scores.toolTip() and "Li et al." in gap.toolTip()  # the technical terms


def test_training_progress_stays_in_the_dock(dock, qtbot):
    section = dock.train_section
    section.settings.steps.setValue(6)
    section.settings.estimate_box.setChecked(False)
    seen: list[tuple[bool, int]] = []
    original = section._on_event

    def on_event(event):
        original(event)
        seen.append((section.pbar.isVisible(), len(progress._all_instances)))

    section._on_event = on_event
    section.train_button.click()
    qtbot.waitUntil(lambda: not section.running, timeout=120_000)
    qtbot.waitUntil(lambda: dock.review_section.worker is None, timeout=120_000)
    assert seen and all(visible for visible, _ in seen)
    assert all(n == 0 for _, n in seen)  # no napari progress: its activity panel stays shut
    assert not section.pbar.isVisible()
