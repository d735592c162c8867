"""The one way this package writes a file or replaces a folder: whole or not at all.

Every write goes to a temporary sibling named ``.tmp-NAME-xxxxxxxx`` (the only temporary-name
scheme, which :func:`recover` recognises), is flushed and ``fsync``-ed, then renamed over
``NAME``; the directory is ``fsync``-ed after the rename, so after a power loss the name points
to the old content or the complete new one, never to a renamed but empty file.

A folder (a zarr array, a scan, a model bundle) is replaced by :func:`swap_in`: the old one is
renamed to ``.old-NAME-xxxxxxxx``, the new one renamed into place, the old one deleted.
:func:`recover` finishes or rolls back what a crash left between those steps.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from napari_asymseg.errors import ScanError

TMP = ".tmp-"
OLD = ".old-"
LEFTOVER = re.compile(r"(\.tmp-|\.old-)(.+)-[0-9a-f]{8}")
"""The names of leftovers: ``.tmp-NAME-xxxxxxxx`` (never complete) and ``.old-NAME-xxxxxxxx``
(the previous content of ``NAME`` during a swap)."""


def temporary_name(target: str | os.PathLike, kind: str = TMP) -> Path:
    """A fresh sibling of ``target`` in the one temporary-name scheme."""
    target = Path(target)
    return target.with_name(f"{kind}{target.name}-{uuid.uuid4().hex[:8]}")


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows, or a filesystem that refuses: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a finished file's content to the disk."""
    # POSIX syncs through a read-only descriptor; Windows needs one opened for writing
    fd = os.open(path, os.O_RDWR if sys.platform == "win32" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """``fsync`` every file and folder under ``path`` (a folder about to be swapped in)."""
    path = Path(path)
    if not path.is_dir():
        fsync_file(path)
        return
    for root, _dirs, files in os.walk(path):
        for name in files:
            fsync_file(os.path.join(root, name))
        fsync_dir(root)


@contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it is flushed, synced and
    renamed over ``path`` (then the directory is synced); on failure it is removed and
    ``path`` is left as it was."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data``, whole or not at all."""
    with open_atomic(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8), whole or not at all."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as indented JSON, whole or not at all."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def without_nan(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with NaN floats as None: JSON has no NaN."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def write_with(path: str | os.PathLike, writer: Callable[[IO[bytes]], Any]) -> None:
    """Atomically write what ``writer(file)`` writes (e.g. ``lambda f: torch.save(obj, f)``)."""
    with open_atomic(path, "wb") as f:
        writer(f)


def swap_in(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the finished folder (or file) ``new`` to ``target``, replacing it.

    ``new`` and everything in it is synced first, and ``target``'s directory after the
    renames. Between the renames a crash leaves ``.old-TARGET-…`` beside a missing ``target``,
    which :func:`recover` renames back. ``new`` may lie inside ``target`` (a new
    ``results/`` built in ``results/.tmp-…``): it moves aside with the old folder and is
    renamed out of it.
    """
    new, target = Path(new), Path(target)
    fsync_tree(new)
    old = temporary_name(target, OLD)
    had_target = target.exists()
    if had_target:
        inside = target in new.parents
        os.rename(target, old)
        if inside:
            new = old / new.relative_to(target)
    os.rename(new, target)
    fsync_dir(target.parent)
    if had_target:
        _remove(old)


@contextmanager
def replacing(target: str | os.PathLike, *, inside: bool = False) -> Iterator[Path]:
    """A fresh temporary path to build the new ``target`` in (a folder, or a file written
    whole); swapped in for ``target`` when the block ends, removed when it fails.

    ``inside`` puts it in ``target`` itself (a new ``results/`` built in ``results/.tmp-…``),
    otherwise it is ``target``'s sibling.
    """
    target = Path(target)
    tmp = temporary_name(target)
    if inside:
        tmp = target / tmp.name
    try:
        yield tmp
        swap_in(tmp, target)
    finally:
        _remove(tmp)


def recover(parent: str | os.PathLike, only: str | None = None) -> list[str]:
    """Finish or roll back what a crash left in ``parent`` (for the entry ``only``, or all).

    A ``.tmp-`` leftover was never renamed into place, so it is incomplete by construction and
    is deleted. An ``.old-NAME-`` leftover whose ``NAME`` is missing means the crash fell
    between the two renames of :func:`swap_in`: it is renamed back; beside an existing ``NAME``
    it is the replaced content and is deleted. Returns what it did, one line each.
    """
    parent = Path(parent)
    done: list[str] = []
    if not parent.is_dir():
        return done
    for entry in sorted(parent.iterdir()):
        m = LEFTOVER.fullmatch(entry.name)
        if m is None:
            continue
        kind, name = m.groups()
        if only is not None and name != only:
            continue
        if kind == OLD and not (parent / name).exists():
            os.rename(entry, parent / name)
            done.append(f"restored {name}")
        else:
            _remove(entry)
            done.append(f"removed {entry.name}")
    if done:
        fsync_dir(parent)
    return done


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def make_folder(path: str | os.PathLike) -> Path:
    """``mkdir -p`` that names a file in the way instead of a bare "File exists"."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise ScanError(f"{blocker} is a file, not a folder: choose another output path") from None
    return path
