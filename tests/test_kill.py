"""Kill tests: real processes SIGKILLed at random moments while they paint, train, predict
and export. After each kill the scan opens, its lock is free, the painting is intact up to
the last autosave, a training run resumes from its last checkpoint, and no half-written file
stands where a complete one belongs.

The kill moments are drawn from a seeded generator (``KILL_SEED``), so a failure reproduces.
Each test prints its figures (kills, what survived, the painting lost), which
docs/guarantees.md reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _kill_child import PAINT_MS, SHAPE, stroke_box, stroke_value
from engine_helpers import tiny_config, tiny_scan
from napari_asymseg._qt.autosave import AUTOSAVE_MS
from napari_asymseg.infer.predict import predict
from napari_asymseg.io.exporters import read_mask
from napari_asymseg.model.checkpoint import CHECKPOINT
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.store.lock import ScanLock
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.events import Started
from napari_asymseg.train.loop import fit

pytestmark = pytest.mark.slow

KILL_SEED = 20261124
HERE = Path(__file__).parent
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "QT_QPA_PLATFORM": "offscreen"}
TINY = [  # tiny_config's network and data, so that an in-process run can resume it
    *("--filters", "8", "16", "16", "--patch-size", "8", "24", "24"),
    *("--loss", "ce", "--lr", "0.01", "--val-fraction", "0.34"),
]


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "napari_asymseg.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        **kwargs,
    )


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def kill_while_writing(proc: subprocess.Popen, folder: Path, rng: random.Random, most: float):
    """SIGKILL ``proc`` a random moment (up to ``most`` s) after its temporary output shows up
    in ``folder``; returns whether the kill came mid-write (else the process had finished)."""
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if any(p.name.startswith(".tmp") for p in folder.iterdir()):
            time.sleep(rng.uniform(0, most))
            break
        time.sleep(0.005)
    finished = proc.poll() is not None
    kill(proc)
    return not finished


def assert_sound(path: Path) -> Scan:
    """The scan opens for writing (recovering leftovers) and nobody holds its lock."""
    scan = Scan.open(path)
    ScanLock(path, "kill test").acquire().release()
    assert not [p for p in path.rglob("*") if p.name.startswith(".tmp")], "leftovers remain"
    return scan


def read_log(path: Path) -> list[tuple[str, int, float]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:  # the last line may be cut by the kill
            rows.append((parts[0], int(parts[1]), float(parts[2])))
    return rows


def strokes_on_disk(ann: np.ndarray, painted: int) -> set[int]:
    """Which of strokes 1..painted the saved annotations hold; asserts nothing else is there."""
    found, expected = set(), np.zeros(SHAPE, np.uint8)
    for n in range(1, painted + 1):
        box = stroke_box(n)
        if (ann[box] == stroke_value(n)).all():
            found.add(n)
            expected[box] = stroke_value(n)
        else:
            assert (ann[box] == 0).all(), f"stroke {n} is half saved"
    np.testing.assert_array_equal(ann, expected)  # nothing but whole strokes, nothing torn
    return found


def _rows(log: Path) -> list[tuple[str, int, float]]:
    return read_log(log) if log.exists() else []


def wait_for_saves(log: Path, proc: subprocess.Popen, count: int) -> None:
    """Wait until the child has logged ``count`` autosaves: its autosave is running."""
    deadline = time.time() + 120  # a hang guard; no speed is asserted
    while [kind for kind, _, _ in _rows(log)].count("saved") < count:
        assert proc.poll() is None, f"the painting process died: {log.read_text()[-500:]}"
        assert time.time() < deadline, f"no {count} autosaves logged in 120 s"
        time.sleep(0.05)


def test_painting_survives_sigkill_up_to_the_last_autosave(tmp_path):
    """Counted in strokes, not seconds, so a loaded machine cannot fail it: every stroke logged
    before the last save marker is on disk, and what is lost fits in one autosave interval of
    painting (the painter manages at most one stroke per ``PAINT_MS``; a slow machine paints
    fewer, never more)."""
    rng = random.Random(KILL_SEED)
    one_interval = AUTOSAVE_MS // PAINT_MS  # strokes one autosave interval holds, at most
    losses = []
    for trial in range(4):
        scan = tiny_scan(tmp_path / f"paint{trial}.zarr", annotate=False)
        log = tmp_path / f"paint{trial}.log"
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "_kill_child.py"), str(scan.path), str(log)], env=ENV
        )
        wait_for_saves(log, proc, count=2)
        # trial i kills in the i-th quarter of a save cycle, the last one just before a save
        phase = (trial + rng.random()) / 4 + rng.randrange(2)  # in autosave intervals
        time.sleep(phase * AUTOSAVE_MS / 1000)
        kill(proc)
        killed_at = time.time()
        rows = read_log(log)
        painted = max((n for kind, n, _ in rows if kind == "painted"), default=0)
        saved = max((n for kind, n, _ in rows if kind == "saved"), default=0)
        on_disk = strokes_on_disk(assert_sound(scan.path).read_annotations(), painted)
        assert set(range(1, saved + 1)) <= on_disk, "an autosaved stroke was lost"
        lost = sorted(set(range(1, painted + 1)) - on_disk)
        # so only strokes painted after the last save are lost: at most one interval of them
        # (a quarter more for the timers' slack: Qt's coarse timers may drift 5 %)
        assert len(lost) <= 1.25 * one_interval, (len(lost), one_interval)
        first_lost = min((t for kind, n, t in rows if kind == "painted" and n in lost), default=0)
        seconds = killed_at - first_lost if lost else 0.0  # reported, not asserted
        losses.append((painted, saved, len(on_disk), len(lost), round(seconds, 2)))
    print(
        "painting kills (painted, logged saved, on disk, strokes lost, seconds lost; "
        f"one autosave interval = {one_interval} strokes): {losses}"
    )
    assert any(p > 0 for p, *_ in losses)


# rewrites the scan's attributes in a loop; the log line comes after each write has returned
ATTR_WRITER = """
import sys
from napari_asymseg.store.scan import Scan
scan = Scan.open(sys.argv[1])
log = open(sys.argv[2], "a", buffering=1)
for n in range(1, 10**9):
    scan.write_attr(f"key{n % 4}", {"n": n, "pad": "x" * (n % 7 * 900)})
    scan.write_attr("last", n)
    log.write(f"{n}\\n")
