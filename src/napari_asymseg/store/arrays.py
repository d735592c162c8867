"""Whole zarr arrays, written beside their destination and swapped in; reading one safely.

Replacing an array (all annotations at once, one result) writes the new one under a
``.tmp-NAME-xxxxxxxx`` key next to the old, then :func:`~napari_asymseg.store.atomic.swap_in`
syncs it and renames it into place: a reader, or a scan reopened after a crash, sees the old
array or the new one, never a mix. Single chunks (a brush stroke's region) are zarr's own
writes: its local store writes each chunk to a temporary file and renames it into place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_asymseg.errors import ClearError, ScanError, read_error_message
from napari_asymseg.store import atomic


def write_array(group: zarr.Group, key: str, data: np.ndarray, chunks: Sequence[int]) -> None:
    """A new array ``key`` in ``group`` holding ``data``."""
    arr = group.create_array(key, shape=data.shape, dtype=data.dtype, chunks=tuple(chunks))
    arr[...] = data


def replace_array(
    group: zarr.Group, root: Path, key: str, data: np.ndarray, chunks: Sequence[int]
) -> zarr.Array:
    """Replace the array ``key`` of the group stored at ``root`` with ``data``, atomically."""
    with atomic.replacing(root / key) as tmp:  # results/risk -> results/.tmp-risk-xxxxxxxx
        write_array(group, tmp.relative_to(root).as_posix(), data, chunks)
    return group[key]  # type: ignore[return-value]


def read(array: zarr.Array, region: Any = Ellipsis) -> np.ndarray:
    """``array[region]`` as numpy; a chunk that cannot be read becomes a clear ScanError.

    The codecs raise what they like (RuntimeError from zstd, ValueError from blosc, an
    ``OSError`` without an error number from gzip, ...), so anything but our own errors, memory
    exhaustion and the operating system's errors is taken for damage on disk here. An
    operating-system error (permission denied, EIO, ESTALE, ...) says the file could not be
    read, not that it is damaged: restoring a backup would not help.
    """
    try:
        return np.asarray(array[region])
    except (ClearError, MemoryError):
        raise
    except Exception as exc:
        where = Path(str(getattr(array.store, "root", ""))) / array.path
        if isinstance(exc, OSError) and exc.errno is not None:
            raise ScanError(read_error_message(exc, exc.filename or where)) from None
        raise ScanError(
            f"{where} is damaged: a chunk cannot be read ({type(exc).__name__}); restore the "
            "scan from a backup or import the image again"
        ) from None


def bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The smallest box (one slice per axis) holding every True voxel of ``mask``, which has
    one."""
    out = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)
