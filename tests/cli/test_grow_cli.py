"""``asymseg grow``: the grown lesion written as annotation marked grown; --dry-run writes
nothing; the stored probability is used; the lock is held."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from napari_asymseg.cli.main import main
from napari_asymseg.store.lock import LOCK_FILE, ScanLock
from napari_asymseg.store.provenance import GROWN, read_provenance
from napari_asymseg.store.scan import Scan

SHAPE = (20, 48, 48)


def _scan(tmp_path, classes=("lesion", "cyst")) -> tuple[Scan, np.ndarray]:
    """A bright ball (radius 7) in noisy tissue; slice 10 painted background outside it."""
    zz, yy, xx = np.indices(SHAPE)
    blob = (zz - 10) ** 2 + (yy - 24) ** 2 + (xx - 24) ** 2 <= 49
    image = 100 + 60 * blob + np.random.default_rng(0).normal(0, 10, SHAPE)
    ann = np.zeros(SHAPE, np.uint8)
    ann[10] = np.where(blob[10], 0, 1)
    scan = Scan.create(
        tmp_path / "s.zarr", image.astype(np.float32), annotations=ann, classes=classes
    )
    return scan, blob


def _files(path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


def test_dry_run_reports_per_slice_and_writes_nothing(tmp_path, capsys):
    scan, _ = _scan(tmp_path)
    before = _files(scan.path)
    assert main(["grow", str(scan.path), "--at", "10,24,24", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("lesion: proposed ") and "from the image," in out[0]
    assert ", 10: " in out[0]
    assert out[-1].startswith("would grow ") and "nothing written (--dry-run)" in out[-1]
    assert _files(scan.path) == before


def test_grow_writes_grown_annotation_that_info_counts_apart(tmp_path, capsys):
    scan, blob = _scan(tmp_path)
    ann = scan.read_annotations()
    assert main(["grow", str(scan.path), "--at", "10,24,24", "--class", "cyst"]) == 0
    out = capsys.readouterr().out
    voxels = int(out.split("wrote ")[1].split()[0])
    after = Scan.open(scan.path).read_annotations()
    new = after != ann
    assert voxels == np.count_nonzero(new) > 0.8 * blob.sum()
    assert (after[new] == 3).all() and np.array_equal(after[ann != 0], ann[ann != 0])
    assert (read_provenance(Scan.open(scan.path).group)[new] == GROWN).all()
    assert main(["info", str(scan.path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["grown voxels"] == voxels and info["grown per class"]["cyst"] == voxels


def test_a_not_this_click_and_the_stored_probability_are_used(tmp_path, capsys):
    scan, blob = _scan(tmp_path)
    scan.write_result("probability", np.where(blob, 0.9, 0.1).astype(np.float16))
    argv = ["grow", str(scan.path), "--at", "10,24,24", "--dry-run"]
    assert main(argv) == 0
    whole = int(capsys.readouterr().out.split("proposed ")[1].split()[0])
    assert main([*argv, "--not", "10,24,30"]) == 0
    out = capsys.readouterr().out
    assert "from the image and the model's probability" in out
    assert int(out.split("proposed ")[1].split()[0]) < whole


def test_a_scan_being_written_is_refused_but_a_dry_run_reads_it(tmp_path, capsys):
    scan, _ = _scan(tmp_path)
    before = _files(scan.path)
    with ScanLock(scan.path, "the napari dock"):
        assert main(["grow", str(scan.path), "--at", "10,24,24"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is being written by the napari dock" in err[0]
        assert main(["grow", str(scan.path), "--at", "10,24,24", "--dry-run"]) == 0
    assert _files(scan.path) == before
