"""A scan group's attributes on disk: read fresh, and rewritten whole, synced and locked.

zarr keeps a group's attributes in one metadata file: ``zarr.json`` (format 3, under
``"attributes"``, beside the format's own keys) or ``.zattrs`` (format 2). The scan's
geometry, class names and review state all live there, so losing that file loses the scan.
zarr's own attribute write renames a temporary file into place but never ``fsync``-s it, and
it writes the attributes it cached when the group was opened, so two writers in one process
(the dock's main thread saving the review queue, its predict worker noting the model) would
each drop the other's key.

:func:`update` therefore does the read-modify-write itself: under :func:`writing` (a lock per
scan within the process, plus the scan's file lock unless this process holds it already), it
reads the metadata file from disk, changes the one key, and replaces the file through
:func:`napari_asymseg.store.atomic.write_json` (temporary sibling, ``fsync``, rename, ``fsync``
of the folder). A crash or a power loss leaves the old file or the new one, never an empty one,
and every other key stays as it was on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from napari_asymseg.errors import ScanError, cause, read_error_message
from napari_asymseg.store import atomic
from napari_asymseg.store.lock import ScanLock, held_here

V3_META = "zarr.json"
V2_ATTRS = ".zattrs"
LOCK_WAIT_S = 5.0
"""How long an attribute write waits for the scan's lock that another program holds: long
enough for a short writer (another attribute write, the recovery when a scan is opened) to
finish; a long one (a dock, ``asymseg predict``) makes it fail with the holder's name."""

_guard = threading.Lock()
_scan_locks: dict[str, threading.RLock] = {}


def _thread_lock(scan_path: Path) -> threading.RLock:
    key = os.path.realpath(scan_path)
    with _guard:
        return _scan_locks.setdefault(key, threading.RLock())


@contextlib.contextmanager
def writing(scan_path: Path) -> Iterator[None]:
    """Exclusive right to rewrite the attributes of the scan at ``scan_path``.

    Threads of this process take turns on a lock per scan. The scan's file lock keeps other
    programs out: where this process holds it already (the dock, the CLI) it is not taken again
    (a second file lock in the same process would conflict with the first); otherwise it is
    taken for the write, waiting up to :data:`LOCK_WAIT_S` for a short holder.
    """
    with _thread_lock(scan_path):
        if held_here(scan_path):
            yield
            return
        with ScanLock(
            scan_path, f"asymseg (saving the scan state, pid {os.getpid()})", LOCK_WAIT_S
        ):
            yield


def metadata_file(scan_path: Path) -> Path:
    """The file that holds the group's attributes: ``zarr.json``, else ``.zattrs``."""
    v3 = scan_path / V3_META
    return v3 if v3.is_file() else scan_path / V2_ATTRS


def read(scan_path: Path) -> dict[str, Any]:
    """The group's attributes as they are on disk now (``{}`` for format 2 without any)."""
    path = metadata_file(scan_path)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        if path.name == V2_ATTRS and (scan_path / ".zgroup").is_file():
            return {}  # a format-2 group without attributes yet
        raise ScanError(
            f"no scan at {scan_path} any more: it was moved or deleted while open; open it again"
        ) from None
    except OSError as exc:
        raise ScanError(read_error_message(exc, path)) from None
    except ValueError as exc:
        raise ScanError(
            f"{path} is damaged ({cause(exc)}): restore the scan from a backup"
        ) from None
    attrs = doc.get("attributes", {}) if path.name == V3_META else doc
    if not isinstance(attrs, dict):
        raise ScanError(f"{path} holds no attribute table: restore the scan from a backup")
    return attrs


def update(
    scan_path: Path, key: str, change: Callable[[Any], Any], *, what: str | None = None
) -> None:
    """Set attribute ``key`` to ``change(its value on disk, or None)``, locked and whole.

    ``what`` names the value in the message when it is not JSON (default: ``key``).

    Raises
    ------
    ScanError
        When the value is not JSON, the scan is busy, or the file cannot be written.
    """
    with writing(scan_path):
        path = metadata_file(scan_path)
        attrs = read(scan_path)
        attrs[key] = change(attrs.get(key))
        if path.name == V3_META:
            doc = json.loads(path.read_bytes())  # the format's own keys, kept as they are
            doc["attributes"] = attrs
        else:
            doc = attrs
        try:
            # encoded first: a value that is not JSON fails before anything is written
            text = json.dumps(doc, indent=2) + "\n"
        except (TypeError, ValueError) as exc:
            raise ScanError(
                f"cannot store {what or repr(key)} in the scan ({cause(exc)}): store plain "
                "numbers, strings, lists and dicts"
            ) from None
        try:
            atomic.write_text(path, text)
        except OSError as exc:
            raise ScanError(
                f"cannot save the scan state in {scan_path.name} ({exc.strerror or exc}): "
                "open the scan writable, on a disk with free space (nothing was changed)"
            ) from None
