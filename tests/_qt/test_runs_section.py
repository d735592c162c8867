"""Runs in the dock: a worse or cancelled run never replaces the current model, any run can be
made current again, and a fine-tune starts from the current run (real napari.Viewer)."""

import pytest

from dock_helpers import dock_with_model
from napari_asymseg.train import runs

pytestmark = pytest.mark.viewer


def _train(dock, qtbot, *, steps: int, fine_tune: bool = False) -> None:
    section = dock.train_section
    section.mode.setCurrentIndex(1 if fine_tune else 0)
    section.settings.steps.setValue(steps)
    section.settings.estimate_box.setChecked(False)
    section.train_button.click()
    qtbot.waitUntil(lambda: not section.running, timeout=120_000)


def _use(dock, qtbot, index: int) -> None:
    row = dock.train_section.runs_row
    row.combo.setCurrentIndex(index)
    row.use_button.click()
    qtbot.waitUntil(lambda: not dock.train_section.running, timeout=120_000)


def test_the_current_model_is_kept_until_a_better_or_chosen_run(
    make_napari_viewer, tmp_path, qtbot, monkeypatch
):
    dock = dock_with_model(make_napari_viewer, tmp_path, qtbot, steps=4)
    section, row = dock.train_section, dock.train_section.runs_row
    row.refresh()
    first = dock.current_model()
    assert first is not None and row.combo.count() == 1
    assert (
        row.combo.currentText()
        == "run 1: DSC " + f"{runs.list_runs(dock.scan.path)[0].best_dsc:.2f}, 4 steps ✓"
    )
    # a new run that does not beat the current model on its own held-out slices
    monkeypatch.setattr("napari_asymseg.train.loop.score_other", lambda run, model: 0.99)
    _train(dock, qtbot, steps=2)
    assert dock.current_model() == first
    assert "not better than run 1 (0.99 on the same held-out slices)" in section.status.text()
    second = runs.list_runs(dock.scan.path)[1]
    assert second.baseline_dsc == 0.99 and second.status == runs.FINISHED
    assert row.combo.count() == 2 and row.combo.currentIndex() == 0  # run 1, still current
    # the user prefers run 2 anyway: one click, and the scan is predicted with it
    _use(dock, qtbot, 1)
    assert dock.current_model() == second.path and row.combo.currentText().endswith(" ✓")
    # a cancelled run is kept, never made current, and never called finished
    section.settings.steps.setValue(10_000)
    section.mode.setCurrentIndex(0)
    section.train_button.click()
    qtbot.waitUntil(lambda: section.pbar is not None and section.pbar.n >= 2, timeout=60_000)
    section.cancel_button.click()
    qtbot.waitUntil(lambda: not section.running, timeout=120_000)
    assert dock.current_model() == second.path
    assert "the run cancelled at step" in section.status.text()
    assert "before it saved a model: kept run 2 as current" in section.status.text()
    assert len(runs.list_runs(dock.scan.path)) == 2  # nothing to use: not listed
    # back to run 1 (a revert), and a fine-tune starts from it
    _use(dock, qtbot, 0)
    assert dock.current_model() == first
    _train(dock, qtbot, steps=2, fine_tune=True)
    tuned = runs.list_runs(dock.scan.path)[2]  # the cancelled run saved no model
    assert tuned.summary["kind"] == "fine-tune" and tuned.summary["init"] == str(first)
