"""The Export section: masks to NIfTI / TIFF / OME-Zarr / DICOM SEG, model bundles out and in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from napari_asymseg._qt.progress import RunProgress
from napari_asymseg.errors import ScanError, error_message

_MASK_FILTER = (
    "NIfTI (*.nii.gz *.nii);;TIFF (*.tif *.tiff);;OME-Zarr (*.ome.zarr);;DICOM SEG (*.dcm)"
)
_SUFFIXES = {"NIfTI": ".nii.gz", "TIFF": ".tif", "OME-Zarr": ".ome.zarr", "DICOM SEG": ".dcm"}
_NO_QUESTION = QFileDialog.Option.DontConfirmOverwrite


class ExportSection(QWidget):
    """Export the prediction or the annotations, export the current model, load a bundle."""

    def __init__(self, dock) -> None:
        super().__init__()
        self.dock = dock
        self.worker: Any = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.what = QComboBox()
        self.what.addItems(["prediction", "annotations"])
        self.what.setToolTip("the mask to export (annotations: unannotated voxels export as 0)")
        self.mask_button = QPushButton("Export mask…")
        self.mask_button.setToolTip(
            "NIfTI with the scan's affine, TIFF with its spacing, OME-Zarr (image + labels), or "
            "DICOM SEG referencing the scan's DICOM series"
        )
        self.mask_button.clicked.connect(self._choose_mask)
        row.addWidget(self.what)
        row.addWidget(self.mask_button)
        layout.addLayout(row)
        row = QHBoxLayout()
        self.bundle_button = QPushButton("Export model…")
        self.bundle_button.setToolTip(
            "the current model as a bundle: weights, TorchScript, ONNX, config, metrics "
            "(a name ending in .zip writes one zip file)"
        )
        self.bundle_button.clicked.connect(self._choose_bundle)
        self.load_button = QPushButton("Load model…")
        self.load_button.setToolTip(
            "use a model bundle (folder or zip) or checkpoint as the current model: predict "
            "with it or fine-tune it"
        )
        self.load_button.clicked.connect(self._choose_load)
        row.addWidget(self.bundle_button)
        row.addWidget(self.load_button)
        layout.addLayout(row)
        self.pbar = RunProgress()
        layout.addWidget(self.pbar)

    # -- dialogs -------------------------------------------------------------------------------
    def _choose_mask(self) -> None:
        scan = self.dock.scan
        if scan is None:
            show_error("open a scan first")
            return
        stem = scan.path.name.removesuffix(".zarr")
        default = str(scan.path.with_name(f"{stem}-{self.what.currentText()}.nii.gz"))
        # the dialog's own question would be about the name typed, before the suffix is added:
        # export_mask asks about the file it will actually write
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export mask", default, _MASK_FILTER, options=_NO_QUESTION
        )
        if path:
            kind = chosen.split(" (")[0]
            if not path.endswith((".nii", ".nii.gz", ".tif", ".tiff", ".ome.zarr", ".dcm")):
                path += _SUFFIXES.get(kind, ".nii.gz")
            self.export_mask(path)

    def _choose_bundle(self) -> None:
        model = self.dock.current_model()
        if model is None:
            show_error("no model yet: train one first")
            return
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export model bundle (a folder; .zip for one file)",
            str(model) + "-bundle",
            options=_NO_QUESTION,  # export_bundle asks about what it will write
        )
        if path:
            self.export_bundle(path)

    def _choose_load(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Load model bundle (folder)")
        if not path:
            path, _ = QFileDialog.getOpenFileName(
                self, "Load model bundle (.zip) or checkpoint (.pt)", "", "Models (*.zip *.pt)"
            )
        if path:
            self.load_model(path)

    # -- actions (the tests call these) --------------------------------------------------------
    def export_mask(self, path: str | Path, modality: str | None = None) -> None:
        """Export the chosen mask; a DICOM SEG of a scan not from DICOM asks for the modality
        of the image series written beside it (:mod:`napari_asymseg.io.dicom_seg`).

        Whatever the export would replace (the file, a SEG's image series folder) is replaced
        only once the user confirmed it (:meth:`confirm_replace`).
        """
        from napari_asymseg.io.exporters import export_mask, export_replaces

        scan = self.dock.scan
        if scan is None:
            show_error("open a scan first")
            return
        try:
            existing = export_replaces(scan, path)
        except ScanError as exc:  # a folder in the way that an export never replaces
            show_error(str(exc))
            return
        if existing and not self.confirm_replace(existing):
            return
        if str(path).endswith(".dcm") and not scan.dicom and modality is None:
            modality = self.ask_modality(scan.path.name)
            if modality is None:
                return
        self.dock.save_now()  # the annotations as painted
        what = self.what.currentText()
        self._run(
            export_mask,
            scan,
            path,
            what=what,
            overwrite=True,
            modality=modality,
            done=f"{what} exported to {{}}",
        )

    def confirm_replace(self, paths: list[Path]) -> bool:
        """Ask whether to replace ``paths`` (files or folders that exist); False: keep them."""
        from qtpy.QtWidgets import QMessageBox

        names = " and ".join(p.name + ("/" if p.is_dir() else "") for p in paths)
        text = (
            f"{names} already exist{'s' if len(paths) == 1 else ''} in {paths[0].parent}. "
            f"Replace {'it' if len(paths) == 1 else 'them'}?"
        )
        no, yes = QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes
        return QMessageBox.question(self, "Replace?", text, yes | no, no) == yes

    def ask_modality(self, name: str) -> str | None:
        """CT or MR for the image series a SEG of a non-DICOM scan references (None: cancel)."""
        from qtpy.QtWidgets import QInputDialog

        question = (
            f"{name} was not imported from DICOM: its image is written as a DICOM series beside "
            "the SEG. Which kind of image is it?"
        )
        choice, ok = QInputDialog.getItem(self, "DICOM SEG", question, ["MR", "CT"], 0, False)
        return choice if ok else None

    def export_bundle(self, path: str | Path) -> None:
        from napari_asymseg.model.bundle import export_bundle

        model = self.dock.current_model()
        if model is None:
            show_error("no model yet: train one first")
            return
        path = Path(path)
        zipped = path.suffix == ".zip"
        out = path.with_suffix("") if zipped else path
        target = out.with_suffix(".zip") if zipped else out  # what export_bundle writes
        if target.exists() and not self.confirm_replace([target]):
            return
        self._run(
            export_bundle, model, out, zip=zipped, overwrite=True, done="model bundle written to {}"
        )

    def load_model(self, path: str | Path) -> Path | None:
        """Make a bundle (or checkpoint) the scan's current model: a copy in its model folder."""
        from napari_asymseg.train.runs import adopt_model

        scan = self.dock.scan
        if scan is None:
            show_error("open a scan first")
            return None
        try:
            out = adopt_model(scan, path)
        except ScanError as exc:
            show_error(str(exc))
            return None
        show_info(f"loaded {Path(path).name} as the current model: Predict scan, or fine-tune it")
        self.dock.train_section.runs_row.refresh()
        return out

    def _run(self, func, *args, done: str, **kwargs) -> None:
        if self.worker is not None:
            return
        # errors: our one-line notification below, not superqt's re-raised traceback; the
        # progress is the dock's own (napari's opens its activity panel over the canvas)
        worker: Any = create_worker(func, *args, **kwargs, _ignore_errors=True)
        self.pbar.start(None, "exporting")
        worker.returned.connect(lambda out: show_info(done.format(out)))
        worker.errored.connect(lambda exc: show_error(error_message(exc)))
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()

    def _finished(self) -> None:
        self.worker = None
        self.pbar.finish()
