import numpy as np
import pytest

from napari_asymseg.cli.main import main
from napari_asymseg.errors import ScanError
from napari_asymseg.samples import sample_data
from napari_asymseg.samples.sample_data import (
    SAMPLE_NAME,
    build_colin27,
    colin27_files,
    committed_sample,
    sample_scan,
    write_sample_scan,
)
from napari_asymseg.store.scan import Scan


def test_committed_sample_is_reproducible(tmp_path):
    committed = committed_sample()
    assert committed is not None, "sample_data/sample-lesions.zarr is missing"
    fresh = write_sample_scan(tmp_path / SAMPLE_NAME)
    ref = Scan.open(committed, mode="r")
    np.testing.assert_array_equal(fresh.ground_truth[...], ref.ground_truth[...])
    np.testing.assert_array_equal(fresh.read_annotations(), ref.read_annotations())
    # int16 rounding may differ by one where a float sits on .5 across numpy builds
    diff = np.abs(fresh.image[...].astype(np.int32) - ref.image[...].astype(np.int32))
    assert diff.max() <= 1
    assert ref.spacing == fresh.spacing


def test_committed_sample_is_small_sparse_and_imbalanced():
    scan = Scan.open(committed_sample(), mode="r")
    size = sum(f.stat().st_size for f in scan.path.rglob("*") if f.is_file())
    assert size < 4 * 2**20
    gt = scan.ground_truth[...]
    assert 0.002 <= gt.mean() <= 0.02
    ann = scan.read_annotations()
    annotated_slices = np.flatnonzero((ann > 0).any(axis=(1, 2)))
    assert 3 <= annotated_slices.size <= 8
    assert (ann >= 2).sum() > 0
    # the annotated slices are fully labelled, and agree with the ground truth
    z = annotated_slices
    np.testing.assert_array_equal(ann[z], gt[z] + 1)


def test_working_copy_protects_the_committed_sample(tmp_path):
    path = sample_scan(tmp_path)
    Scan.open(path).write_annotations(np.ones((1, 112, 112), np.uint8), region=(slice(0, 1),))
    assert sample_scan(tmp_path) == path  # the user's copy is kept, with its edits
    assert (Scan.open(path).read_annotations()[0] == 1).all()
    assert not (Scan.open(committed_sample()).read_annotations()[0] == 1).all()
    fresh = sample_scan(tmp_path, fresh=True)
    assert not (Scan.open(fresh).read_annotations()[0] == 1).all()


def test_sample_is_regenerated_when_not_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(sample_data, "committed_sample", lambda: None)
    scan = Scan.open(sample_scan(tmp_path))
    assert scan.shape == sample_data.SAMPLE_SHAPE and scan.ground_truth is not None


def test_colin27_missing_files_message(tmp_path):
    with pytest.raises(ScanError, match="apt-get install mricron-data"):
        colin27_files(tmp_path)


needs_colin = pytest.mark.skipif(
    not (sample_data.COLIN27_DIR / "aal.nii.gz").exists(),
    reason="Debian package mricron-data not installed (scripts/test.sh installs it)",
)


@pytest.mark.colin27
@needs_colin
def test_colin27_builder(tmp_path):
    scan = build_colin27(tmp_path / "colin27.zarr")
    assert scan.shape == (181, 217, 181)
    assert scan.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert scan.classes == ("hippocampus",)
    gt = scan.ground_truth[...]
    frac = gt.mean()
    assert 0.0005 < frac < 0.005  # two small structures in a whole head
    ann = scan.read_annotations()
    # stored (z, y, x) = NIfTI (k, j, i); i runs left -> right (x = i - 90)
    left, right = ann[:, :, :90], ann[:, :, 91:]
    assert (left > 0).all() and (right == 0).all()
    assert (left == 2).sum() == gt[:, :, :90].sum() > 1000
    assert gt[:, :, 91:].sum() > 1000  # the right hippocampus is kept for testing


@pytest.mark.colin27
@needs_colin
def test_colin27_via_import_command(tmp_path):
    d = sample_data.COLIN27_DIR
    out = tmp_path / "colin.zarr"
    code = main(
        [
            "import",
            str(d / "ch2bet.nii.gz"),
            str(out),
            "--labels",
            str(d / "aal.nii.gz"),
            "--label-map",
            "37:1,38:1",
            "--classes",
            "hippocampus",
        ]
    )
    assert code == 0
    counts = Scan.open(out).annotation_counts()
    assert set(counts) == {1, 2} and counts[2] > 2000
