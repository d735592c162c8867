"""Grow mode: a click on the canvas proposes the lesion under it in 3D (``annotate.grow``).

While the mode is on (the Grow button, or G over the canvas), the annotations layer is in
pan/zoom mode, so that a click paints nothing, and a click (a press released where it was
pressed, not a drag) adds a click at the voxel under the mouse: inside the lesion, or with
Shift "not this". Each click grows the lesion again from all the clicks so far and replaces the
preview; Accept writes it (provenance *grown*), Discard forgets the clicks. Picking another
napari mode (P paint, E erase, ...) leaves grow mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QPushButton

from napari_asymseg.errors import ScanError, error_message
from napari_asymseg.store.annotations import BACKGROUND, class_of_code
from napari_asymseg.store.provenance import GROWN

GROW_KEY = "g"
NOT_THIS = "Shift"
"""The modifier of a click that says "not this" (Alt drags napari's zoom box)."""
CLICK_SLOP = 4
"""Canvas pixels a press may move and still be a click, not a drag."""


class GrowClicks:
    """The Grow button, its key and the canvas clicks, for the :class:`ToolsRow` ``tools``."""

    def __init__(self, tools) -> None:  # the ToolsRow (tools.py imports this module)
        self.tools = tools
        self.viewer = tools.dock.viewer
        self.clicks: list = []  # annotate.grow.Click, in the order clicked
        self.code = 0  # the annotation code the clicks grow
        self.layer = None  # the annotations layer whose mode grow mode sets
        self.button = QPushButton("Grow")
        self.button.setCheckable(True)
        self.button.setToolTip(
            "grow mode (G): click a lesion to propose it in 3D, Shift+click where it is not; "
            "each click corrects the preview; Shift+A accepts, Shift+D discards"
        )
        self.button.toggled.connect(self.set_on)
        self.viewer.bind_key(GROW_KEY, lambda _viewer: self.toggle(), overwrite=True)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)

    @property
    def on(self) -> bool:
        return self.button.isChecked()

    def toggle(self) -> None:
        self.button.setChecked(not self.on)

    def set_on(self, on: bool) -> None:
        """Grow mode on (clicks grow, the annotations layer in pan/zoom) or off (paint)."""
        if self.button.isChecked() != on:
            self.button.setChecked(on)  # calls back here once
            return
        layer = self.layer
        if layer is None:
            if on:
                self.button.setChecked(False)
                show_error("open a scan first")
            return
        if on:
            layer.mode = "pan_zoom"  # a click grows, never paints
            self.viewer.layers.selection.active = layer
        elif layer.mode == "pan_zoom" and layer.editable:
            layer.mode = "paint"

    def follow(self, layer) -> None:
        """The annotations layer is now ``layer`` (None: no scan): grow mode off, no clicks."""
        if self.layer is not None:
            self.layer.events.mode.disconnect(self._mode_changed)
        self.layer = None
        self.button.setChecked(False)
        self.clear()
        self.layer = layer
        if layer is not None:
            layer.events.mode.connect(self._mode_changed)

    def _mode_changed(self, event=None) -> None:
        if self.on and self.layer is not None and self.layer.mode != "pan_zoom":
            self.button.blockSignals(True)  # the user picked paint, erase...: keep their mode
            self.button.setChecked(False)
            self.button.blockSignals(False)

    def clear(self) -> None:
        self.clicks, self.code = [], 0

    def _on_mouse(self, viewer, event):
        """A napari drag callback: a press released within :data:`CLICK_SLOP` is a click."""
        if not self.on or event.type != "mouse_press" or event.button != 1:
            return
        press, position = np.asarray(event.pos, float), tuple(event.position)
        inside = NOT_THIS not in event.modifiers
        moved = False
        yield
        while event.type == "mouse_move":
            moved = moved or float(np.abs(np.asarray(event.pos) - press).max()) > CLICK_SLOP
            yield
        if not moved:
            self.click_at(position, inside)

    def click_at(self, position: Sequence[float], inside: bool = True) -> int:
        """A click at the world ``position`` of the canvas (see :meth:`click`)."""
        layer = self.layer
        if layer is None:
            show_error("open a scan first")
            return 0
        if self.viewer.dims.ndisplay != 2:
            show_error("grow clicks work in the 2D view: switch back to 2D (Ctrl+Y), then click")
            return 0
        data = np.asarray(layer.world_to_data(position), float)[-3:]
        return self.click(tuple(int(round(c)) for c in data), inside)

    def click(self, voxel: Sequence[int], inside: bool = True) -> int:
        """Add a click at ``voxel`` (z, y, x) of the class on the brush and show the lesion
        grown from all the clicks so far; returns the voxels proposed (0: said why)."""
        from napari_asymseg.annotate.grow import Click, grow

        found = self.tools.target()
        if found is None:
            return 0
        layer, scan = found
        code = int(self.tools.dock.annotate_section.label.currentData() or BACKGROUND)
        if code <= BACKGROUND:
            show_error("put a class (not background) on the brush, then click its lesion")
            return 0
        z, y, x = (int(v) for v in voxel)
        clicks = [*(self.clicks if code == self.code else []), Click(z, y, x, inside=inside)]
        annotations = np.asarray(layer.data)
        try:
            grown = grow(
                scan.image, annotations, clicks, code, spacing=scan.spacing,
                probability=self._probability(scan),
            )  # fmt: skip
        except ScanError as exc:
            show_error(error_message(exc))
            return 0
        self.clicks, self.code = clicks, code
        codes = np.asarray(grown.codes(annotations), np.uint8)
        voxels = int(np.count_nonzero(codes))
        if voxels == 0:
            show_info("the grown lesion is annotated already: nothing to add; click elsewhere")
            return 0
        line = self._line(codes, int(grown.box[0].start or 0))
        self.tools.propose(tuple(grown.box), codes, GROWN, "grow", [line])
        return voxels

    def _line(self, codes: np.ndarray, z0: int) -> str:
        """``grow preview: lesion: 812 new voxels on slices 12-19, from 2 clicks (1 not this)``
        (``codes`` the box from slice ``z0``)."""
        scan = self.tools.dock.scan
        name = scan.classes[class_of_code(self.code) - 1]
        per = np.flatnonzero(codes.reshape(len(codes), -1).any(axis=1)) + z0
        out = sum(not c.inside for c in self.clicks)
        clicks = f"{len(self.clicks)} click{'s' if len(self.clicks) > 1 else ''}"
        where = f"slice {per[0]}" if per[0] == per[-1] else f"slices {per[0]}-{per[-1]}"
        return (
            f"grow preview: {name}: {int(np.count_nonzero(codes))} new voxels on {where}, "
            f"from {clicks}" + (f" ({out} not this)" if out else "")
        )

    @staticmethod
    def _probability(scan):
        """The stored probability where it is the class's: a scan of one class (with several,
        the stored probability is of any foreground class)."""
        probability = scan.result("probability")
        if probability is None or len(scan.classes) != 1 or probability.shape != scan.shape:
            return None
        return probability
