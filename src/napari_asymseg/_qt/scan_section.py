"""The Scan section: open a scan, import an image file or a DICOM series, show the geometry and
live annotation statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt.progress import RunProgress
from napari_asymseg.errors import ClearError, error_message
from napari_asymseg.train.data import annotation_stats

_IMAGE_FILTER = "Images (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.tif *.tiff *.dcm)"


class ScanSection(QWidget):
    """Open or import a scan; show its geometry and live annotation statistics."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        self.open_button = QPushButton("Open scan…")
        self.open_button.setToolTip("Open a scan folder (.zarr)")
        self.open_button.clicked.connect(self._choose_scan)
        self.import_button = QPushButton("Import image…")
        self.import_button.setToolTip("Import NIfTI, NRRD, MHA or TIFF into a new scan (.zarr)")
        self.import_button.clicked.connect(self._choose_import)
        self.dicom_button = QPushButton("Import DICOM…")
        self.dicom_button.setToolTip(
            "Import a folder holding a DICOM series (CT, MR, PET) into a new scan (.zarr); "
            "the scan remembers the series, so a DICOM SEG export references it"
        )
        self.dicom_button.clicked.connect(self._choose_dicom)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.dicom_button)
        layout.addLayout(buttons)
        self.info = QLabel(
            "No scan open. Open a .zarr scan, import an image, or use File > Open Sample > asymseg."
        )
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        self.worker: Any = None  # the import under way
        self.pbar = RunProgress()
        layout.addWidget(self.pbar)

    def _choose_scan(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open scan (.zarr folder)")
        if path:
            self.dock.open_scan(path)

    def _choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import image", "", _IMAGE_FILTER)
        if path:
            self.dock.import_image(path)

    def _choose_dicom(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Import a DICOM series (its folder)")
        if path:
            self.dock.import_image(path)

    def import_image(
        self, path: str | Path, out: str | Path | None = None, series: str | None = None
    ) -> Path | None:
        """Import an image file or DICOM folder next to itself as ``NAME.zarr``, in a thread
        (a 300-slice 512² CT takes ~10 s), then open it; returns the scan's path once the
        import has started (``worker`` is set until it ends), None when nothing started.

        A folder holding several DICOM series asks which one (:meth:`pick_series`).
        """
        from napari_asymseg.io.importers import import_scan, suffix

        if self.worker is not None:
            show_error("an import is under way: wait for it to finish")
            return None
        src = Path(path)
        stem = src.name[: -len(suffix(src))] if suffix(src) else src.name
        out = Path(out) if out else src.with_name(stem + ".zarr")
        if out.exists():  # never replaced from the dock: it may hold the user's annotations
            choice = self.ask_existing(out)
            if choice == "open":
                self.dock.open_scan(out)
                return out
            if choice != "new":
                return None
            out = free_sibling(out)
        try:
            if series is None and src.is_dir():
                series = self.pick_series(src)
                if series == "":
                    return None  # the user cancelled the choice
        except (ClearError, OSError) as exc:
            show_error(error_message(exc))
            return None
        worker: Any = create_worker(import_scan, src, out, series=series, _ignore_errors=True)
        worker.returned.connect(lambda _scan: self._imported(src, out))
        worker.errored.connect(lambda exc: show_error(error_message(exc)))
        worker.finished.connect(self._import_done)
        self.worker = worker
        self.pbar.start(None, f"importing {src.name}")
        worker.start()
        return out

    def _imported(self, src: Path, out: Path) -> None:
        show_info(f"imported {src.name} into {out}")
        self.dock.open_scan(out)

    def _import_done(self) -> None:
        self.worker = None
        self.pbar.finish()

    def ask_existing(self, out: Path) -> str:
        """What to do when the import's scan exists already: ``"open"`` it, import into a
        ``"new"`` sibling (``NAME-2.zarr``), or ``""`` (cancel). It is never replaced here: it
        may hold annotations (the CLI replaces it with ``--overwrite``)."""
        sibling = free_sibling(out).name
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("The scan exists")
        box.setText(
            f"{out.name} exists already, with any annotations painted on it. Open it, or "
            f"import again as {sibling}?"
        )
        opened = box.addButton("Open it", QMessageBox.ButtonRole.AcceptRole)
        again = box.addButton(f"Import as {sibling}", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(opened)
        box.exec()
        return {id(opened): "open", id(again): "new"}.get(id(box.clickedButton()), "")

    def pick_series(self, folder: Path) -> str | None:
        """The series to import from ``folder``: None when there is one or none (the importer
        then takes it or says why not), ``""`` when the user cancels the choice."""
        from napari_asymseg.io.dicom import find_series, is_dicom_folder

        found = find_series(folder) if is_dicom_folder(folder) else []
        if len(found) < 2:
            return None
        labels = [s.label() for s in found]
        question = f"{folder.name} holds {len(found)} series: import"
        choice, ok = QInputDialog.getItem(self, "Several series", question, labels, 0, False)
        return found[labels.index(choice)].uid if ok else ""

    def refresh(self) -> None:
        scan = self.dock.scan
        if scan is None:
            return
        layer = self.dock.annotations_layer
        stats = annotation_stats(
            layer.data if layer is not None else scan.read_annotations(), scan.classes
        )
        sp = " × ".join(f"{s:g}" for s in scan.spacing)
        per_class = ", ".join(f"{k}: {v:,}" for k, v in stats["per_class"].items())
        imbalance = f"1:{stats['imbalance']:.0f}" if stats["imbalance"] else "—"
        self.info.setText(
            f"<b>{scan.path.name}</b><br>"
            f"shape {scan.shape[0]} × {scan.shape[1]} × {scan.shape[2]} (Z × Y × X), "
            f"spacing {sp} mm, {scan.orientation}<br>"
            f"annotated voxels: {stats['annotated']:,} (background {stats['background']:,}; "
            f"{per_class})<br>"
            f"foreground fraction {stats['fg_fraction']:.2%}, imbalance {imbalance}"
            + _dicom_line(scan.dicom)
        )


def free_sibling(path: Path) -> Path:
    """``NAME-2.zarr`` (or -3, ...): the first sibling of ``path`` that does not exist."""
    stem, n = path.name.removesuffix(".zarr"), 2
    while (path.with_name(f"{stem}-{n}.zarr")).exists():
        n += 1
    return path.with_name(f"{stem}-{n}.zarr")


def _dicom_line(dicom: dict | None) -> str:
    """The source series of a scan imported from DICOM (what a SEG export will reference)."""
    if not dicom:
        return ""
    desc = dicom.get("description") or ""
    what = " ".join(
        x for x in (dicom.get("modality") or "series", f"'{desc}'" if desc else "") if x
    )
    n = len(dicom.get("sop_instance_uids", []))
    return f"<br>from DICOM: {what}, {n} images (a SEG export references them)"
