"""The errors a user reads, and the one line each failure becomes.

:class:`ClearError` (with :class:`ScanError` for input and scans, :class:`TrainingError` for
training) marks an expected failure whose message already names the problem and the fix; the
CLI prints it as ``asymseg: error: …`` and the dock as a notification, never a traceback.
:func:`error_message` turns anything else (an ``OSError`` included, via
:func:`os_error_message`) into such a line too.
"""

from __future__ import annotations

import errno
from argparse import ArgumentTypeError


class ClearError(Exception):
    """An expected failure whose message is already the one line a user should read."""


class ScanError(ClearError, ValueError):
    """Bad input or a broken scan; the message is one line naming the problem and the fix."""


_OS_FIXES = {
    errno.ENOSPC: "free disk space or write somewhere else",
    errno.EDQUOT: "free space in your quota or write somewhere else",
    errno.EROFS: "the disk is read-only: write somewhere else",
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.EPERM: "choose a folder you may write to, or fix its permissions",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "the path is a folder: give a file name",
    errno.EEXIST: "remove it or choose another name",
    errno.EIO: "the disk failed to read or write: check the disk, then try again",
}


def cause(exc: BaseException, limit: int = 160) -> str:
    """A library's exception as a short single line: its type, and its message flattened
    (SimpleITK's span several lines with C++ source locations)."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system failure: what failed, on which path, and the fix.

    Everything that writes does so atomically, so the line can promise that what existed
    before is untouched.
    """
    where = f" {exc.filename}" if exc.filename else ""
    what = (exc.strerror or str(exc)).rstrip(".").lower()
    fix = _OS_FIXES.get(exc.errno or 0, "check the path and the disk, then try again")
    return f"cannot use{where}: {what}: {fix} (nothing existing was changed)"


def read_error_message(exc: OSError, where: object) -> str:
    """One line for a file the system could not read (as opposed to content that does not
    decode): a permission problem names the permissions, anything else (EIO, EAGAIN, ESTALE,
    a network drive that went away) may pass, so it says to check the disk and retry."""
    what = (exc.strerror or str(exc)).rstrip(".").lower()
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        fix = "check the permissions and the owner of the file and of its folders"
    else:
        fix = "check the disk (or the network drive), then try again"
    return f"cannot read {where}: {what}: {fix} (nothing was changed)"


def error_message(exc: BaseException) -> str:
    """The one line a user sees for ``exc`` (the dock's notifications use it)."""
    if isinstance(exc, OSError):
        return os_error_message(exc)
    if isinstance(exc, ClearError | ValueError | ArgumentTypeError):  # ours, config checks
        return str(exc)
    return f"{type(exc).__name__}: {exc}"  # unexpected: still one line, never a frozen dock


class TrainingError(ClearError, RuntimeError):
    """Training cannot go on (NaN loss, out of memory); the message says what to change."""
