"""The Annotate section's shape tools: fill between painted slices, and grow a lesion from
clicks. Each shows its proposal as a preview layer that one key accepts (written into the
annotations as one undoable step, with its provenance) or discards.

Keys (none is taken by napari's labels layer or by the dock's other keys): Shift+F fill,
G grow mode (a click proposes, Shift+click says "not this"), Shift+A accept, Shift+D discard.
Escape and Enter are the labels layer's own (polygon) keys, which napari gives precedence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_asymseg._qt.grow_clicks import GrowClicks
from napari_asymseg.errors import ScanError, error_message
from napari_asymseg.store.annotations import NOT_ANNOTATED
from napari_asymseg.store.arrays import bounding_box
from napari_asymseg.store.provenance import FILLED, SOURCES

FILL_KEY = "Shift-F"
ACCEPT_KEY = "Shift-A"
DISCARD_KEY = "Shift-D"
PREVIEW_CONTOUR = 2
"""The preview is an outline (pixels thick) in the class's colour: told apart from the paint,
which is filled, and from the model's outline, which is another colour; the image shows
through it."""
KEYS_LINE = (
    "Shift+F fill between slices · G grow (click; Shift+click: not this) · "
    "Shift+A accept · Shift+D discard"
)


@dataclass(frozen=True, eq=False)  # eq=False: an array field
class Proposal:
    """What a tool proposes: ``codes`` (box-shaped uint8, 0 leaves a voxel as it is) in the
    scan's ``box``, to be written with provenance ``source``."""

    box: tuple[slice, ...]
    codes: np.ndarray
    source: int
    tool: str  # "fill" or "grow": names the preview layer


def fill_lines(fill, scan) -> list[str]:
    """What the fill proposes, one line per class, then one line for what it left out (each
    reason in the summary's tooltip: :meth:`ToolsRow.propose`)."""
    from napari_asymseg.annotate.interpolate import plane_word

    lines = fill.lines(scan.classes)
    filled = lines[: len(lines) - len(fill.skipped)]
    if not fill.skipped:
        return filled
    spans: dict[str, list[str]] = {}
    for s in fill.skipped:
        spans.setdefault(scan.classes[s.klass - 1], []).append(f"{s.first}-{s.last}")
    each = "; ".join(f"{name}, {plane_word(fill.axis)}s {', '.join(dict.fromkeys(where))}"
                     for name, where in spans.items())  # fmt: skip
    lesions = f"{len(fill.skipped)} lesion{'s' if len(fill.skipped) > 1 else ''}"
    return [
        *filled,
        f"left out: {lesions} ({each}): they begin or end between the painted slices; hover "
        "for why",
    ]


