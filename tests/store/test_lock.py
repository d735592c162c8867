"""One writer per scan: the lock refuses a second writer, and a crash never leaves it behind."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.cli.main import main
from napari_asymseg.errors import ScanError
from napari_asymseg.store.lock import (
    LOCK_ENV,
    LOCK_FILE,
    SOFT_FILE,
    LocksUnsupported,
    ScanBusy,
    ScanLock,
    holder,
)
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.loop import fit

HOLD = (
    "import sys, time\n"
    "from napari_asymseg.store.lock import ScanLock\n"
    "lock = ScanLock(sys.argv[1], 'asymseg predict').acquire()\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def trained(tmp_path):
    """A tiny scan and a model of it (2 steps: only the plumbing matters here)."""
    scan = tiny_scan(tmp_path / "tiny.zarr")
    for _ in fit(scan, tiny_config(steps=2, val_every=2), tmp_path / "model"):
        pass
    return scan, tmp_path / "model"


@pytest.fixture
def holding_process(trained):
    """Another process that holds the scan's lock until it is killed."""
    scan, _ = trained
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(scan.path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait(timeout=30)


def test_second_writer_is_refused_until_the_first_releases(scan):
    first = ScanLock(scan.path, "napari (asymseg dock)").acquire()
    with pytest.raises(ScanBusy) as info:
        ScanLock(scan.path, "asymseg flag").acquire()
    message = str(info.value)
    assert "napari (asymseg dock)" in message and f"pid {os.getpid()}" in message
    assert "\n" not in message
    assert holder(scan.path)["owner"] == "napari (asymseg dock)"
    first.release()
    with ScanLock(scan.path, "asymseg flag") as second:
        assert second.held
    assert not second.held


def test_cli_refuses_a_scan_another_process_writes_and_a_kill_frees_it(
    trained, holding_process, capsys
):
    scan, model = trained
    before = scan.read_annotations().copy()
    for argv in (
        ["predict", str(scan.path), "--model", str(model)],
        ["flag", str(scan.path), "--model", str(model)],
        ["import", str(scan.path), str(scan.path), "--overwrite"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "being written by asymseg predict" in err, err
        assert f"pid {holding_process.pid}" in err and err.count("\n") == 1
    reopened = Scan.open(scan.path)
    np.testing.assert_array_equal(reopened.read_annotations(), before)
    assert reopened.result("prediction") is None  # nothing was written

    holding_process.send_signal(signal.SIGKILL)  # a crash: the OS drops the lock with it
    holding_process.wait(timeout=30)
    assert main(["predict", str(scan.path), "--model", str(model)]) == 0
    assert Scan.open(scan.path).result("prediction") is not None


def test_opening_never_rolls_back_the_swap_of_a_live_writer(scan):
    leftover = scan.path / ".tmp-annotations-0123abcd"
    leftover.mkdir()
    with ScanLock(scan.path, "asymseg predict"):  # a writer in the middle of a swap
        Scan.open(scan.path)
        assert leftover.is_dir()  # its work in progress is left alone
    Scan.open(scan.path)  # nobody writes: the leftover is a crash's, and is cleaned up
    assert not leftover.exists()


def test_lock_file_does_not_disturb_reading(scan):
    with ScanLock(scan.path, "napari"):
        assert (scan.path / LOCK_FILE).is_file()
        reopened = Scan.open(scan.path, mode="r")
        assert reopened.shape == scan.shape


def test_missing_scan_keeps_its_own_message(trained, tmp_path, capsys):
    _, model = trained
    missing = tmp_path / "missing.zarr"
    assert main(["predict", str(missing), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "being written" not in err and "cannot write" not in err


@pytest.fixture
def no_file_locks(monkeypatch):
    """A filesystem without locks (NFS without its lock service): flock answers ENOLCK."""
    real = fcntl.flock
    calls = []

    def flock(fd, operation):
        calls.append(operation)
        if operation & fcntl.LOCK_UN:
            return real(fd, operation)
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.delenv(LOCK_ENV, raising=False)
    monkeypatch.setattr(fcntl, "flock", flock)
    return calls


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP])
def test_a_filesystem_without_locks_is_named_not_called_busy(scan, no_file_locks, code):
    def flock(fd, operation):
        raise OSError(code, os.strerror(code))

    fcntl.flock = flock  # the fixture's monkeypatch restores the real one
    with pytest.raises(LocksUnsupported) as info:
        ScanLock(scan.path, "asymseg flag").acquire()
    message = str(info.value)
    assert not isinstance(info.value, ScanBusy) and "being written" not in message
    assert "cannot lock files" in message and f"{LOCK_ENV}=soft" in message
    assert os.strerror(code) in message and "\n" not in message


def test_the_cli_names_the_lock_problem_and_its_fix(scan, no_file_locks, capsys):
    assert main(["import", str(scan.path), str(scan.path), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "cannot lock files" in err and f"{LOCK_ENV}=soft" in err and err.count("\n") == 1


def test_soft_lock_fallback_keeps_one_writer(scan, no_file_locks, monkeypatch):
    monkeypatch.setenv(LOCK_ENV, "soft")
    first = ScanLock(scan.path, "napari (asymseg dock)").acquire()
    assert first.held and (scan.path / SOFT_FILE).is_file() and no_file_locks  # flock was tried
    assert holder(scan.path)["owner"] == "napari (asymseg dock)"
    with pytest.raises(ScanBusy) as info:
        ScanLock(scan.path, "asymseg flag").acquire()
    message = str(info.value)
    assert "napari (asymseg dock)" in message and f"pid {os.getpid()}" in message
    assert str(scan.path / SOFT_FILE) in message and "\n" not in message  # how to clear it
    first.release()
    assert not (scan.path / SOFT_FILE).exists()  # a marker goes with its holder
    with ScanLock(scan.path, "asymseg flag") as second:
        assert second.held and holder(scan.path)["owner"] == "asymseg flag"
    assert not (scan.path / SOFT_FILE).exists()


def test_soft_and_os_lockers_exclude_each_other(scan, monkeypatch):
    """One process with ASYMSEG_LOCK=soft and one without still never write at once."""
    monkeypatch.setenv(LOCK_ENV, "soft")
    soft = ScanLock(scan.path, "soft writer").acquire()
    monkeypatch.delenv(LOCK_ENV)
    with pytest.raises(ScanBusy, match="soft writer"):
        ScanLock(scan.path, "os writer").acquire()
    soft.release()
    os_lock = ScanLock(scan.path, "os writer").acquire()
    monkeypatch.setenv(LOCK_ENV, "soft")
    with pytest.raises(ScanBusy, match="os writer") as info:
        ScanLock(scan.path, "soft writer").acquire()
    assert SOFT_FILE not in str(info.value)  # its own marker was dropped, not blamed
    assert not (scan.path / SOFT_FILE).exists()
    os_lock.release()


def test_an_unknown_lock_mode_is_a_clear_error(scan, monkeypatch):
    monkeypatch.setenv(LOCK_ENV, "nfs")
    with pytest.raises(ScanError, match=f"{LOCK_ENV}=nfs is not a lock mode"):
        ScanLock(scan.path, "asymseg flag").acquire()
