"""The one atomic writer, crashed on purpose.

Each kind of write runs in a child process that dies (``os._exit``: no ``finally``, no
cleanup, like a SIGKILL) at one moment of the write:

``rename``    the new content is written and synced, nothing is renamed yet;
``between``   a folder swap moved the old content aside but not the new one in;
``dirsync``   the new content is renamed into place, its directory not yet synced.

Then recovery runs (:func:`atomic.recover`, or :meth:`Scan.open` for a scan) and the content
must be exactly the old one (the first two) or the new one (the last), whole, with no
``.tmp-``/``.old-`` leftover anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_asymseg.store import atomic
from napari_asymseg.store.scan import Scan

SHAPE = (6, 20, 18)
DTYPES = {"prediction": np.uint8, "probability": np.float32, "risk": np.float32}
DTYPE_NAMES = {name: np.dtype(dtype).name for name, dtype in DTYPES.items()}
CRASH = 86  # the child's exit status when it died at the chosen moment

# The child: patch the renames and the directory sync to die at ``point``, then do the write.
CHILD = rf"""
import os, sys
from pathlib import Path
from napari_asymseg.store import atomic

kind, point, root = sys.argv[1], sys.argv[2], Path(sys.argv[3])
real_rename, real_replace, real_sync = os.rename, os.replace, atomic.fsync_dir
armed = False

def leftover(p):
    return atomic.LEFTOVER.fullmatch(os.path.basename(os.fspath(p))) is not None

def moving(real):
    def move(src, dst, *args, **kwargs):
        global armed
        ours = leftover(src) or leftover(dst)  # not zarr's own chunk renames
        into_place = ours and not leftover(dst)
        if ours and (point == "rename" or (point == "between" and into_place)):
            os._exit({CRASH})
        real(src, dst, *args, **kwargs)
        armed = armed or into_place
    return move

def sync(path):
    if armed and point == "dirsync":
        os._exit({CRASH})
    real_sync(path)

