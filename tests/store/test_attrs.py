"""The scan's attributes (review state): read fresh, rewritten whole, locked; and the one-line
messages for a chunk the system cannot read (as opposed to a damaged one)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import zarr

from napari_asymseg.errors import ScanError
from napari_asymseg.store import attrs
from napari_asymseg.store.arrays import read
from napari_asymseg.store.layout import ATTRS_KEY, STATE_KEY
from napari_asymseg.store.lock import ScanBusy, ScanLock, held_here
from napari_asymseg.store.scan import Scan


@pytest.fixture(params=[3, 2], ids=["zarr3", "zarr2"])
def any_scan(request, tmp_path, volume) -> Scan:
    return Scan.create(tmp_path / "s.zarr", volume, zarr_format=request.param)


def test_two_threads_writing_different_attributes_both_land(any_scan):
    """The dock's main thread (review queue) and its predict worker (the model's name) write
    the same scan's attributes at once; each with its own :class:`Scan` of the folder, as
    well as through the shared one. Every key of every thread is there at the end."""
    other = Scan.open(any_scan.path)  # its zarr group cached the attributes before any write
    writers = {"queue": any_scan, "predicted_by": other, "flags": any_scan, "notes": other}
    start = threading.Barrier(len(writers))

    def write(scan: Scan, key: str) -> None:
        start.wait()
        for i in range(25):
            scan.write_attr(key, {"n": i, "pad": key * 50})

    threads = [threading.Thread(target=write, args=(s, k)) for k, s in writers.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fresh = Scan.open(any_scan.path, mode="r")
    for key in writers:
        assert fresh.read_attr(key) == {"n": 24, "pad": key * 50}, key
        assert any_scan.read_attr(key) == other.read_attr(key) == fresh.read_attr(key)
    assert fresh.spacing == any_scan.spacing  # the scan's own attributes untouched


def test_a_second_scan_object_keeps_the_first_ones_key(any_scan):
    """Deterministic form of the race: zarr's own write put back the attributes it cached
    at open, dropping the key the other object had written since."""
    other = Scan.open(any_scan.path)
    any_scan.write_attr("queue", [1, 2])
    other.write_attr("predicted_by", "/models/run1")
    assert any_scan.read_attr("queue") == [1, 2]
    assert any_scan.read_attr("predicted_by") == "/models/run1"


def test_zarr_reads_what_write_attr_wrote(any_scan):
    any_scan.write_attr("flags", [{"score": 0.5, "nan": float("nan")}])
    group = zarr.open_group(str(any_scan.path), mode="r")
    state = dict(group.attrs)[STATE_KEY]
    assert state["flags"][0]["score"] == 0.5 and np.isnan(state["flags"][0]["nan"])
    assert dict(group.attrs)[ATTRS_KEY]["classes"] == ["lesion"]
    # the group object the scan holds sees the write too (it is refreshed)
    assert dict(any_scan.group.attrs)[STATE_KEY]["flags"][0]["score"] == 0.5
    reopened = Scan.open(any_scan.path)
    assert reopened.read_attr("flags")[0]["score"] == 0.5
    if any_scan.zarr_format == 3:  # the format's own keys are kept
        doc = json.loads((any_scan.path / "zarr.json").read_text())
        assert doc["zarr_format"] == 3 and doc["node_type"] == "group"


def test_write_attr_goes_through_the_atomic_writer(any_scan, monkeypatch):
    """A temporary sibling synced then renamed over the metadata file: see test_atomic for
    the crash at each moment; here, that nothing else writes the file."""
    from napari_asymseg.store import atomic

    written = []
    real = atomic.write_text
    monkeypatch.setattr(atomic, "write_text", lambda p, t: (written.append(p), real(p, t)))
    any_scan.write_attr("queue", 1)
    name = "zarr.json" if any_scan.zarr_format == 3 else ".zattrs"
    assert written == [any_scan.path / name]


def test_a_value_that_is_not_json_is_refused_and_nothing_changes(any_scan):
    any_scan.write_attr("queue", 1)
    before = attrs.metadata_file(any_scan.path).read_bytes()
    with pytest.raises(ScanError, match="cannot store 'flags'"):
        any_scan.write_attr("flags", {1, 2})
    assert attrs.metadata_file(any_scan.path).read_bytes() == before


def test_a_read_only_scan_refuses_to_write_attributes(any_scan):
    with pytest.raises(ScanError, match="open read-only"):
        Scan.open(any_scan.path, mode="r").write_attr("queue", 1)


def test_a_lock_held_in_this_process_is_not_taken_twice(any_scan):
    """The dock holds the scan's lock; its worker thread's attribute write goes ahead."""
    with ScanLock(any_scan.path, "dock"):
        assert held_here(any_scan.path)
        any_scan.write_attr("predicted_by", "m")
    assert not held_here(any_scan.path)
    assert any_scan.read_attr("predicted_by") == "m"


def test_another_program_holding_the_lock_makes_the_write_wait_then_fail(any_scan, monkeypatch):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from napari_asymseg.store.lock import ScanLock\n"
            "lock = ScanLock(sys.argv[1], 'asymseg flag').acquire()\n"
            "print('held', flush=True); sys.stdin.read()",
            str(any_scan.path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(attrs, "LOCK_WAIT_S", 0.2)
        with pytest.raises(ScanBusy, match="being written by asymseg flag"):
            any_scan.write_attr("queue", 1)
    finally:
        holder.communicate("", timeout=60)
    assert any_scan.read_attr("queue") is None
    any_scan.write_attr("queue", 1)  # released: the write goes ahead
    assert any_scan.read_attr("queue") == 1


# ----------------------------------------------------------------------------- reading chunks


def _failing_store(monkeypatch, exc: BaseException) -> None:
    async def get(self, key, *args, **kwargs):
        if key.startswith("annotations/c"):  # the chunks; the metadata reads normally
            raise exc
        return await real(self, key, *args, **kwargs)

    real = zarr.storage.LocalStore.get
    monkeypatch.setattr(zarr.storage.LocalStore, "get", get)


def test_a_permission_error_says_so_not_damaged(scan, monkeypatch):
    chunk = str(scan.path / "annotations" / "c" / "0" / "0" / "0")
    _failing_store(monkeypatch, PermissionError(errno.EACCES, "Permission denied", chunk))
    with pytest.raises(ScanError) as err:
        read(scan.annotations)
    message = str(err.value)
    assert "permission denied" in message and "permissions and the owner" in message
    assert chunk in message and "damaged" not in message and "backup" not in message


@pytest.mark.parametrize("code", [errno.EIO, errno.EAGAIN, errno.ESTALE])
def test_a_passing_os_error_says_retry_not_damaged(scan, monkeypatch, code):
    _failing_store(monkeypatch, OSError(code, "failed", "chunk"))
    with pytest.raises(ScanError, match="cannot read chunk: failed: check the disk") as err:
        read(scan.annotations)
    assert "damaged" not in str(err.value) and "\n" not in str(err.value)


def test_a_chunk_that_does_not_decode_is_damaged(scan, monkeypatch):
    _failing_store(monkeypatch, RuntimeError("zstd: corrupted block"))
    with pytest.raises(ScanError, match="is damaged: a chunk cannot be read"):
        read(scan.annotations)
