"""Scale-out: prediction and flagging on a dask cluster equal the single-process path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine_helpers import tiny_config
from napari_asymseg.infer.predict import predict
from napari_asymseg.infer.scaleout import block_depths, flag_dask, predict_dask
from napari_asymseg.review.flags import flag_scan
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.loop import fit


def deep_scan(path) -> Scan:
    """150 slices: three dask blocks (64, 64, 22), lesions on both sides of each seam."""
    rng = np.random.default_rng(0)
    shape = (150, 32, 32)
    zz, yy, xx = np.indices(shape)
    gt = np.zeros(shape, np.uint8)
    for cz in (10, 40, 63, 66, 100, 127, 130, 145):
        cy, cx = rng.integers(8, 24, 2)
        gt[(zz - cz) ** 2 / 9 + (yy - cy) ** 2 / 16 + (xx - cx) ** 2 / 16 <= 1] = 1
    image = rng.normal(0, 1, shape) + 2.5 * gt
    ann = np.zeros(shape, np.uint8)
    for z in (10, 40, 41, 100, 101, 145):
        ann[z] = gt[z] + 1
    return Scan.create(path, image.astype(np.float32), annotations=ann, ground_truth=gt)


def test_blocks_are_whole_chunks_and_deep_enough():
    assert block_depths(150, 20, 16) == (64, 64, 22)
    assert block_depths(140, 20, 16) == (64, 76)  # a last block thinner than the overlap joins
    assert block_depths(30, 20, 16) == (30,)
    assert block_depths(300, 100, 16) == (112, 188)


@pytest.mark.slow
def test_a_local_cluster_predicts_and_flags_as_one_process(tmp_path):
    from distributed import LocalCluster

    scan = deep_scan(tmp_path / "s.zarr")
    for _ in fit(scan, tiny_config(steps=20, val_every=20), tmp_path / "m"):
        pass
    for _ in predict(scan, tmp_path / "m"):
        pass
    single = {k: v[...] for k, v in Scan.open(scan.path).results().items()}
    flags = flag_scan(scan)
    assert flags, "the test needs regions at risk"
    scan.write_result("prediction", np.zeros(scan.shape, np.uint8))  # not left over by chance

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        events = list(predict_dask(scan, tmp_path / "m", address=cluster.scheduler_address))
        assert [e.done for e in events[:-1]][-1] == scan.shape[0]
        got = {k: v[...] for k, v in Scan.open(scan.path).results().items()}
        dask_flags = flag_dask(scan, address=cluster.scheduler_address)

    assert set(got) == set(single) == {"prediction", "probability", "risk"}
    np.testing.assert_array_equal(got["prediction"], single["prediction"])
    for name in ("probability", "risk"):
        np.testing.assert_allclose(
            got[name].astype(np.float32), single[name].astype(np.float32), atol=2e-3
        )
    assert len(dask_flags) == len(flags)
    for a, b in zip(dask_flags, flags, strict=True):
        # the risk agrees to 2e-3 (above): of two near-equal peaks the other may be highest
        assert max(abs(p - q) for p, q in zip(a.center, b.center, strict=True)) <= 1
        same = {"expected_missed": 0, "expected_mm3": 0, "max_risk": 0, "center": (0, 0, 0)}
        assert dataclasses.replace(a, **same) == dataclasses.replace(b, **same)
        assert a.expected_missed == pytest.approx(b.expected_missed, rel=1e-4)


def test_cli_unreachable_scheduler_is_a_clear_error(tmp_path, capsys):
    from engine_helpers import tiny_scan
    from napari_asymseg.cli.main import main

    scan = tiny_scan(tmp_path / "s.zarr")
    for _ in fit(scan, tiny_config(steps=2, val_every=2), tmp_path / "m"):
        pass

    def files():  # the scan as the user left it (the lock file aside)
        return {p: p.stat().st_mtime_ns for p in scan.path.rglob("*") if p.suffix != ".lock"}

    before = files()
    code = main(
        ["predict", str(scan.path), "--model", str(tmp_path / "m"), "--dask", "tcp://127.0.0.1:9"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in err
    assert "Traceback" not in err
    assert files() == before