"""


def test_attributes_killed_mid_write_are_whole_and_keep_every_key(tmp_path):
    """SIGKILL a process that rewrites the scan's attributes (the review state) in a loop:
    afterwards the metadata file always parses, the scan's own attributes (spacing, classes)
    are there, and so is every review key written before the kill, at its last or next
    value."""
    rng = random.Random(KILL_SEED + 4)
    scan = tiny_scan(tmp_path / "s.zarr", annotate=False)
    outcomes = []
    for trial in range(5):
        log = tmp_path / f"attrs{trial}.log"
        log.touch()
        proc = subprocess.Popen(
            [sys.executable, "-c", ATTR_WRITER, str(scan.path), str(log)], env=ENV
        )
        deadline = time.time() + 120  # a hang guard; no speed is asserted
        while len(log.read_text().split()) < 4:  # every key written at least once
            assert proc.poll() is None and time.time() < deadline, "the writer died or hung"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
        kill(proc)
        logged = int(log.read_text().split()[-1])
        doc = json.loads((scan.path / "zarr.json").read_text())  # never empty, never torn
        assert doc["attributes"]["asymseg"]["classes"] == ["lesion"]
        reopened = assert_sound(scan.path)
        last = reopened.read_attr("last")
        assert last in (logged, logged + 1), (last, logged)
        for k in range(4):  # every key is there, none lost to the other writes
            assert reopened.read_attr(f"key{k}")["n"] % 4 == k
        outcomes.append(last)
    print(f"attribute kills: the last write on disk each time {outcomes}")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill-model")
    scan = tiny_scan(root / "s.zarr")
    list(fit(scan, tiny_config(steps=4, val_every=4), root / "m"))
    return root / "m"


def test_training_resumes_from_its_last_checkpoint_after_sigkill(tmp_path):
    rng = random.Random(KILL_SEED + 1)
    scan = tiny_scan(tmp_path / "s.zarr")
    out = tmp_path / "m"
    args = ["train", str(scan.path), "--out", str(out), "--steps", "400", "--val-every", "5"]
    resumed = []
    for _ in range(3):
        proc = cli(*args, *TINY, *(["--resume"] if out.exists() else []))
        assert proc.stdout is not None
        while "training on" not in (proc.stdout.readline() or "training on"):
            pass
        time.sleep(rng.uniform(0.5, 3.0))
        kill(proc)
        assert_sound(scan.path)
        ckpt_path = out / CHECKPOINT
        if not ckpt_path.exists():
            continue
        ckpt = load_checkpoint(ckpt_path)  # never torn: written aside, then renamed
        assert ckpt["step"] % 5 == 0 and load_checkpoint(out)["step"] <= ckpt["step"]
        resumed.append(ckpt["step"])
    assert resumed, "no checkpoint was written before any kill: kill later"
    cfg = tiny_config(steps=resumed[-1] + 5, val_every=5)
    events = list(fit(scan, cfg, out, resume=True))
    started = next(e for e in events if isinstance(e, Started))
    assert started.start_step == resumed[-1]
    assert load_checkpoint(out / CHECKPOINT)["step"] == resumed[-1] + 5
    print(f"training kills: checkpoints at steps {resumed}, each resumed from")


def _tree_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(path)).encode() + p.read_bytes())
    return digest.hexdigest()


def test_prediction_killed_leaves_the_previous_results(tmp_path, model):
    rng = random.Random(KILL_SEED + 2)
    big = np.random.default_rng(0).normal(size=(48, 96, 96)).astype(np.float32)
    scan = Scan.create(tmp_path / "s.zarr", big, annotations=np.zeros(big.shape, np.uint8))
    list(predict(scan, model))
    old = _tree_hash(scan.path / "results")
    outcomes = []
    for _ in range(4):
        proc = cli("predict", str(scan.path), "--model", str(model), "--tta")
        mid_write = kill_while_writing(proc, scan.path / "results", rng, most=1.5)
        assert_sound(scan.path)
        now = _tree_hash(scan.path / "results")
        # killed mid-write: the old results stand, whole; finished: its own complete ones
        assert now == old or not mid_write, "a half-written prediction replaced the old one"
        outcomes.append("killed mid-write" if mid_write else "finished")
        old = now
    print(f"prediction kills: {outcomes}")
    assert "killed mid-write" in outcomes


@pytest.mark.parametrize("ext", [".nii.gz", ".tif", ".ome.zarr"])
def test_export_killed_leaves_no_half_file(tmp_path, ext):
    rng = random.Random(KILL_SEED + 3)
    noise = np.random.default_rng(3)
    shape = (96, 320, 320)  # big enough that writing takes a moment to land a kill in
    scan = Scan.create(
        tmp_path / "s.zarr",
        noise.normal(size=shape).astype(np.float32),
        annotations=noise.integers(0, 3, shape, dtype=np.uint8),
    )
    expected = np.where(scan.read_annotations() > 1, 1, 0)
    outcomes = []
    for trial in range(3):
        out = tmp_path / f"trial{trial}" / f"mask{ext}"
        out.parent.mkdir()
        proc = cli("export", str(scan.path), str(out), "--what", "annotations")
        mid_write = kill_while_writing(proc, out.parent, rng, most=0.005)
        assert_sound(scan.path)
        if out.exists():  # present means complete
            np.testing.assert_array_equal(read_mask(out).data, expected)
        else:
            assert mid_write
        outcomes.append("killed mid-write" if mid_write else "finished")
    print(f"export kills ({ext}): {outcomes}")
