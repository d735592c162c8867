"""One writer per scan: an advisory lock that a crash cannot leave behind.

Whoever writes into a scan for a while (a napari dock while the scan is open in it, ``asymseg
predict`` or ``asymseg flag`` while they run) holds the scan's lock; a second writer is refused
with a message naming the holder, instead of two processes overwriting each other's chunks or
one rolling back the other's half-finished array swap.

The lock is an OS file lock on ``SCAN/.asymseg.lock``, taken with :mod:`filelock` (``flock``;
``msvcrt.locking`` on Windows). The operating system releases it when the holding process ends,
however it ends (SIGKILL and power loss included), so there is no stale lock to clean up. The
file itself only carries who holds it, for the message. Two docks in one process conflict too:
the lock belongs to an open file, not to a process. :func:`held_here` tells whether this
process holds a scan's lock, so that a short write from another of its threads (the dock's
predict worker saving an attribute, :mod:`napari_asymseg.store.attrs`) does not try to take it
a second time.

Some network filesystems (NFS without its lock service, some SMB and FUSE mounts) cannot lock
files at all (ENOLCK, ENOSYS, EOPNOTSUPP). That is not "busy": :meth:`ScanLock.acquire` says
so and names the fallback, ``ASYMSEG_LOCK=soft``: a marker file ``SCAN/.asymseg.lock.soft``
created exclusively (:class:`filelock.SoftFileLock`), beside the OS lock wherever that works, so
soft and OS lockers still exclude each other. A marker can outlive a crash (filelock takes one
over whose holder on this machine has died; one left by another machine is deleted by hand, as
the busy message then says), which is why it is a choice and never a silent fallback.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import threading
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import filelock

from napari_asymseg.errors import ScanError

LOCK_FILE = ".asymseg.lock"
SOFT_FILE = LOCK_FILE + ".soft"
LOCK_ENV = "ASYMSEG_LOCK"
"""``soft``: lock with a marker file, for filesystems that cannot lock files."""
NO_LOCKS = frozenset(
    {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
)
"""What a filesystem without file locks answers, as opposed to "someone else holds it"."""


class ScanBusy(ScanError):
    """The scan is being written by someone else."""


class LocksUnsupported(ScanError):
    """The scan's filesystem cannot lock files, and the soft fallback was not chosen."""


