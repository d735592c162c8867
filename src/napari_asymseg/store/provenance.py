"""Where each annotation voxel came from: painted by hand, or written by a tool.

A voxel the user painted, one that a tool filled between slices, one grown from a click and
one that a review answer wrote are all annotation; the scan keeps which is which beside the
codes, so that statistics, training weights and export can tell them apart. The ``provenance``
array (uint8, the annotations' shape and chunks) holds one :data:`SOURCES` value per voxel,
meaningful where the voxel is annotated:

=====  ==============================================================
value  the annotation code there was written by
=====  ==============================================================
0      the user's hand (:data:`PAINTED`; also every unannotated voxel)
1      fill between painted slices (:data:`FILLED`, ``asymseg fill``)
2      grow from a click (:data:`GROWN`, ``asymseg grow``)
3      a review answer (:data:`REVIEWED`, ``asymseg review``, the dock's Review)
=====  ==============================================================

The array is created by the first write from a tool; a scan without it (every scan written
before it existed) reads as all painted.

:meth:`~napari_asymseg.store.scan.Scan.write_annotations` keeps it true through
:func:`recording`: the voxels a write changes get the write's source, so a filled voxel that
the user paints over (another class, background, erased) becomes painted. A tool's source is
recorded before its codes are written and a repaint after its codes: a crash between the two
leaves at worst an unannotated voxel marked as a tool's (meaningless: only annotated voxels
count) or a repainted one still marked as a tool's; never a tool's voxel passed off as painted.
Each array's chunks are zarr's atomic writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import zarr

from napari_asymseg.errors import ScanError
from napari_asymseg.store.arrays import bounding_box
from napari_asymseg.store.arrays import read as read_array
from napari_asymseg.store.layout import ANNOTATIONS

PROVENANCE = "provenance"
PAINTED = 0
FILLED = 1
GROWN = 2
REVIEWED = 3
SOURCES = {PAINTED: "painted", FILLED: "filled", GROWN: "grown", REVIEWED: "review answer"}

Region = tuple[slice, ...]


def _annotations(group: zarr.Group) -> zarr.Array:
    return cast(zarr.Array, group[ANNOTATIONS])


def provenance_array(group: zarr.Group) -> zarr.Array | None:
    """The scan's provenance array, or None where it has none (all painted)."""
    node = group.get(PROVENANCE)
    if node is None:
        return None
    ann = _annotations(group)
    if not isinstance(node, zarr.Array) or node.shape != ann.shape or node.dtype != np.uint8:
        raise ScanError(
            f"the scan's '{PROVENANCE}' is not a uint8 array of the annotations' shape: delete "
            f"the folder {PROVENANCE} in the scan to read every annotation as painted"
        )
    return node


def read_provenance(group: zarr.Group, region: Any = Ellipsis) -> np.ndarray:
    """The sources of ``region`` (all painted where the scan has no provenance array)."""
    node = provenance_array(group)
    if node is None:
        ann = _annotations(group)
        return np.zeros(np.empty(ann.shape, bool)[region].shape, np.uint8)
    return read_array(node, region)


@contextlib.contextmanager
def recording(group: zarr.Group, data: Any, region: Region | None, source: int) -> Iterator[None]:
    """Around a write of annotation codes ``data`` into ``region`` (None: the whole array):
    the voxels whose code the write changes get ``source`` (module docstring: the order)."""
    if source not in SOURCES:
        raise ScanError(f"unknown annotation source {source}: use one of {sorted(SOURCES)}")
    node = provenance_array(group)
    if node is None and source == PAINTED:  # all painted already: nothing to record
        yield
        return
    ann = _annotations(group)
    box = _absolute(region, ann.shape)
    old = read_array(ann, box)
    try:
        changed = np.broadcast_to(np.asarray(data), old.shape) != old
    except ValueError:  # the write itself will refuse data of another shape
        yield
        return
    if node is None or source != PAINTED:
        _mark(node if node is not None else _create(group), box, changed, source)
        yield
    else:
        yield
        _mark(node, box, changed, PAINTED)


def _create(group: zarr.Group) -> zarr.Array:
    """An all-painted provenance array beside the annotations (no chunk is written yet)."""
    ann = _annotations(group)
    return group.create_array(
        PROVENANCE, shape=ann.shape, dtype=np.uint8, chunks=ann.chunks, fill_value=PAINTED
    )


def _absolute(region: Region | None, shape: tuple[int, ...]) -> Region:
    """``region`` as one slice per axis with explicit bounds (``(slice(2, 5),)`` is
    ``(slice(2, 5), slice(0, Y), slice(0, X))``)."""
    parts = tuple(region or ()) + (slice(None),) * (len(shape) - len(region or ()))
    out = []
    for part, n in zip(parts, shape, strict=True):
        start, stop, step = part.indices(n)
        if step != 1:
            raise ScanError("annotation regions are slices without a step")
        out.append(slice(start, max(start, stop)))
    return tuple(out)


def _mark(node: zarr.Array, box: Region, changed: np.ndarray, source: int) -> None:
    """``source`` where ``changed``, rewriting only the chunks around the changed voxels."""
    if not changed.any():
        return
    local = bounding_box(changed)
    where = tuple(
        slice(b.start + s.start, b.start + s.stop) for b, s in zip(box, local, strict=True)
    )
    current = read_array(node, where)
    updated = np.where(changed[local], np.uint8(source), current)
    if not np.array_equal(updated, current):
        node[where] = updated


def annotated_by_source(group: zarr.Group) -> dict[int, dict[int, int]]:
    """Annotated voxels per source and code, ``{source: {code: voxels}}``, read slab by slab;
    ``{}`` where the scan has no provenance array (then every annotation is painted)."""
    node = provenance_array(group)
    if node is None:
        return {}
    ann = _annotations(group)
    joint = np.zeros(256 * 256, np.int64)
    step = ann.chunks[0]
    for z in range(0, ann.shape[0], step):
        codes = read_array(ann, slice(z, z + step))
        sources = read_array(node, slice(z, z + step))
        here = codes != 0
        joint += np.bincount(
            sources[here].astype(np.int64) * 256 + codes[here], minlength=joint.size
        )
    out: dict[int, dict[int, int]] = {}
    for index in np.flatnonzero(joint):
        source, code = divmod(int(index), 256)
        out.setdefault(source, {})[code] = int(joint[index])
    return out
