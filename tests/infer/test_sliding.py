"""The streamed sliding window equals MONAI's on the whole volume, and ranges join seamlessly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.config import Config
from napari_asymseg.infer.predictor import Predictor
from napari_asymseg.infer.sliding import FLIPS, SlidingWindow, chunk_ranges, window_starts
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.model.networks import build_model, plan_network
from napari_asymseg.store.scan import Scan, read
from napari_asymseg.train.loop import fit


def _net(shape, patch, classes):
    torch.manual_seed(0)
    plan = plan_network((1, 1, 1), shape, 3, patch)
    cfg = Config()
    cfg.model.filters = (4, 8, 8)
    return build_model(cfg.model, plan, out_channels=classes).eval(), plan.patch_size


@pytest.mark.parametrize(
    ("shape", "patch", "classes"),
    [
        ((37, 50, 61), (16, 32, 32), 2),  # several rows; the last window aligned to the end
        ((10, 40, 20), (16, 32, 32), 3),  # thinner than the window along Z and X: padded
        ((32, 32, 32), (32, 32, 32), 2),  # one window
    ],
)
def test_stream_equals_monai_on_the_whole_volume(shape, patch, classes):
    net, patch = _net(shape, patch, classes)
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    padded = any(p > n for p, n in zip(patch, shape, strict=True))
    with torch.no_grad():
        ref = sliding_window_inference(
            torch.from_numpy(image)[None, None],
            patch,
            3,
            net,
            overlap=0.25,
            mode="gaussian",
            padding_mode="replicate" if padded else "constant",
        )[0]
    expected = ref[1:2] - ref[0:1] if classes == 2 else ref
    reads: list[tuple[int, int]] = []

    def read(a, b):
        reads.append((a, b))
        return image[a:b]

    sw = SlidingWindow(net, patch, shape, classes, overlap=0.25, batch=3)
    slabs = list(sw.stream(read))
    got = torch.cat([s.scores for s in slabs], 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert [s.z0 for s in slabs] == [0] + [s.z1 for s in slabs[:-1]]  # in order, no gaps
    covered = [z for a, b in reads for z in range(a, b)]
    assert len(covered) == len(set(covered)) == shape[0]  # every slice read once
    # any range of slices, computed on its own, equals that part of the whole
    for z0, z1 in [(0, 3), (5, 9), (shape[0] - 2, shape[0])]:
        part = torch.cat([s.scores for s in sw.stream(lambda a, b: image[a:b], z0, z1)], 1)
        torch.testing.assert_close(part, expected[:, z0:z1], atol=1e-5, rtol=1e-5)


def test_full_logits_and_flips_equal_monai():
    """``full`` blends both channels of two classes (validation scores its losses on them);
    flips average the window's logits over the in-plane flips, and a given list of flips is
    exactly those passes (one pass per flip is MONAI's call on the flipped volume)."""
    shape, classes = (20, 30, 26), 2
    net, patch = _net(shape, (16, 32, 32), classes)
    image = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    x = torch.from_numpy(image)[None, None]

    def monai(dims):
        xi = torch.flip(x, dims) if dims else x
        with torch.no_grad():
            out = sliding_window_inference(
                xi, patch, 4, net, overlap=0.25, mode="gaussian", padding_mode="replicate"
            )
        return (torch.flip(out, dims) if dims else out)[0]

    def window(flips):
        return SlidingWindow(net, patch, shape, classes, flips=flips, full=True)

    torch.testing.assert_close(window(False).whole(image), monai(()), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(window([(4,)]).whole(image), monai((4,)), atol=1e-5, rtol=1e-5)
    mean = sum(monai(d) for d in FLIPS) / len(FLIPS)
    torch.testing.assert_close(window(True).whole(image), mean, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mean, monai(()), atol=1e-3)  # the flips do change the logits
    margin_only = SlidingWindow(net, patch, shape, classes).whole(image)
    assert margin_only.shape == (1, *shape)


def test_window_starts_are_monai_s():
    assert window_starts(100, 40, 0.25) == [0, 30, 60]
    assert window_starts(40, 40, 0.25) == [0]
    assert list(chunk_ranges(5, 37, 16)) == [(5, 16), (16, 32), (32, 37)]


def test_results_in_pieces_equal_one_run(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    run = fit(scan, tiny_config(steps=6, val_every=6), tmp_path / "m")
    for _ in run:
        pass
    ckpt = load_checkpoint(tmp_path / "m")
    stats = (float(np.mean(read(scan.image))), 1.0)
    pred = Predictor.load(ckpt, scan.shape, (1.0, 1.0, 3.0), stats)
    assert pred.radius == 12  # scipy's gaussian reads 4 sigma: 4 * 3 mm / 1 mm

    def image(a, b):
        return read(scan.image, slice(a, b))

    def annotations(a, b):
        return read(scan.annotations, slice(a, b))

    whole = {k: np.concatenate(v) for k, v in _collect(pred.results(image, annotations, 0, 16, 16))}
    pieces = _collect(pred.results(image, annotations, 0, 16, 5))
    assert [len(v) for _, v in pieces][:1] == [4]  # 0:5, 5:10, 10:15, 15:16
    for name, parts in pieces:
        np.testing.assert_array_equal(np.concatenate(parts), whole[name], err_msg=name)
    apart = _collect(pred.results(image, annotations, 6, 11, 16))  # a block, as dask computes it
    for name, parts in apart:
        np.testing.assert_array_equal(np.concatenate(parts), whole[name][6:11], err_msg=name)
    assert not Scan.open(scan.path).results()  # nothing was written


def _collect(pieces):
    out: dict[str, list[np.ndarray]] = {}
    for _, _, res in pieces:
        for name, values in res.items():
            out.setdefault(name, []).append(values)
    return list(out.items())


def test_the_risk_in_bands_of_rows_equals_the_whole_plane(tmp_path, monkeypatch):
    from napari_asymseg.infer import predictor

    scan = tiny_scan(tmp_path / "s.zarr")
    for _ in fit(scan, tiny_config(steps=6, val_every=6), tmp_path / "m"):
        pass
    pred = Predictor.load(load_checkpoint(tmp_path / "m"), scan.shape, (1.0, 1.0, 1.0), (0.0, 1.0))

    def risk():
        pieces = pred.results(
            lambda a, b: read(scan.image, slice(a, b)),
            lambda a, b: read(scan.annotations, slice(a, b)),
            0,
            16,
            16,
        )
        return np.concatenate([res["risk"] for _, _, res in pieces])

    whole = risk()  # 40 rows: one band
    monkeypatch.setattr(predictor, "RISK_BAND", 7)  # six bands, each with 12 rows of context
    banded = risk()
    assert whole.max() > 0.1
    np.testing.assert_array_equal(banded, whole)
