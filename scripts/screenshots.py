"""Re-make the user guide's screenshots from the real viewer.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

Each picture is the napari window as a user sees it, driven through the dock's own buttons:
the sample scan as it opens, then the progress bar and the live curves half-way through
training, then after a click on Train (default settings) and the automatic prediction that
follows, then the Review section with a suspected false alarm selected and after Not lesion,
then the Lesions table with the largest missed lesion selected, then the quality estimate on
the unpainted slices once its cross-validation has run (under the Overfitting check tab), then
a second, shorter run and what the dock says of it (the runs list, the verdict). The shape
tools' previews (fill between slices, grow from a click) are taken on the sample as it opens;
``--tools`` takes only those two (a few seconds). Last, a study of four synthetic scans opened
in the Study section, with Next scan clicked; ``--study`` takes only that one.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> int:
    os.environ.setdefault("ASYMSEG_HOME", tempfile.mkdtemp(prefix="asymseg-shots-"))
    import imageio.v3 as iio
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_asymseg._qt.demo import open_viewer

    DOCS.mkdir(parents=True, exist_ok=True)
    viewer, dock = open_viewer()
    viewer.window._qt_window.resize(1500, 1000)
    for _ in range(30):
        QApplication.processEvents()

    def shot(name: str) -> None:
        out = DOCS / name
        iio.imwrite(out, viewer.screenshot(canvas_only=False, flash=False))
        print(f"wrote {out}")

    if "--tools" in sys.argv:  # only the shape tools' previews
        tools_shots(viewer, dock, shot)
        viewer.close()
        return 0
    if "--study" in sys.argv:  # only the study
        study_shot(dock, shot)
        viewer.close()
        return 0
    shot("viewer-sample.png")
    tools_shots(viewer, dock, shot)

    section = dock.train_section
    loop = QEventLoop()
    watcher = QTimer()
    watcher.setInterval(200)
    live: list[bool] = []

    def watch() -> None:
        if section.running and section.diagnostics.step >= 60 and not live:
            # mid-training: the progress bar and the live curves, scrolled into view
            live.append(True)
            dock.scroll_area.ensureWidgetVisible(section.plots, 0, 10)
            QApplication.processEvents()
            shot("viewer-diagnostics.png")
            dock.scroll_area.verticalScrollBar().setValue(0)
        if not section.running and dock.current_model():
            loop.quit()

    watcher.timeout.connect(watch)
    section.train_button.click()
    watcher.start()
    loop.exec()
    watcher.stop()
    # show an unannotated slice, where the model had to find the lesions on its own
    annotated = (dock.annotations_layer.data > 0).any(axis=(1, 2))
    truth = dock.scan.ground_truth[...] > 0
    area = truth.sum(axis=(1, 2)) * ~annotated
    z = int(area.argmax())
    viewer.dims.set_point(0, z * dock.scan.spacing[0])
    dock.annotations_layer.visible = False
    for _ in range(30):
        QApplication.processEvents()
    shot("viewer-trained.png")

    review = dock.review_section
    while review.worker is not None or not review.items:  # the queue follows the prediction
        QApplication.processEvents()
        time.sleep(0.05)
    dock.annotations_layer.visible = True
    # the suspected false alarm that is least lesion (by the sample's ground truth): the one a
    # clinician rejects
    import numpy as np

    from napari_asymseg.review import queue as rq

    prediction = np.asarray(dock.scan.result("prediction")[...])
    alarms = [
        (float(truth[i.box][rq.region_of(i, prediction, dock.annotations_layer.data)].mean()), k)
        for k, i in enumerate(review.items)
        if i.kind == rq.FALSE_ALARM and not i.answered
    ]
    row = min(alarms)[1] if alarms else 0
    review.list.setCurrentRow(row)  # jumps to it
    bar = dock.scroll_area.verticalScrollBar()
    bar.setValue(bar.maximum())  # the Review section is at the bottom of the dock
    for _ in range(30):
        QApplication.processEvents()
    shot("viewer-review.png")
    if alarms:
        review.tune_after.setValue(0)  # the picture of the answer, not of a fine-tune
        review.not_lesion_button.click()
        review.list.setCurrentRow(row)  # back on the answered item, to show what was written
        for _ in range(30):
            QApplication.processEvents()
        shot("viewer-review-rejected.png")
        review.undo_button.click()  # the sample's annotations as they were

    # the Lesions table: the reference lesions found and missed, the false ones; the largest
    # missed lesion (or the largest lesion) selected, which shows it in the viewer
    from napari_asymseg._qt.lesion_table import STATUS, VOLUME

    lesions = dock.lesion_table
    while lesions.worker is not None or lesions.report is None:
        QApplication.processEvents()
        time.sleep(0.05)
    statuses = [lesions.table.item(r, STATUS).text() for r in range(lesions.table.rowCount())]
    lesions.table.setCurrentCell(statuses.index("missed") if "missed" in statuses else 0, VOLUME)
    dock.scroll_area.ensureWidgetVisible(lesions.table, 0, 10)
    for _ in range(30):
        QApplication.processEvents()
    shot("viewer-lesions.png")

    # the quality estimate (cross-validation over the painted slices) follows the prediction
    while not section.quality.text().startswith(("estimated DSC", "quality on unpainted")):
        QApplication.processEvents()
        time.sleep(0.05)
    # the Overfitting check tab, the quality line under it and the Review
    section.plots.setCurrentWidget(section.diagnostics)
    dock.scroll_area.ensureWidgetVisible(section.quality, 0, 10)
    for _ in range(30):
        QApplication.processEvents()
    shot("viewer-quality.png")

    # a second, shorter run: scored against run 1 on its own held-out slices, kept only if
    # better; the runs drop-down, the status line and the verdict under the curves
    while section.running:
        QApplication.processEvents()
        time.sleep(0.05)
    section.plots.setCurrentWidget(section.curves)
    section.settings.steps.setValue(40)
    section.settings.estimate_box.setChecked(False)
    section.train_button.click()
    while section.running:
        QApplication.processEvents()
        time.sleep(0.05)
    dock.scroll_area.ensureWidgetVisible(section.runs_row, 0, 10)
    dock.scroll_area.ensureWidgetVisible(section.verdict, 0, 10)
    for _ in range(30):
        QApplication.processEvents()
    shot("viewer-runs.png")
    study_shot(dock, shot)
    viewer.close()
    return 0


def study_shot(dock, shot) -> None:
    """A study of four synthetic scans (three painted on a few slices, the first marked done)
    opened in the Study section, then Next scan: the unpainted one opens."""
    from qtpy.QtWidgets import QApplication

    from napari_asymseg.samples.synthetic import sparse_annotations, synthetic_scan
    from napari_asymseg.store.scan import Scan
    from napari_asymseg.study.study import Study

    folder = Path(tempfile.mkdtemp(prefix="asymseg-study-shot-"))
    sources = []
    for i in range(4):
        syn = synthetic_scan(10 + i, shape=(32, 112, 112), polarity=1)
        ann = sparse_annotations(syn.ground_truth, 3, seed=i) if i < 3 else None
        path = folder / "sources" / f"patient{i + 1}.zarr"
        sources.append(Scan.create(path, syn.image, spacing=syn.spacing, annotations=ann).path)
    study = Study.init(folder / "flair-study")
    study.add(sources)
    study.set_done("patient1")
    section = dock.study_section
    dock.open_study(study.path)
    while section.statuses is None or section.worker is not None:
        QApplication.processEvents()
        time.sleep(0.05)
    section.next_button.click()
    while dock.scan is None or dock.scan.path.name != "patient4.zarr" or section.worker:
        QApplication.processEvents()
        time.sleep(0.05)
    dock.scroll_area.verticalScrollBar().setValue(0)  # the Study section is at the top
    for _ in range(30):
        QApplication.processEvents()
    shot("viewer-study.png")


def tools_shots(viewer, dock, shot) -> None:
    """The fill preview on the filled slice with the most voxels, then the grow preview of a
    click on the largest reference lesion of an unpainted slice; both discarded after."""
    import numpy as np
    from qtpy.QtWidgets import QApplication
    from scipy import ndimage as ndi

    tools, spacing = dock.annotate_section.tools, dock.scan.spacing

    def settle() -> None:
        for _ in range(30):
            QApplication.processEvents()

    tools.fill()
    if tools.proposal is not None:
        per = (tools.proposal.codes != 0).sum(axis=(1, 2))
        z = tools.proposal.box[0].start + int(per.argmax())
        viewer.dims.set_point(0, z * spacing[0])
        settle()
        shot("viewer-fill.png")
    tools.discard()
    truth = np.asarray(dock.scan.ground_truth[...]) > 0
    painted = (np.asarray(dock.annotations_layer.data) != 0).any(axis=(1, 2))
    z = int((truth.sum(axis=(1, 2)) * ~painted).argmax())
    depth = ndi.distance_transform_edt(truth[z])
    y, x = np.unravel_index(int(depth.argmax()), depth.shape)
    tools.grow.button.click()  # grow mode, as the user turns it on
    tools.grow.click((z, int(y), int(x)))
    viewer.dims.set_point(0, z * spacing[0])
    settle()
    shot("viewer-grow.png")
    tools.discard()
    tools.grow.button.click()
    settle()


if __name__ == "__main__":
    sys.exit(main())
