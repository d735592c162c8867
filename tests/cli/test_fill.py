"""``asymseg fill``: the fill written as annotation marked filled; --dry-run writes nothing."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from napari_asymseg.cli.main import main
from napari_asymseg.store.lock import LOCK_FILE, ScanLock
from napari_asymseg.store.provenance import FILLED, read_provenance
from napari_asymseg.store.scan import Scan

SHAPE = (16, 40, 40)


def _scan(tmp_path, classes=("lesion", "cyst")) -> Scan:
    """A lesion (class 1) painted on slices 4 and 8, a cyst (class 2) on 9 and 12; the rest of
    those slices background."""
    zz, yy, xx = np.indices(SHAPE)
    lesion = (zz - 6) ** 2 / 6 + ((yy - 12) ** 2 + (xx - 12) ** 2) / 36 <= 1  # slices 4 to 8
    cyst = (zz - 10.5) ** 2 / 4 + ((yy - 28) ** 2 + (xx - 28) ** 2) / 25 <= 1  # 9 to 12
    truth = lesion.astype(np.uint8) + 2 * cyst
    ann = np.zeros(SHAPE, np.uint8)
    for z in (4, 8, 9, 12):
        ann[z] = truth[z] + 1
    return Scan.create(
        tmp_path / "s.zarr", np.zeros(SHAPE, np.float32), annotations=ann, classes=classes
    )


def _files(path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


def test_dry_run_reports_per_class_and_slice_and_writes_nothing(tmp_path, capsys):
    scan = _scan(tmp_path)
    before = _files(scan.path)
    assert main(["fill", str(scan.path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("lesion: ") and "on 3 slices: 5: " in out[0]
    assert out[1].startswith("cyst: ") and "on 2 slices: 10: " in out[1]
    assert out[-1].startswith("would fill ") and "nothing written (--dry-run)" in out[-1]
    assert _files(scan.path) == before


def test_fill_writes_filled_annotation_that_info_counts_apart(tmp_path, capsys):
    scan = _scan(tmp_path)
    ann = scan.read_annotations()
    assert main(["fill", str(scan.path)]) == 0
    out = capsys.readouterr().out
    voxels = int(out.split("wrote ")[1].split()[0])
    after = Scan.open(scan.path).read_annotations()
    new = after != ann
    assert np.count_nonzero(new) == voxels > 0
    assert not new[ann != 0].any()  # paint untouched
    assert set(np.flatnonzero(new.any(axis=(1, 2)))) == {5, 6, 7, 10, 11}
    assert (read_provenance(scan.group)[new] == FILLED).all()
    assert main(["info", str(scan.path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["filled voxels"] == voxels
    assert info["filled per class"]["lesion"] == np.count_nonzero(after[new] == 2)
    assert info["filled per class"]["cyst"] == np.count_nonzero(after[new] == 3)
    # filled again: nothing is left between painted slices
    assert main(["fill", str(scan.path)]) == 2
    assert "nothing to fill" in capsys.readouterr().err


def test_fill_one_class(tmp_path, capsys):
    scan = _scan(tmp_path)
    assert main(["fill", str(scan.path), "--class", "cyst"]) == 0
    assert "lesion" not in capsys.readouterr().out
    source = read_provenance(Scan.open(scan.path).group)
    assert set(np.flatnonzero((source == FILLED).any(axis=(1, 2)))) == {10, 11}


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["--class", "tumour"],
            "--class 'tumour' is not a class of s.zarr: use one of lesion, cyst",
        ),
        (["--dry-run", "--class", "x"], "is not a class"),
    ],
)
def test_bad_class_is_one_line(tmp_path, capsys, argv, fragment):
    scan = _scan(tmp_path)
    assert main(["fill", str(scan.path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_a_scan_being_written_is_refused_but_a_dry_run_reads_it(tmp_path, capsys):
    scan = _scan(tmp_path)
    before = _files(scan.path)
    with ScanLock(scan.path, "the napari dock"):
        assert main(["fill", str(scan.path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is being written by the napari dock" in err[0]
        assert main(["fill", str(scan.path), "--dry-run"]) == 0
    assert _files(scan.path) == before


def test_nothing_to_fill_is_one_line(tmp_path, capsys):
    scan = Scan.create(tmp_path / "s.zarr", np.zeros(SHAPE, np.float32))
    assert main(["fill", str(scan.path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "asymseg: error: nothing to fill: no class has two painted lesion slices with unpainted "
        "slices between them: paint the lesion on two slices with unpainted slices between "
        "them, then fill"
    ]


def test_lesions_left_out_are_reported_and_nothing_written(tmp_path, capsys):
    ann = np.zeros(SHAPE, np.uint8)
    ann[4], ann[8] = 1, 1
    ann[4, 5:9, 5:9] = 2  # a lesion on slice 4 and another far away on slice 8
    ann[8, 30:34, 30:34] = 2
    scan = Scan.create(tmp_path / "s.zarr", np.zeros(SHAPE, np.float32), annotations=ann)
    before = _files(scan.path)
    assert main(["fill", str(scan.path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[-1].startswith("nothing filled")
    assert out[0].startswith("lesion, slices 4-8: not filled: the lesion at slice 4 (z 4, y 6")
    assert _files(scan.path) == before
