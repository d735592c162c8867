"""The dock's Annotate section: the class on the brush, "rest of slice is background", and the
shape tools (fill between slices, grow from a click: ``tools.py``)."""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt.tools import KEYS_LINE, ToolsRow
from napari_asymseg.errors import ClearError, error_message
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED, class_of_code, code_of_class

REST_KEY = "Shift-B"
"""The viewer's key for "rest of slice is background" (B alone is napari's preserve labels)."""


class AnnotateSection(QWidget):
    """Pick the class to paint; declare the rest of the current slice background."""

    def __init__(self, dock) -> None:  # the AsymsegDock (dock.py imports this module)
        super().__init__()
        self.dock = dock
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        layout = QHBoxLayout()
        outer.addLayout(layout)
        self.label = QComboBox()
        self.label.setToolTip("the class the brush paints (annotation value in brackets)")
        self.label.currentIndexChanged.connect(self._pick)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.setToolTip(
            "rename the class on the brush (an imported label is named class1, class2, ...); "
            "the paint keeps its values"
        )
        self.rename_button.clicked.connect(self.ask_rename)
        self.rest_button = QPushButton("Rest of slice is background")
        self.rest_button.setToolTip(
            "mark every unannotated voxel of the current slice as background "
            "(Shift+B; undo: Ctrl+Z)"
        )
        self.rest_button.clicked.connect(self.rest_of_slice_background)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.rename_button)
        layout.addWidget(self.rest_button)
        self.tools = ToolsRow(dock)  # fill between slices, grow from a click
        outer.addWidget(self.tools)
        keys = QLabel(
            "Keys: P paint · E erase · [ ] brush size · Shift+B rest of slice is background · "
            f"{KEYS_LINE} · Ctrl+Z undo"
        )
        keys.setWordWrap(True)
        keys.setToolTip("napari's labels keys and the dock's (the canvas must have the focus)")
        outer.addWidget(keys)
        dock.viewer.bind_key(
            REST_KEY, lambda _viewer: self.rest_of_slice_background(), overwrite=True
        )

    def refresh(self, index: int = 1) -> None:
        scan = self.dock.scan
        self.label.blockSignals(True)
        self.label.clear()
        if scan is not None:
            self.label.addItem(f"background [{BACKGROUND}]", BACKGROUND)
            for k, name in enumerate(scan.classes, start=1):
                self.label.addItem(f"{name} [{code_of_class(k)}]", code_of_class(k))
            self.label.setCurrentIndex(index)
        self.label.blockSignals(False)
        self._pick()
        self.tools.follow()

    def ask_rename(self) -> None:
        """Ask for a new name of the class on the brush, then :meth:`rename`."""
        scan, code = self.dock.scan, self.label.currentData()
        if scan is None or code is None or code == BACKGROUND:
            show_error("pick a class (not background) to rename: open a scan first")
            return
        old = scan.classes[class_of_code(int(code)) - 1]
        name, ok = QInputDialog.getText(self, "Rename class", f"new name of {old!r}:", text=old)
        if ok:
            self.rename(class_of_code(int(code)), name)

    def rename(self, number: int, name: str) -> bool:
        """Rename foreground class ``number`` of the open scan (saved at once); True if done."""
        from napari_asymseg.store.classes import rename_class

        scan = self.dock.scan
        if scan is None or not self.dock.writable():
            return False
        old = scan.classes[number - 1] if 0 < number <= len(scan.classes) else str(number)
        try:
            new = rename_class(scan, number, name)
        except ClearError as exc:
            show_error(error_message(exc))
            return False
        self.refresh(index=number)
        self.dock.scan_section.refresh()
        show_info(f"class {old!r} is now {new!r} (its paint is unchanged)")
        return True

    def _pick(self, *_args) -> None:
        layer = self.dock.annotations_layer
        value = self.label.currentData()
        if layer is not None and value is not None:
            layer.selected_label = int(value)

    def rest_of_slice_background(self) -> int:
        """Fill the unannotated voxels of the displayed slice with background (undoable)."""
        layer = self.dock.annotations_layer
        if layer is None:
            show_error("open a scan first")
            return 0
        z = int(self.dock.viewer.dims.current_step[0])
        idx = np.nonzero(np.asarray(layer.data[z]) == NOT_ANNOTATED)
        if idx[0].size == 0:
            return 0
        coords = (np.full(idx[0].shape, z), *idx)
        layer.data_setitem(coords, BACKGROUND)  # through napari's history, so Ctrl+Z undoes it
        return int(idx[0].size)
