"""Channels-last training where it was measured faster (fp32 on an AVX2 CPU), and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.infer.predict import predict
from napari_asymseg.store.scan import Scan
from napari_asymseg.train import device as dev
from napari_asymseg.train.events import Finished
from napari_asymseg.train.loop import fit

CPU, CL, DEFAULT = torch.device("cpu"), torch.channels_last_3d, torch.contiguous_format


@pytest.mark.parametrize(
    ("isa", "amp", "layout"),
    [("AVX2", None, CL), ("AVX512", None, DEFAULT), ("AVX2", torch.bfloat16, DEFAULT)],
)
def test_channels_last_only_for_fp32_on_avx2(monkeypatch, isa, amp, layout):
    monkeypatch.delenv("ASYMSEG_CHANNELS_LAST", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: isa)
    assert dev.memory_format(CPU, amp) == layout
    if torch.cuda.is_available():
        assert dev.memory_format(torch.device("cuda"), None) == DEFAULT


def test_a_channels_last_run_trains_and_its_model_predicts(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYMSEG_CHANNELS_LAST", "1")
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=40, val_every=20)
    cfg.train.amp = "off"
    done = [e for e in fit(scan, cfg, tmp_path / "m") if isinstance(e, Finished)][0]
    assert np.isfinite(done.best_dsc) and done.best_dsc > 0.3
    monkeypatch.setenv("ASYMSEG_CHANNELS_LAST", "0")  # a machine that trains contiguously
    list(predict(scan, tmp_path / "m"))
    assert Scan.open(scan.path).result("prediction")[...].any()
