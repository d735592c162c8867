"""The asymseg dock widget: the scan section (open, import, live annotation statistics).

The training, prediction, flag and export sections are added by later issues; each section is
a small widget of its own, so this file stays a table of contents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt.autosave import AnnotationAutosave
from napari_asymseg.store import Scan, ScanError

_IMAGE_FILTER = "Images (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.tif *.tiff)"


def _role(layer) -> tuple[str | None, str | None]:
    meta = getattr(layer, "metadata", {}).get("asymseg") or {}
    return meta.get("scan"), meta.get("role")


def annotation_stats(data: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Annotated voxels per class, foreground fraction and imbalance, from a labels array."""
    counts = np.bincount(np.asarray(data, dtype=np.uint8).ravel(), minlength=len(classes) + 2)
    background = int(counts[1])
    per_class = {name: int(counts[k + 2]) for k, name in enumerate(classes)}
    foreground = sum(per_class.values())
    annotated = background + foreground
    return {
        "annotated": annotated,
        "background": background,
        "per_class": per_class,
        "fg_fraction": foreground / annotated if annotated else 0.0,
        "imbalance": background / foreground if foreground else None,
    }


class ScanSection(QWidget):
    """Open or import a scan; show its geometry and live annotation statistics."""

    def __init__(self, dock: AsymsegDock) -> None:
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
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.import_button)
        layout.addLayout(buttons)
        self.info = QLabel(
            "No scan open. Open a .zarr scan, import an image, or use File > Open Sample > asymseg."
        )
        self.info.setWordWrap(True)
        layout.addWidget(self.info)

    def _choose_scan(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open scan (.zarr folder)")
        if path:
            self.dock.open_scan(path)

    def _choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import image", "", _IMAGE_FILTER)
        if path:
            self.dock.import_image(path)

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
        )


class AsymsegDock(QWidget):
    """The plugin's dock: one scan at a time, its annotations saved automatically."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.scan: Scan | None = None
        self.annotations_layer = None
        self.autosave: AnnotationAutosave | None = None
        layout = QVBoxLayout(self)
        self.scan_section = ScanSection(self)
        layout.addWidget(self.scan_section)
        layout.addStretch(1)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        for layer in list(self.viewer.layers):
            self._attach(layer)

    # -- scans ---------------------------------------------------------------------------------
    def open_scan(self, path: str | Path) -> None:
        """Open a scan in the viewer (through the plugin's reader)."""
        try:
            Scan.open(path, mode="r")  # validate first: a clear message instead of a traceback
            self.viewer.open(str(path), plugin="napari-asymseg")
        except ScanError as exc:
            show_error(str(exc))

    def import_image(self, path: str | Path, out: str | Path | None = None) -> Path | None:
        """Import an image file next to itself as ``NAME.zarr`` and open it."""
        from napari_asymseg.io import import_scan, suffix

        src = Path(path)
        out = Path(out) if out else src.with_name(src.name[: -len(suffix(src))] + ".zarr")
        try:
            import_scan(src, out)
        except ScanError as exc:
            show_error(str(exc))
            return None
        show_info(f"imported {src.name} into {out}")
        self.open_scan(out)
        return out

    def _on_inserted(self, event) -> None:
        self._attach(event.value)

    def _attach(self, layer) -> None:
        path, role = _role(layer)
        if role != "annotations" or path is None:
            return
        try:
            scan = Scan.open(path)
        except ScanError as exc:
            show_error(str(exc))
            return
        self.save_now()
        if self.autosave is not None:
            self.autosave.stop()
        self.scan, self.annotations_layer = scan, layer
        self.autosave = AnnotationAutosave(layer, scan)
        self.autosave.saved.connect(lambda _n: self.scan_section.refresh())
        self.scan_section.refresh()

    def _on_removed(self, event) -> None:
        if event.value is self.annotations_layer:
            self.save_now()
            if self.autosave is not None:
                self.autosave.stop()
            self.autosave, self.annotations_layer = None, None

    def save_now(self) -> int:
        """Write pending annotation edits immediately; returns the number of slices saved."""
        if self.autosave is None:
            return 0
        try:
            return self.autosave.flush(force=True)
        except (ScanError, OSError) as exc:
            show_error(f"could not save annotations: {exc}")
            return 0

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.save_now()
        super().closeEvent(event)
