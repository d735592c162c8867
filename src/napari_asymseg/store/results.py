"""The latest prediction's arrays under ``results/``: replaced one at a time or as a set.

:func:`write_result` swaps one finished array in. :func:`writing_results` lets a prediction
stream its windows into a fresh set ``results/.tmp-results-xxxxxxxx/`` and, when it finishes,
swaps that whole set in for ``results/`` (:func:`~napari_asymseg.store.atomic.swap_in` moves
the old folder aside first, which takes the new set inside it along). A crash at any moment
leaves the previous set or the complete new one, never a new prediction beside an old risk map.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_asymseg.errors import ScanError
from napari_asymseg.store import atomic
from napari_asymseg.store.arrays import replace_array
from napari_asymseg.store.geometry import default_chunks, validate_volume
from napari_asymseg.store.layout import RESULT_NAMES, RESULTS, check_result_name, check_values


def write_result(
    group: zarr.Group,
    root: Path,
    name: str,
    data: Any,
    shape: Sequence[int],
    n_classes: int,
) -> zarr.Array:
    """Replace result ``name`` of the scan group at ``root`` with ``data``, atomically."""
    check_result_name(name)
    data = np.asarray(data)
    shape = tuple(shape)
    if data.shape != shape:
        raise ScanError(
            f"{name} has shape {data.shape} but the scan is {shape}: predict on this scan"
        )
    if name == "prediction":
        check_values(data, name, max_value=n_classes, n_classes=n_classes)
        data = data.astype(np.uint8)
    else:
        validate_volume(data, name)
        data = data.astype(np.float32 if data.dtype.itemsize > 2 else data.dtype)
    group.require_group(RESULTS)
    return replace_array(group, root, f"{RESULTS}/{name}", data, default_chunks(shape))


@contextlib.contextmanager
def writing_results(
    group: zarr.Group, root: Path, shape: Sequence[int], dtypes: dict[str, Any]
) -> Iterator[dict[str, zarr.Array]]:
    """Empty result arrays to fill, swapped in together for ``results/`` when the block ends.

    An exception, or closing the generator that writes them (a cancel), discards them. Stored
    results that ``dtypes`` does not name are carried over into the new set unchanged.
    """
    for name in dtypes:
        check_result_name(name)
    old = group.require_group(RESULTS)
    target = root / RESULTS
    with atomic.replacing(target, inside=True) as fresh:
        new = group.create_group(f"{RESULTS}/{fresh.name}", attributes=dict(old.attrs))
        chunks = default_chunks(shape)
        arrays = {
            name: new.create_array(
                name, shape=tuple(shape), dtype=dtype, chunks=chunks, fill_value=0
            )
            for name, dtype in dtypes.items()
        }
        yield arrays
        for name in RESULT_NAMES:
            if name not in dtypes and (target / name).is_dir():
                shutil.copytree(target / name, fresh / name)