os.rename, os.replace, atomic.fsync_dir = moving(real_rename), moving(real_replace), sync
exec(sys.stdin.read())
os._exit(0)
"""

# What each kind's child does: the new content replaces the old one set up by setup().
WRITES = {
    "write_json": "atomic.write_json(root / 'f.json', {'v': 'new', 'pad': 'n' * 4000})",
    "write_with": "atomic.write_with(root / 'f.bin', lambda f: f.write(b'new' * 5000))",
    "open_atomic": (
        "with atomic.open_atomic(root / 'f.txt', 'w') as f:\n"
        "    for _ in range(500): f.write('new line\\n')"
    ),
    "swap_in": (
        "new = atomic.temporary_name(root / 'd')\n"
        "(new / 'sub').mkdir(parents=True)\n"
        "(new / 'a.txt').write_text('new')\n"
        "(new / 'sub' / 'b.txt').write_text('new')\n"
        "atomic.swap_in(new, root / 'd')"
    ),
    "create": (
        "import numpy as np\nfrom napari_asymseg.store.scan import Scan\n"
        f"Scan.create(root / 's.zarr', np.full({SHAPE}, 2.0, np.float32), overwrite=True,\n"
        f"            annotations=np.full({SHAPE}, 2, np.uint8))"
    ),
    "write_result": (
        "import numpy as np\nfrom napari_asymseg.store.scan import Scan\n"
        f"Scan.open(root / 's.zarr').write_result('prediction', np.full({SHAPE}, 2, np.uint8))"
    ),
    "writing_results": (
        "import numpy as np\nfrom napari_asymseg.store.scan import Scan\n"
        f"with Scan.open(root / 's.zarr').writing_results({DTYPE_NAMES}) as out:\n"
        "    for array in out.values(): array[...] = 2\n"
    ),
    # the scan's attributes (spacing, classes, review state) are one file, rewritten whole
    "write_attr": (
        "from napari_asymseg.store.scan import Scan\n"
        "Scan.open(root / 's.zarr').write_attr('queue', {'v': 'new', 'pad': 'n' * 4000})"
    ),
}
FILE_KINDS = ("write_json", "write_with", "open_atomic", "write_attr")
SCAN_KINDS = ("create", "write_result", "writing_results", "write_attr")


def setup(kind: str, root: Path) -> None:
    """The old content: ``old`` (files) or 1 (arrays)."""
    if kind == "write_json":
        atomic.write_json(root / "f.json", {"v": "old", "pad": "o" * 4000})
    elif kind == "write_with":
        atomic.write_bytes(root / "f.bin", b"old" * 3000)
    elif kind == "open_atomic":
        atomic.write_text(root / "f.txt", "old line\n" * 300)
    elif kind == "swap_in":
        (root / "d" / "sub").mkdir(parents=True)
        (root / "d" / "a.txt").write_text("old")
        (root / "d" / "sub" / "b.txt").write_text("old")
    elif kind == "write_attr":
        scan = Scan.create(root / "s.zarr", np.ones(SHAPE, np.float32), classes=("a", "b"))
        scan.write_attr("flags", [1, 2, 3])  # a key the new write must keep
        scan.write_attr("queue", {"v": "old", "pad": "o" * 4000})
    else:
        ones = np.ones(SHAPE, np.uint8)
        scan = Scan.create(root / "s.zarr", ones * 1.0, annotations=ones, classes=("a", "b"))
        with scan.writing_results(DTYPES) as out:
            for array in out.values():
                array[...] = 1


def content(kind: str, root: Path) -> str:
    """``old`` or ``new`` when the content is one of them whole; anything else fails."""
    if kind == "write_json":
        data = json.loads((root / "f.json").read_text())
        assert data["pad"] == data["v"][0] * 4000, "torn"
        return data["v"]
    if kind == "write_with":
        data = (root / "f.bin").read_bytes()
        assert data in (b"old" * 3000, b"new" * 5000), f"torn: {len(data)} bytes"
        return data[:3].decode()
    if kind == "open_atomic":
        lines = set((root / "f.txt").read_text().splitlines())
        assert len(lines) == 1, "torn"
        return lines.pop().split()[0]
    if kind == "swap_in":
        found = {(root / "d" / p).read_text() for p in ("a.txt", "sub/b.txt")}
        assert len(found) == 1, f"torn: {found}"
        return found.pop()
    scan = Scan.open(root / "s.zarr")  # read-write: this is the recovery
    if kind == "write_attr":
        json.loads((root / "s.zarr" / "zarr.json").read_text())  # parses: not torn, not empty
        assert scan.classes == ("a", "b") and scan.read_attr("flags") == [1, 2, 3]
        queue = scan.read_attr("queue")
        assert queue["pad"] == queue["v"][0] * 4000, "torn"
        return queue["v"]
    if kind == "create":
        values = {*np.unique(scan.image[...]), *np.unique(scan.read_annotations())}
    elif kind == "write_result":
        values = set(np.unique(scan.result("prediction")[...]))
    else:
        assert sorted(scan.results()) == sorted(DTYPES), "a result went missing"
        values = {v for array in scan.results().values() for v in np.unique(array[...])}
    assert len(values) == 1, f"torn, or old and new mixed: {values}"
    return {1: "old", 2: "new"}[int(values.pop())]


def leftovers(root: Path) -> list[str]:
    found = (p for p in root.rglob("*") if atomic.LEFTOVER.match(p.name))
    return sorted(str(p.relative_to(root)) for p in found)


CASES = [
    (kind, point)
    for kind in WRITES
    for point in ("rename", "between", "dirsync")
    if not (kind in FILE_KINDS and point == "between")  # a file has one rename only
]


@pytest.mark.parametrize(("kind", "point"), CASES)
def test_a_crash_leaves_the_old_or_the_new_content_whole(tmp_path, kind, point):
    setup(kind, tmp_path)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, kind, point, str(tmp_path)],
        input=WRITES[kind],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert child.returncode == CRASH, f"the child did not die at {point}: {child.stderr}"
    # a file is complete once renamed; everything else leaves something to finish
    assert bool(leftovers(tmp_path)) != (kind in FILE_KINDS and point == "dirsync")
    if kind not in SCAN_KINDS:
        atomic.recover(tmp_path)
    expected = "new" if point == "dirsync" else "old"
    assert content(kind, tmp_path) == expected
    assert leftovers(tmp_path) == []


def test_the_crash_child_writes_normally_when_not_crashed(tmp_path):
    """Without a crash point the same child finishes and every kind ends up new."""
    for kind in WRITES:
        (tmp_path / kind).mkdir()
        setup(kind, tmp_path / kind)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, kind, "none", str(tmp_path / kind)],
            input=WRITES[kind],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == 0, child.stderr
        assert leftovers(tmp_path / kind) == []
        assert content(kind, tmp_path / kind) == "new", kind


# ----------------------------------------------------------------------------- fsync


@pytest.fixture
def synced(monkeypatch):
    """Record, in order, every ``fsync`` (as the path of its descriptor) and every rename."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name a descriptor's file")
    events: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src, dst):
        events.append(("rename", f"{os.fspath(src)} -> {os.fspath(dst)}"))
        real_rename(src, dst)

    def replace(src, dst):
        events.append(("rename", f"{os.fspath(src)} -> {os.fspath(dst)}"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_a_file_write_syncs_the_file_then_renames_then_syncs_the_folder(tmp_path, synced):
    target = tmp_path / "f.json"
    atomic.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [kind for kind, _ in synced] == ["fsync", "rename", "fsync"]
    tmp = synced[0][1]
    assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(".tmp-f.json-")
    assert synced[1][1] == f"{tmp} -> {target}"
    assert synced[2][1] == str(tmp_path)


def test_write_attr_syncs_the_new_metadata_then_renames_then_syncs_the_scan(tmp_path, synced):
    scan = Scan.create(tmp_path / "s.zarr", np.ones(SHAPE, np.float32))
    del synced[:]
    scan.write_attr("queue", [1])
    renames = [p for kind, p in synced if kind == "rename"]
    assert len(renames) == 1 and renames[0].endswith(f" -> {scan.path / 'zarr.json'}")
    tmp = renames[0].split(" -> ")[0]
    assert Path(tmp).name.startswith(".tmp-zarr.json-")
    at = synced.index(("rename", renames[0]))
    assert ("fsync", tmp) in synced[:at]  # the content is on disk before the name points to it
    assert ("fsync", str(scan.path)) in synced[at:]  # and the rename is durable


def test_a_folder_swap_syncs_every_new_file_and_folder_before_the_rename(tmp_path, synced):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old.txt").write_text("old")
    new = atomic.temporary_name(tmp_path / "d")
    (new / "sub").mkdir(parents=True)
    for name in ("a", "b", "sub/c"):
        (new / name).write_text(name)
    atomic.swap_in(new, tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "d").rglob("*")) == ["a", "b", "c", "sub"]
    first_rename = next(i for i, (kind, _) in enumerate(synced) if kind == "rename")
    before = {path for kind, path in synced[:first_rename] if kind == "fsync"}
    assert before == {str(new / "a"), str(new / "b"), str(new / "sub" / "c")} | {
        str(new),
        str(new / "sub"),
    }
    last_rename = max(i for i, (kind, _) in enumerate(synced) if kind == "rename")
    assert synced[last_rename][1].endswith(f" -> {tmp_path / 'd'}")
    assert ("fsync", str(tmp_path)) in synced[last_rename:]


def test_writing_results_syncs_the_new_arrays_before_they_replace_the_old(scan, synced):
    with scan.writing_results(DTYPES) as out:
        for array in out.values():
            array[...] = 1
    results = scan.path / "results"
    into_place = [
        i for i, (kind, p) in enumerate(synced) if kind == "rename" and p.endswith(f" -> {results}")
    ]
    assert len(into_place) == 1
    fresh = Path(synced[into_place[0]][1].split(" -> ")[0]).name  # .tmp-results-xxxxxxxx
    assert fresh.startswith(".tmp-results-")
    aside = [
        i
        for i, (kind, p) in enumerate(synced)
        if kind == "rename" and Path(p.split(" -> ")[1]).name.startswith(".old-results-")
    ]
    assert len(aside) == 1  # the old results/ moved aside: the swap begins
    first = aside[0]
    before = {
        Path(p).relative_to(results / fresh)
        for kind, p in synced[:first]
        if kind == "fsync" and Path(p).is_relative_to(results / fresh)
    }
    files = {p.relative_to(results) for p in results.rglob("*") if p.is_file()}
    assert len(files) > 3 and files <= before  # every file of the new set, and its folders
    assert {Path(name) for name in DTYPES} <= before
    assert ("fsync", str(scan.path)) in synced[into_place[0] :]  # the folder holding results/


# ----------------------------------------------------------------------------- failures


def test_a_failed_file_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "f.txt"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError), atomic.open_atomic(target, "w") as f:
        f.write("half of the new")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_a_new_folder_inside_the_one_it_replaces_is_swapped_in(tmp_path):
    """A new ``results/`` built in ``results/.tmp-…`` (how a prediction writes its set)."""
    target = tmp_path / "results"
    (target / "old").mkdir(parents=True)
    new = target / atomic.temporary_name(target).name
    (new / "fresh").mkdir(parents=True)
    atomic.swap_in(new, target)
    assert sorted(os.listdir(target)) == ["fresh"]
    assert os.listdir(tmp_path) == ["results"]


