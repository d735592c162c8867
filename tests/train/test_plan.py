"""The patch planned for the device: at most 2**16 voxels everywhere, smaller only where the
device's memory cannot hold a training step; the same rule on a CPU and a GPU."""

from __future__ import annotations

import pytest
import torch

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.config import Config
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.model.networks import plan_network
from napari_asymseg.train import plan as planning
from napari_asymseg.train import state
from napari_asymseg.train.estimate import as_planned
from napari_asymseg.train.events import Finished
from napari_asymseg.train.loop import fit
from napari_asymseg.train.plan import CANDIDATES, plan_voxels, training_bytes

CPU = torch.device("cpu")
ISO = (1.0, 1.0, 1.0)  # a 1 mm scan
SHAPE = (181, 217, 181)  # Colin27's


def with_memory(monkeypatch, gib: float) -> None:
    monkeypatch.setattr(planning, "free_memory", lambda _device: gib * 2**30)


@pytest.mark.parametrize("gib", [8, 80, 141])  # a laptop GPU, an A100, an H200
def test_a_device_with_memory_trains_the_largest_patch_and_no_larger(monkeypatch, gib):
    with_memory(monkeypatch, gib)
    assert plan_voxels(Config(), ISO, SHAPE, CPU, amp=True) == CANDIDATES[0] == 2**16
    patch = plan_network(ISO, SHAPE, 4, max_voxels=CANDIDATES[0]).patch_size
    assert patch == (40, 40, 40)  # not 64³: measured worse on Colin27 (docs/training.md)


def test_too_little_memory_shrinks_the_patch(monkeypatch):
    cfg = Config()
    plans = {v: plan_network(ISO, SHAPE, 4, max_voxels=v) for v in CANDIDATES}
    # between what 2**15 and 2**16 voxels need at batch 2, fp32
    need = {v: training_bytes(p, cfg.model.filters, 2, amp=False) for v, p in plans.items()}
    with_memory(monkeypatch, (need[2**15] + need[2**16]) / 2 / planning.MEMORY_SHARE / 2**30)
    assert plan_voxels(cfg, ISO, SHAPE, CPU, amp=False) == 2**15
    with_memory(monkeypatch, 0.001)  # nothing fits: the smallest, then the OOM fallback
    assert plan_voxels(cfg, ISO, SHAPE, CPU, amp=False) == CANDIDATES[-1]


def test_the_memory_estimate_scales_with_the_work():
    cfg = Config()
    plan = plan_network(ISO, SHAPE, 4, (64, 64, 64))
    fp32 = training_bytes(plan, cfg.model.filters, 2, amp=False)
    # measured on the CPU: 1.3-1.5 KiB per voxel and patch (fp32), 0.9 KiB with bf16
    assert 1.0 * 2**10 < fp32 / (2 * 64**3) < 2.0 * 2**10
    assert training_bytes(plan, cfg.model.filters, 4, amp=False) == pytest.approx(2 * fp32)
    assert training_bytes(plan, cfg.model.filters, 2, amp=True) < 0.7 * fp32


def test_the_free_memory_of_this_machine_is_read():
    assert planning.free_memory(CPU) > 2**20


def test_the_run_keeps_the_patch_it_planned_for_its_folds_and_a_resume(tmp_path, monkeypatch):
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=6, val_every=3)
    cfg.data.patch_size = None  # planned
    done = [e for e in fit(scan, cfg, tmp_path / "m") if isinstance(e, Finished)][0]
    saved = load_checkpoint(tmp_path / "m")["config"]["data"]
    assert saved["patch_voxels"] == CANDIDATES[0] and done.steps_done == 6
    assert cfg.data.patch_voxels == 0  # the caller's config as given
    folds = as_planned(cfg, tmp_path / "m")
    assert folds is not None and folds.data.patch_voxels == CANDIDATES[0]

    def no_plan(*_args, **_kwargs):
        raise AssertionError("a resume plans nothing")

    monkeypatch.setattr(state, "plan_voxels", no_plan)
    resumed = state.prepare(scan, cfg, tmp_path / "m", init=None, resume=True, world=None)
    assert resumed.cfg.data.patch_voxels == CANDIDATES[0]
