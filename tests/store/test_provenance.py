"""Provenance: which annotation voxels a tool wrote, kept beside the codes and kept true."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_asymseg.cli.summary import scan_summary
from napari_asymseg.errors import ScanError
from napari_asymseg.store.provenance import (
    FILLED,
    PAINTED,
    PROVENANCE,
    REVIEWED,
    annotated_by_source,
    read_provenance,
)
from napari_asymseg.store.scan import Scan


def test_an_old_scan_without_provenance_reads_as_painted(scan):
    assert PROVENANCE not in scan.group
    source = read_provenance(scan.group)
    assert source.shape == scan.shape and not source.any()
    assert read_provenance(scan.group, (slice(2, 4),)).shape == (2, *scan.shape[1:])
    assert annotated_by_source(scan.group) == {}
    info = scan_summary(scan)
    assert info["filled voxels"] == 0 and info["filled per class"] == {"lesion": 0}


def test_painting_a_scan_without_provenance_does_not_create_it(scan):
    ann = scan.read_annotations()
    ann[7] = 1
    scan.write_annotations(ann[7:8], region=(slice(7, 8),))
    scan.write_annotations(ann)
    assert PROVENANCE not in Scan.open(scan.path).group


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_tool_write_is_kept_apart_and_survives_reopening(tmp_path, volume, zarr_format):
    ann = np.zeros(volume.shape, np.uint8)
    ann[5] = 1
    ann[5, 8:12, 6:10] = 2
    scan = Scan.create(tmp_path / "s.zarr", volume, annotations=ann, zarr_format=zarr_format)
    block = ann[6:8].copy()
    block[:, 8:12, 6:10] = 2  # 32 voxels written by the fill
    block[0, 0, 0] = 0  # unchanged: still not annotated
    scan.write_annotations(block, region=(slice(6, 8), slice(None), slice(None)), source=FILLED)
    again = Scan.open(scan.path)
    assert again.group[PROVENANCE].chunks == again.annotations.chunks
    source = read_provenance(again.group)
    expected = np.zeros(volume.shape, bool)
    expected[6:8, 8:12, 6:10] = True
    np.testing.assert_array_equal(source == FILLED, expected)
    counts = annotated_by_source(again.group)
    assert counts[FILLED] == {2: 32}
    assert counts[PAINTED] == {1: int((ann == 1).sum()), 2: 16}
    info = scan_summary(again)
    assert info["filled voxels"] == 32 and info["filled per class"] == {"lesion": 32}
    assert info["annotated per class"] == {"lesion": 48}


def test_repainting_a_filled_voxel_makes_it_painted(tmp_path, volume):
    scan = Scan.create(tmp_path / "s.zarr", volume)
    block = np.zeros((1, *volume.shape[1:]), np.uint8)
    block[0, 2:6, 2:6] = 2
    scan.write_annotations(block, region=(slice(4, 5),), source=FILLED)
    repaint = block.copy()
    repaint[0, 2, 2:6] = 1  # painted over as background: the user's now
    repaint[0, 3, 2] = 0  # erased
    scan.write_annotations(repaint, region=(slice(4, 5),))  # the dock's autosave
    source = read_provenance(scan.group)[4]
    assert (source[2, 2:6] == PAINTED).all() and source[3, 2] == PAINTED
    assert (source[3, 3:6] == FILLED).all() and (source[4:6, 2:6] == FILLED).all()
    # a whole-array write records the same way
    ann = scan.read_annotations()
    ann[4, 5, 5] = 1
    scan.write_annotations(ann)
    assert read_provenance(scan.group)[4, 5, 5] == PAINTED
    assert int((read_provenance(scan.group) == FILLED).sum()) == 16 - 4 - 1 - 1


def test_a_whole_write_from_a_tool_marks_only_what_it_changes(tmp_path, volume):
    scan = Scan.create(tmp_path / "s.zarr", volume)
    ann = scan.read_annotations()
    ann[2, 1:3, 1:3] = 1
    scan.write_annotations(ann, source=REVIEWED)
    source = read_provenance(scan.group)
    assert int((source == REVIEWED).sum()) == 4 and (source[2, 1:3, 1:3] == REVIEWED).all()


def test_an_unknown_source_is_refused(scan):
    with pytest.raises(ScanError, match="unknown annotation source 9"):
        scan.write_annotations(scan.read_annotations(), source=9)


def test_a_provenance_of_another_shape_is_one_line(scan):
    zarr.open_group(str(scan.path), mode="r+").create_array(
        PROVENANCE, shape=(2, 2, 2), dtype=np.uint8
    )
    with pytest.raises(ScanError, match="delete the folder provenance") as err:
        read_provenance(Scan.open(scan.path).group)
    assert "\n" not in str(err.value)