def test_recover_restores_a_moved_aside_folder_and_drops_the_rest(tmp_path):
    (tmp_path / ".old-a-0123abcd").mkdir()  # between the renames: a is missing
    (tmp_path / ".old-a-0123abcd" / "x").write_text("old a")
    (tmp_path / "b").mkdir()
    (tmp_path / ".old-b-89abcdef").mkdir()  # after the renames: b is the new one
    (tmp_path / ".tmp-c-00000000").write_text("never finished")
    (tmp_path / ".tmp-other-11111111").write_text("someone else's")
    done = atomic.recover(tmp_path, only="a")
    assert done == ["restored a"]
    assert (tmp_path / "a" / "x").read_text() == "old a"
    assert (tmp_path / ".old-b-89abcdef").exists()  # not ``only``: left alone
    done = atomic.recover(tmp_path)
    assert sorted(done) == [
        "removed .old-b-89abcdef",
        "removed .tmp-c-00000000",
        "removed .tmp-other-11111111",
    ]
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_a_scan_opened_read_only_is_not_recovered(tmp_path):
    """Recovery writes, so only a writable open does it (a reader sees the old results)."""
    scan = Scan.create(tmp_path / "s.zarr", np.ones(SHAPE, np.float32))
    stray = scan.path / ".tmp-annotations-0123abcd"
    stray.mkdir()
    Scan.open(scan.path, mode="r")
    assert stray.exists()
    Scan.open(scan.path)
    assert not stray.exists()
