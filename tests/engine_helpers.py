"""A tiny, easy scan for engine tests: bright blobs on a noisy background."""

from __future__ import annotations

import numpy as np

from napari_asymseg.config import Config
from napari_asymseg.store.scan import Scan


def tiny_scan(path, *, annotate=True, seed=0, shape=(16, 40, 40)) -> Scan:
    rng = np.random.default_rng(seed)
    gt = np.zeros(shape, np.uint8)
    zz, yy, xx = np.indices(shape)
    for cz, cy, cx in [(4, 12, 12), (11, 26, 28), (8, 28, 10)]:
        gt[(zz - cz) ** 2 / 9 + (yy - cy) ** 2 / 16 + (xx - cx) ** 2 / 16 <= 1] = 1
    image = rng.normal(0, 1, shape) + 3 * gt
    ann = np.zeros(shape, np.uint8)
    if annotate:
        for z in (3, 4, 5, 8, 11, 12):
            ann[z] = gt[z] + 1
    return Scan.create(path, image.astype(np.float32), annotations=ann, ground_truth=gt)


def tiny_config(steps=30, val_every=10) -> Config:
    cfg = Config()
    cfg.model.filters = (8, 16, 16)
    cfg.data.patch_size = (8, 24, 24)
    cfg.data.val_fraction = 0.34
    cfg.train.steps = steps
    cfg.train.val_every = val_every
    cfg.train.lr = 1e-2
    cfg.loss.name = "ce"
    return cfg


def out_of_memory_above(monkeypatch, max_batch: int, *, on_cuda_only: bool = False) -> list[int]:
    """Training steps raise CUDA's out-of-memory error for batches larger than ``max_batch``
    (with ``on_cuda_only``, only while the batch is on the GPU); returns the batch sizes the
    engine tried."""
    import torch

    from napari_asymseg.train import state

    real = state._make_step
    tried: list[int] = []

    def make_step(*args, **kwargs):
        step = real(*args, **kwargs)

        def limited(x, y):
            tried.append(int(x.shape[0]))
            if x.shape[0] > max_batch and (x.is_cuda or not on_cuda_only):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return step(x, y)

        return limited

    monkeypatch.setattr(state, "_make_step", make_step)
    return tried
