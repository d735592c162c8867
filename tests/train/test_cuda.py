"""The CUDA path (issue 22): run where a GPU is, skipped cleanly elsewhere.

``scripts/gpu_check.sh`` runs these first on a lent accelerator. Each test says what a GPU user
relies on: AMP training as good as the CPU's, a GPU-trained model predicting on a CPU, memory
given back after training, a cancelled run and an out-of-memory fallback, the fallback
itself, NCCL DDP writing the ordinary model folder, and the dock training on CUDA.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine_helpers import out_of_memory_above, tiny_config, tiny_scan
from napari_asymseg.config import Config
from napari_asymseg.infer.predict import predict
from napari_asymseg.model.checkpoint import BEST, CHECKPOINT
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.samples.sample_data import sample_scan
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.budget import FLOOR_STEPS, MAX_FACTOR
from napari_asymseg.train.device import autocast_dtype
from napari_asymseg.train.distributed import BACKEND_ENV
from napari_asymseg.train.events import Finished, Notice, StepEnd
from napari_asymseg.train.loop import fit

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
]


def _config(device: str, steps: int = 120, val_every: int = 40, amp: str = "auto"):
    cfg = tiny_config(steps=steps, val_every=val_every)
    cfg.model.filters = (16, 32, 64)
    cfg.data.patch_size = (16, 64, 64)
    cfg.train.device, cfg.train.amp, cfg.train.seed = device, amp, 0
    return cfg


def _finished(events) -> Finished:
    done = [e for e in events if isinstance(e, Finished)]
    assert done, "the run did not finish"
    return done[-1]


def _baseline() -> int:
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated()


def test_amp_training_on_the_sample_reaches_the_cpu_run(tmp_path):
    """The same run on CUDA (bf16 or fp16 autocast) and on the CPU: the GPU's validation DSC
    is not worse by more than 0.05 (different kernels: not bit-identical)."""
    path = sample_scan(tmp_path / "home")
    runs = {}
    for device, amp in (("cuda", "auto"), ("cpu", "off")):
        cfg = Config()  # the product's defaults (loss, network) but the device
        cfg.train.device, cfg.train.amp, cfg.train.seed = device, amp, 0
        cfg.train.steps, cfg.data.patch_voxels = FLOOR_STEPS, 2**16  # the same run on both
        runs[device] = _finished(fit(Scan.open(path), cfg, tmp_path / device))
    gpu, cpu = runs["cuda"], runs["cpu"]
    assert autocast_dtype(torch.device("cuda"), "auto") in (torch.bfloat16, torch.float16)
    assert np.isfinite(gpu.best_dsc) and gpu.best_dsc >= cpu.best_dsc - 0.05, (gpu, cpu)


def test_the_default_run_on_a_gpu_plans_more_steps_and_the_same_patch(tmp_path):
    """The planned run (steps 0) in a 30-second budget: a GPU trains more than the floor's
    360 steps, at most MAX_FACTOR times them, on the CPU's patch (a larger one trained worse
    models, docs/training.md)."""
    scan = tiny_scan(tmp_path / "s.zarr", shape=(80, 80, 80))
    cfg = tiny_config(steps=0, val_every=20)
    cfg.data.patch_size, cfg.model.filters = None, Config().model.filters
    cfg.train.device, cfg.train.minutes = "cuda", 0.5
    done = _finished(fit(scan, cfg, tmp_path / "m"))
    saved = load_checkpoint(tmp_path / "m")["config"]
    assert FLOOR_STEPS < done.steps_done <= MAX_FACTOR * FLOOR_STEPS
    assert saved["train"]["steps"] == done.steps_done and saved["data"]["patch_voxels"] == 2**16


def test_a_cuda_trained_model_predicts_on_the_cpu_as_on_the_gpu(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    list(fit(scan, _config("cuda", steps=30, val_every=30), tmp_path / "m"))
    cfg_gpu, cfg_cpu = _config("cuda"), _config("cpu", amp="off")
    list(predict(scan, tmp_path / "m", config=cfg_gpu))
    p_gpu = np.asarray(scan.result("probability")[...], np.float32)
    list(predict(scan, tmp_path / "m", config=cfg_cpu))
    p_cpu = np.asarray(scan.result("probability")[...], np.float32)
    # autocast on the GPU against fp32 on the CPU: probabilities within 0.05, labels nearly equal
    assert np.abs(p_gpu - p_cpu).max() < 0.05
    list(predict(scan, tmp_path / "m"))  # no config: the model's own, on this machine's best
    assert load_checkpoint(tmp_path / "m")["config"]["train"]["device"] == "cuda"


def test_memory_returns_to_its_baseline_after_training(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    base = _baseline()
    list(fit(scan, _config("cuda", steps=10, val_every=5), tmp_path / "m"))
    assert _baseline() <= base + 1024**2, "training left CUDA memory allocated"


def test_memory_returns_to_its_baseline_after_a_cancelled_run(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    base = _baseline()
    run = fit(scan, _config("cuda", steps=1000, val_every=500), tmp_path / "m")
    for event in run:
        if isinstance(event, StepEnd) and event.step >= 3:
            break
    run.close()  # what the dock's Cancel does
    assert _baseline() <= base + 1024**2, "a cancelled run left CUDA memory allocated"


def test_out_of_memory_halves_the_batch_then_moves_to_the_cpu(tmp_path, monkeypatch):
    scan = tiny_scan(tmp_path / "s.zarr")
    base = _baseline()
    tried = out_of_memory_above(
        monkeypatch, max_batch=0, on_cuda_only=True
    )  # CUDA fails at every batch
    cfg = _config("cuda", steps=4, val_every=4)
    cfg.train.batch_size = 4
    events = list(fit(scan, cfg, tmp_path / "m"))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert notices[0].startswith("the GPU ran out of memory at batch 4: continuing with batch 2")
    assert any("continuing on the CPU" in n for n in notices), notices
    assert tried[:3] == [4, 2, 1]
    assert _finished(events).steps_done == 4
    assert (tmp_path / "m" / BEST).is_file()
    assert _baseline() <= base + 1024**2, "the out-of-memory fallback left CUDA memory allocated"


def test_one_process_nccl_ddp_saves_the_ordinary_model_folder(tmp_path):
    tiny_scan(tmp_path / "s.zarr")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env[BACKEND_ENV] = "nccl"  # what CUDA picks anyway; forced so that a fallback cannot hide
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    cmd += ["-m", "napari_asymseg.cli", "train", "s.zarr", "--out", "m", "--device", "cuda"]
    cmd += ["--steps", "4", "--val-every", "2", "--filters", "8", "16", "16"]
    cmd += ["--patch-size", "8", "24", "24", "--loss", "ce", "--val-fraction", "0.34"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "x 1 processes (torchrun)" in proc.stdout + proc.stderr
    assert (tmp_path / "m" / BEST).is_file() and (tmp_path / "m" / CHECKPOINT).is_file()
    ckpt = load_checkpoint(tmp_path / "m")
    assert ckpt["step"] == 4 and not any(k.startswith("module.") for k in ckpt["model"])


@pytest.mark.viewer
def test_the_dock_trains_on_cuda(make_napari_viewer, tmp_path, qtbot):
    from dock_helpers import empty_dock

    dock = empty_dock(make_napari_viewer)
    dock.open_scan(sample_scan(tmp_path / "home"))
    section = dock.train_section
    offered = [section.settings.device.itemText(i) for i in range(section.settings.device.count())]
    assert "cuda" in offered
    section.settings.device.setCurrentText("cuda")
    section.settings.steps.setValue(20)
    section.settings.estimate_box.setChecked(False)
    section.train_button.click()
    qtbot.waitUntil(lambda: not section.running, timeout=300_000)
    model = dock.current_model()
    assert model is not None and load_checkpoint(model)["config"]["train"]["device"] == "cuda"
    assert dock.scan.result("prediction") is not None