class ToolsRow(QWidget):
    """Fill between slices, Grow, Accept and Discard, and a line saying what the preview holds."""

    def __init__(self, dock) -> None:  # the AsymsegDock
        super().__init__()
        self.dock = dock
        self.proposal: Proposal | None = None
        self.preview = None  # the preview labels layer, while one is shown
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        outer.addLayout(row)
        self.fill_button = QPushButton("Fill between slices")
        self.fill_button.setToolTip(
            "propose each class on the unpainted slices between two slices where it is "
            "painted (Shift+F); a preview to accept (Shift+A) or discard (Shift+D)"
        )
        self.fill_button.clicked.connect(self.fill)
        self.grow = GrowClicks(self)
        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip(
            "write the preview into the annotations, unannotated voxels only (Shift+A; one "
            "Ctrl+Z undoes it)"
        )
        self.accept_button.clicked.connect(self.accept)
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("remove the preview, and the grow clicks (Shift+D)")
        self.discard_button.clicked.connect(self.discard)
        for button in (self.fill_button, self.grow.button, self.accept_button):
            row.addWidget(button)
        row.addWidget(self.discard_button)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setVisible(False)
        outer.addWidget(self.summary)
        self._set_buttons()
        viewer = dock.viewer
        viewer.bind_key(FILL_KEY, lambda _viewer: self.fill(), overwrite=True)
        viewer.bind_key(ACCEPT_KEY, lambda _viewer: self.accept(), overwrite=True)
        viewer.bind_key(DISCARD_KEY, lambda _viewer: self.discard(), overwrite=True)

    # -- the open scan -------------------------------------------------------------------------
    def follow(self) -> None:
        """A scan opened (or none is): forget the last scan's proposal, clicks and preview (its
        layers leave the viewer with it). Nothing changes while it is the same layer."""
        if self.grow.layer is self.dock.annotations_layer:
            return
        self.proposal, self.preview = None, None
        self._say("")
        self.grow.follow(self.dock.annotations_layer)
        self._set_buttons()

    def target(self):
        """The annotations layer and its scan, writable; None (said in a notification) if not."""
        layer, scan = self.dock.annotations_layer, self.dock.scan
        if layer is None or scan is None:
            show_error("open a scan first")
            return None
        if not self.dock.writable():
            return None
        return layer, scan

    # -- fill ----------------------------------------------------------------------------------
    def fill(self) -> int:
        """Propose the fill between painted slices of the annotations as they are now (the
        pending painting saved first); returns the voxels proposed."""
        from napari_asymseg.annotate.interpolate import fill_between

        found = self.target()
        if found is None:
            return 0
        layer, scan = found
        self.dock.save_now()  # the painting so far is in the scan before a tool writes there
        try:
            fill = fill_between(np.asarray(layer.data), scan.spacing)
        except ScanError as exc:
            self.discard()
            show_error(error_message(exc))
            return 0
        if fill.voxels == 0:
            self.discard()
            show_info("nothing to fill: " + "; ".join(fill.lines(scan.classes)))
            return 0
        box = bounding_box(fill.codes != NOT_ANNOTATED)
        details = "\n".join(fill.lines(scan.classes))
        self.propose(box, fill.codes[box], FILLED, "fill", fill_lines(fill, scan), details)
        return fill.voxels

    # -- the preview ---------------------------------------------------------------------------
    def propose(
        self,
        box: tuple[slice, ...],
        codes: np.ndarray,
        source: int,
        tool: str,
        lines: list[str],
        tip: str = "",
    ) -> None:
        """Show a tool's :class:`Proposal` in the preview layer and ``lines`` (what it holds;
        ``tip``, the details, as their tooltip) under the buttons; the annotations layer stays
        the active one (its keys, its Ctrl+Z)."""
        proposal = Proposal(box, codes, source, tool)
        layer, viewer = self.dock.annotations_layer, self.dock.viewer
        scale = np.asarray(layer.scale)
        translate = np.asarray(layer.translate) + scale * [s.start for s in proposal.box]
        name = f"{proposal.tool} preview"
        if self.preview is not None and self.preview in viewer.layers:
            self.preview.data = proposal.codes
            self.preview.translate = translate
            self.preview.name = name
        else:
            self.preview = preview = viewer.add_labels(
                proposal.codes,
                name=name,
                scale=scale,
                translate=translate,
                opacity=1.0,
                colormap=layer.colormap,
                metadata={"asymseg": {"scan": str(self.dock.scan.path), "role": "preview"}},
            )
            preview.contour = PREVIEW_CONTOUR
        self.proposal = proposal
        viewer.layers.selection.active = layer
        self._say("\n".join([*lines, "Shift+A accept · Shift+D discard"]), tip)
        self._set_buttons()

    def accept(self) -> int:
        """Write the preview into the annotations (unannotated voxels only: paint wins, also
        paint made since the preview) as one undoable step; returns the voxels written."""
        proposal = self.proposal
        if proposal is None or self.preview not in self.dock.viewer.layers:
            show_info("nothing to accept: fill between slices (Shift+F) or grow (G, click) first")
            return 0
        found = self.target()
        if found is None or self.dock.autosave is None:
            return 0
        layer, scan = found
        current = np.asarray(layer.data[proposal.box])
        new = (proposal.codes != NOT_ANNOTATED) & (current == NOT_ANNOTATED)
        indices = tuple(i + s.start for i, s in zip(np.nonzero(new), proposal.box, strict=True))
        try:
            written = self.dock.autosave.write_tool(indices, proposal.codes[new], proposal.source)
        except Exception as exc:  # noqa: BLE001 - said; the layer is unchanged, the preview stays
            show_error(f"not written: {error_message(exc)}; the preview stays: accept again")
            return 0
        self.discard()
        self.dock.scan_section.refresh()
        show_info(
            f"{written} voxels written as annotation ({SOURCES[proposal.source]}) into "
            f"{scan.path.name}: Ctrl+Z undoes them"
        )
        return written

    def discard(self) -> None:
        """Remove the preview and forget the grow clicks."""
        preview, self.preview, self.proposal = self.preview, None, None
        if preview is not None and preview in self.dock.viewer.layers:
            self.dock.viewer.layers.remove(preview)
        self.grow.clear()
        self._say("")
        self._set_buttons()

    def _say(self, text: str, tip: str = "") -> None:
        self.summary.setText(text)
        self.summary.setToolTip(tip)
        self.summary.setVisible(bool(text))

    def _set_buttons(self) -> None:
        shown = self.proposal is not None
        self.accept_button.setEnabled(shown)
        self.discard_button.setEnabled(shown or bool(self.grow.clicks))
