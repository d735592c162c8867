"""A model trained on a GPU predicts on a machine without one: the training device named in
its config is where it trained, not where it must predict."""

from __future__ import annotations

import numpy as np
import torch

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.infer.predict import predict
from napari_asymseg.model.checkpoint import BEST
from napari_asymseg.train.loop import fit


def test_a_model_whose_config_says_cuda_predicts_here(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    list(fit(scan, tiny_config(steps=4, val_every=4), tmp_path / "m"))
    list(predict(scan, tmp_path / "m"))
    here = np.asarray(scan.result("prediction")[...])
    ckpt = torch.load(tmp_path / "m" / BEST, map_location="cpu", weights_only=True)
    ckpt["config"]["train"]["device"] = "cuda:3"  # as saved by `asymseg train --device cuda:3`
    torch.save(ckpt, tmp_path / "m" / BEST)
    list(predict(scan, tmp_path / "m"))  # no CUDA here (or no 4th GPU): the best device here
    np.testing.assert_array_equal(np.asarray(scan.result("prediction")[...]), here)
