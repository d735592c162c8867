"""The user guide's DICOM picture: a real MR imported from a DICOM series, predicted, in the dock.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/dicom_screenshot.py MODEL

brain1 (built by ``benchmarks/real_scans.py`` under its work folder) is written as a DICOM MR
series, imported through the dock's own import (the Scan section then names the series), its
reference mask kept for the lesion report. It is predicted by ``MODEL`` (a model folder, e.g.
the initial model of ``real_scans.py`` painted on 2 slices), and the Lesions table is shown
with its largest detected lesion selected, on a slice nobody painted.
Writes docs/images/viewer-dicom-lesions.png.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]


def main(model: str, work: Path) -> None:
    os.environ.setdefault("ASYMSEG_HOME", tempfile.mkdtemp(prefix="asymseg-shots-"))
    import imageio.v3 as iio
    import napari
    import nibabel as nib
    import numpy as np
    from qtpy.QtWidgets import QApplication

    import dicom_helpers as dh
    from napari_asymseg._qt.dock import AsymsegDock
    from napari_asymseg.infer.predict import predict
    from napari_asymseg.io.dicom_write import Identity, write_series
    from napari_asymseg.io.importers import AXES_SWAP, import_scan
    from napari_asymseg.store.scan import Scan
    from real_scans import PAINTED, build_case, paint

    src = Scan.open(build_case("brain1", work), mode="r")
    root = Path(tempfile.mkdtemp(prefix="asymseg-dicom-shot-"))
    dcm = root / "brain1_T1"
    ident = Identity(series_description="T1 post-contrast (brain1)", series_number=5)
    write_series(np.asarray(src.image[...]), src.affine, dcm, modality="MR", identity=ident)
    # the reference on the DICOM grid (sorted along the slice normal), for the lesion report
    probe = import_scan(dcm, root / "probe.zarr")
    truth = dh.to_grid(np.asarray(src.ground_truth[...]), src.affine, probe.affine, probe.shape)
    img = nib.Nifti1Image(truth.transpose(2, 1, 0).astype(np.uint8), probe.affine[:, AXES_SWAP])
    nib.save(img, root / "truth.nii.gz")
    shutil.rmtree(root / "probe.zarr")
    scan = import_scan(
        dcm, root / "brain1_T1.zarr", truth=root / "truth.nii.gz", classes=["lesion"]
    )
    # the benchmark protocol's painted slices (brain1: lesion on 12 and 16, background on 5)
    paint(scan, "brain1", _on_grid(PAINTED["brain1"], src, scan))
    list(predict(scan, model))

    viewer = napari.Viewer()
    dock = AsymsegDock(viewer)
    viewer.window.add_dock_widget(dock, name="asymseg")
    viewer.window._qt_window.resize(1600, 1000)
    dock.open_scan(scan.path)
    table = dock.lesion_table
    t0 = time.time()
    while (table.worker is not None or table.report is None) and time.time() - t0 < 60:
        QApplication.processEvents()
        time.sleep(0.05)
    for title in ("Annotate", "Train and predict", "Review"):
        dock.sections[title].set_expanded(False)
    statuses = [table.table.item(r, 2).text() for r in range(table.table.rowCount())]
    row = statuses.index("detected") if "detected" in statuses else 0
    table.table.setCurrentCell(row, 3)
    table.table.cellClicked.emit(row, 3)
    for _ in range(40):
        QApplication.processEvents()
        time.sleep(0.02)
    out = ROOT / "docs" / "images" / "viewer-dicom-lesions.png"
    iio.imwrite(out, viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {out}: {table.summary.text()}; slice {viewer.dims.current_step[0]}")
    viewer.close()


def _on_grid(slices, src, scan):
    """The protocol's slice numbers of ``src`` as slice numbers of ``scan``: the same voxels,
    whose z may run the other way (DICOM sorts along the slice normal)."""
    import numpy as np

    m = np.linalg.inv(src.affine) @ scan.affine  # scan index -> src index; z stays z here
    where = {round(m[0, 0] * k + m[0, 3]): k for k in range(scan.shape[0])}
    return tuple(tuple(where[k] for k in group) for group in slices)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    default_work = ROOT / "benchmarks" / "results" / "real_scans-work"
    main(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else default_work)