def holder(scan_path: str | os.PathLike) -> dict[str, Any] | None:
    """Who last took the scan's lock (``owner``, ``pid``, ``host``, ``since``), or None."""
    try:
        data = json.loads((Path(scan_path) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def soft_locking() -> bool:
    """Whether ``ASYMSEG_LOCK=soft`` chose the marker-file lock."""
    value = os.environ.get(LOCK_ENV, "").strip().lower()
    if value not in ("", "os", "soft"):
        raise ScanError(
            f"{LOCK_ENV}={value} is not a lock mode: unset it, or set it to soft where the "
            "filesystem cannot lock files"
        )
    return value == "soft"


def _os_lock(path: Path, wait: float = 0.0) -> filelock.BaseFileLock:
    """filelock's OS lock, without its silent switch to a marker file where flock is missing
    (a crash would leave that behind): that is asked for with ``ASYMSEG_LOCK=soft``."""
    return filelock.FileLock(str(path), timeout=wait, thread_local=False, fallback_to_soft=False)


_held: Counter[str] = Counter()
_held_guard = threading.Lock()


def held_here(scan_path: str | os.PathLike) -> bool:
    """Whether a :class:`ScanLock` of this process holds the scan's lock now (the dock's, while
    its predict worker writes into the same scan from another thread)."""
    with _held_guard:
        return _held[os.path.realpath(scan_path)] > 0


def _note_held(scan_path: Path, change: int) -> None:
    key = os.path.realpath(scan_path)
    with _held_guard:
        _held[key] += change
        if _held[key] <= 0:
            del _held[key]


class ScanLock:
    """The write lock of the scan at ``scan_path``, taken by ``owner`` (for the message).

    Use as a context manager, or :meth:`acquire` and :meth:`release` for a lock held across
    events (a dock). :meth:`acquire` raises :class:`ScanBusy` when another holder has it, and
    :class:`LocksUnsupported` when the scan's filesystem cannot lock files. ``wait`` is how
    many seconds a busy lock is waited for before that (none by default).
    """

    def __init__(self, scan_path: str | os.PathLike, owner: str, wait: float = 0.0) -> None:
        self.path = Path(scan_path)
        self.owner = owner
        self.wait = wait
        self._locks: list[filelock.BaseFileLock] = []
        self._noted = False  # counted in held_here

    @property
    def held(self) -> bool:
        return bool(self._locks)

    def acquire(self) -> ScanLock:
        if self._locks or not self.path.is_dir():
            return self  # held already; or nothing to protect: opening it gives the clear error
        soft = soft_locking()
        try:
            if soft:
                marker = str(self.path / SOFT_FILE)
                self._take(filelock.SoftFileLock(marker, timeout=self.wait, thread_local=False))
            fd = self._take_os_lock(soft)
            self._write_holder(fd)
        except BaseException:
            self.release()
            raise
        _note_held(self.path, +1)
        self._noted = True
        return self

    def _take(self, lock: filelock.BaseFileLock) -> None:
        try:
            lock.acquire()
        except filelock.Timeout:
            self.release()  # a marker taken already is ours, not the holder's
            raise ScanBusy(busy_message(self.path)) from None
        self._locks.append(lock)

    def _take_os_lock(self, soft: bool) -> int | None:
        """Take the OS lock; its descriptor, or None where only the soft marker locks."""
        lock = _os_lock(self.path / LOCK_FILE, self.wait)
        try:
            self._take(lock)
        except OSError as exc:
            if exc.errno in NO_LOCKS:
                if soft:
                    return None
                reason = exc.strerror or os.strerror(exc.errno or errno.ENOLCK)
                raise LocksUnsupported(no_locks_message(self.path, reason)) from None
            # a read-only scan cannot be written anyway: say so instead of locking
            raise ScanError(
                f"cannot write to {self.path} ({exc.strerror or exc}): copy the scan somewhere "
                "writable, or open it read-only"
            ) from None
        return getattr(getattr(lock, "_context", None), "lock_file_fd", None)

    def _write_holder(self, fd: int | None) -> None:
        """Who holds the lock, into the lock file; through the lock's own descriptor (closing
        another one would drop the lock where flock is emulated by POSIX locks, as on NFS)."""
        info = {
            "owner": self.owner,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        own = fd is None
        if fd is None:  # only the soft marker locks: the file is not an OS lock here
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(info).encode())
        finally:
            if own:
                os.close(fd)

    def release(self) -> None:
        locks, self._locks = self._locks, []
        if self._noted:
            self._noted = False
            _note_held(self.path, -1)
        for lock in reversed(locks):  # the OS lock first, then the soft marker
            lock.release(force=True)

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
        with contextlib.suppress(Exception):
            self.release()


def busy_message(scan_path: Path) -> str:
    who = holder(scan_path) or {}
    by = who.get("owner", "another program")
    where = f" (pid {who['pid']} on {who.get('host', '?')})" if "pid" in who else ""
    stale = (
        f"; if it crashed, delete {scan_path / SOFT_FILE}"
        if (scan_path / SOFT_FILE).exists()
        else ""
    )
    return (
        f"{scan_path.name} is being written by {by}{where}: close it there or wait until it "
        f"has finished, then try again{stale}"
    )


def no_locks_message(scan_path: Path, reason: str) -> str:
    return (
        f"{scan_path} is on a filesystem that cannot lock files ({reason}), so asymseg cannot "
        f"keep a second program from writing it: set {LOCK_ENV}=soft to lock it with a marker "
        f"file instead (delete {SOFT_FILE} in it if a crash leaves that behind), or copy the "
        "scan to a local disk"
    )
