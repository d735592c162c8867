"""How the Review section shows queue items: a line in the list, a tooltip, a colour, a ring."""

from __future__ import annotations

import numpy as np
from napari.utils.colormaps.standardize_color import transform_color
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QListWidget, QListWidgetItem

from napari_asymseg._qt.layers import layer_for
from napari_asymseg.io import palette
from napari_asymseg.review import queue as rq

COLORS = {rq.MISS: palette.MISS_FLAG, rq.FALSE_ALARM: palette.FALSE_ALARM_FLAG}
"""Suspected misses yellow rings, suspected false alarms white (palette.py)."""
DONE_COLOR = palette.DONE_FLAG
_VERDICT = {rq.LESION: "lesion", rq.NOT_LESION: "not lesion"}


def item_text(item: rq.Item) -> str:
    """The list's line for an item: short enough for a narrow dock (details in the tooltip)."""
    if item.answered:
        state = "painted" if item.kind == rq.MISS and item.status == rq.LESION else None
        state = f"  ✓ {state or _VERDICT[item.status]}"
    else:
        state = ""
    where = f"#{item.rank}  slice {item.center[0]}"
    if item.kind == rq.MISS:
        if item.gain < 1 and item.known_misses:  # only painted lesion the model misses
            return f"{where}  missed?  {item.known_misses:,} painted{state}"
        return f"{where}  missed?  ~{item.gain:,.0f} voxels{state}"
    return f"{where}  false alarm?  {item.voxels:,} voxels{state}"


def item_tooltip(item: rq.Item) -> str:
    z, y, x = item.center
    z0, y0, x0, z1, y1, x1 = item.bbox
    if item.kind == rq.MISS:
        lines = [
            f"suspected miss #{item.rank} ({item.status}) at z {z}, y {y}, x {x}",
            f"expected missed lesion: {item.gain:,.1f} voxels over {item.voxels:,} at risk; "
            f"highest risk {item.doubt:.2f}",
            "paint the lesion here, then Lesion (A) marks it painted; Not lesion (R) marks "
            "the region at risk as background",
        ]
        if item.known_misses:
            lines.append(
                f"{item.known_misses:,} of your lesion voxels here are missed by the model "
                "(fine-tune to fix those)"
            )
    else:
        lines = [
            f"suspected false alarm #{item.rank} ({item.status}) at z {z}, y {y}, x {x}",
            f"the model calls {item.voxels:,} unannotated voxels here lesion; doubt "
            f"{item.doubt:.2f} (expected wrong: {item.gain:,.1f} voxels)",
            "Not lesion (R) paints them background; Lesion (A) paints them lesion",
        ]
    lines.append(f"box: z {z0}-{z1 - 1}, y {y0}-{y1 - 1}, x {x0}-{x1 - 1}")
    return "\n".join(lines)


def summary_text(items: list[rq.Item]) -> str:
    """The section's line over the list: how many to review, of each kind, and answered."""
    open_items = [i for i in items if not i.answered]
    misses = sum(i.kind == rq.MISS for i in open_items)
    return (
        f"{len(open_items)} to review ({misses} suspected miss(es), "
        f"{len(open_items) - misses} suspected false alarm(s)), "
        f"{len(items) - len(open_items)} answered. Answer with A / R, N for next."
    )


def show_entry(entry: QListWidgetItem | None, item: rq.Item) -> None:
    """One list entry as ``item`` is now: its line, tooltip and colour."""
    if entry is not None:
        entry.setText(item_text(item))
        entry.setToolTip(item_tooltip(item))
        entry.setForeground(QColor(DONE_COLOR if item.answered else COLORS[item.kind]))


def fill_list(widget: QListWidget, items: list[rq.Item]) -> None:
    """The list anew, one entry per item, on the same row as before (without signals: the
    viewer does not jump)."""
    current = widget.currentRow()
    widget.blockSignals(True)
    widget.clear()
    for item in items:
        entry = QListWidgetItem()
        show_entry(entry, item)
        widget.addItem(entry)
    if 0 <= current < len(items):
        widget.setCurrentRow(current)
    widget.blockSignals(False)


def recolor_point(viewer, scan, items: list[rq.Item], row: int) -> None:
    """Item ``row``'s ring in its new colour (grey once answered), not a full rebuild."""
    layer = layer_for(viewer, scan.path, "flags") if scan is not None else None
    if layer is not None and len(layer.data) == len(items):
        item = items[row]
        colors = np.array(layer.border_color, copy=True)
        colors[row] = transform_color(DONE_COLOR if item.answered else COLORS[item.kind])[0]
        layer.border_color = colors


def show_points(viewer, scan, items: list[rq.Item], annotations_layer) -> None:
    """The queue's items as numbered rings on the viewer (its "review" points layer)."""
    if scan is None:
        return
    layer = layer_for(viewer, scan.path, "flags")
    centers = np.array([i.center for i in items], dtype=float).reshape(-1, 3)
    colors = [DONE_COLOR if i.answered else COLORS[i.kind] for i in items]
    features = {"rank": [i.rank for i in items]}
    if layer is None:
        # made when the scan opens, empty if need be: creating a points layer with text
        # stalls the viewer ~250 ms, which then falls on the scan's opening, not on the
        # end of a training run (benchmarks/gui_responsiveness.py)
        viewer.add_points(
            centers,
            name=f"{scan.path.name.removesuffix('.zarr')} review",
            scale=scan.spacing,
            size=max(scan.spacing) * 4,
            face_color="transparent",
            border_color=colors or COLORS[rq.MISS],
            border_width=0.12,
            features=features,
            # the rank beside the ring, white: readable on the scan, off the heatmap's glow
            text={"string": "{rank}", "color": "white", "size": 10, "anchor": "upper_left"},
            metadata={"asymseg": {"scan": str(scan.path), "role": "flags"}},
        )
        if annotations_layer is not None:
            viewer.layers.selection.active = annotations_layer
    else:
        layer.data = centers
        layer.features = features
        if colors:
            layer.border_color = colors
        layer.refresh()
