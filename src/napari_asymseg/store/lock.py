"""One writer per scan: an advisory lock that a crash cannot leave behind.

Whoever writes into a scan for a while (a napari dock while the scan is open in it, ``asymseg
predict`` or ``asymseg flag`` while they run) holds the scan's lock; a second writer is refused
with a message naming the holder, instead of two processes overwriting each other's chunks or
one rolling back the other's half-finished array swap.

The lock is an OS file lock (``fcntl.flock``; ``msvcrt.locking`` on Windows) on
``SCAN/.asymseg.lock``. The operating system releases it when the holding process ends, however
it ends (SIGKILL and power loss included), so there is no stale lock to clean up. The file
itself only carries who holds it, for the message. Two docks in one process conflict too: the
lock belongs to an open file, not to a process.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from napari_asymseg.errors import ScanError

LOCK_FILE = ".asymseg.lock"


class ScanBusy(ScanError):
    """The scan is being written by someone else."""


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def holder(scan_path: str | os.PathLike) -> dict[str, Any] | None:
    """Who last took the scan's lock (``owner``, ``pid``, ``host``, ``since``), or None."""
    try:
        data = json.loads((Path(scan_path) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class ScanLock:
    """The write lock of the scan at ``scan_path``, taken by ``owner`` (for the message).

    Use as a context manager, or :meth:`acquire` and :meth:`release` for a lock held across
    events (a dock). :meth:`acquire` raises :class:`ScanBusy` when another holder has it.
    """

    def __init__(self, scan_path: str | os.PathLike, owner: str) -> None:
        self.path = Path(scan_path)
        self.owner = owner
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> ScanLock:
        if self._fd is not None:
            return self
        if not self.path.is_dir():
            return self  # nothing to protect: opening it gives the clear error
        file = self.path / LOCK_FILE
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            # a read-only scan cannot be written anyway: say so instead of locking
            raise ScanError(
                f"cannot write to {self.path} ({exc.strerror}): copy the scan somewhere "
                "writable, or open it read-only"
            ) from None
        if not _try_lock(fd):
            os.close(fd)
            raise ScanBusy(busy_message(self.path))
        self._fd = fd
        info = {
            "owner": self.owner,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(info).encode())
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> ScanLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten lock is released with its object
        self.release()


def busy_message(scan_path: Path) -> str:
    who = holder(scan_path) or {}
    by = who.get("owner", "another program")
    where = f" (pid {who['pid']} on {who.get('host', '?')})" if "pid" in who else ""
    return (
        f"{scan_path.name} is being written by {by}{where}: close it there or wait until it "
        "has finished, then try again"
    )
