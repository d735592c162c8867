"""Sliding-window prediction throughput: the engine's ``predict()`` against MONAI's
``sliding_window_inference`` (BENCHMARKS.md: >= 1.2x), side by side in one run.

    .venv/bin/python benchmarks/prediction.py            # ~6 min on 2 cores

Each repeat runs, in turn (A B C A B C ...):
* ``ours``: ``predict(scan, model)`` zarr -> zarr, as ``asymseg predict`` runs it: the streamed
  window (:mod:`napari_asymseg.infer.sliding`) under the engine's default precision (bf16
  autocast on CPUs with native bf16), writing prediction, probability and the risk map into
  the store;
* ``monai fp32``: the plain way: read the zarr image, z-score it, MONAI's
  ``sliding_window_inference`` (same window, overlap 0.25, gaussian blending, same windows per
  batch) in float32, softmax and argmax, write prediction and probability to zarr;
* ``monai bf16``: the same under the same bf16 autocast as ours, to separate what the
  precision gives from what the streaming gives.
Reported: the median seconds and voxels/s of each, and the ratios of ours to each peer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, write_json  # noqa: E402


def make_scan(path: Path, shape: tuple[int, int, int], seed: int = 0):
    """A synthetic scan of ``shape`` (1 mm voxels): smooth tissue, noise and bright blobs,
    written slab by slab (a 512³ volume never sits in memory as float64)."""
    from napari_asymseg.store.scan import Scan

    rng = np.random.default_rng(seed)
    depth, ny, nx = shape
    image = np.empty(shape, np.float32)
    yy, xx = np.mgrid[:ny, :nx].astype(np.float32)
    tissue = 100 + 20 * np.sin(yy / 23) * np.cos(xx / 31)
    centres = rng.uniform((0, 0, 0), shape, (max(4, depth // 8), 3))
    for z0 in range(0, depth, 32):
        z1 = min(depth, z0 + 32)
        slab = tissue + rng.normal(0, 5, (z1 - z0, ny, nx)).astype(np.float32)
        for cz, cy, cx in centres:
            if z0 - 6 <= cz < z1 + 6:
                zz = np.arange(z0, z1, dtype=np.float32)[:, None, None]
                blob = ((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) <= 25
                slab[blob] += 60
        image[z0:z1] = slab
    ann = np.zeros(shape, np.uint8)
    for cz, cy, cx in centres[:3]:  # background and lesion on the slices through three blobs
        z = int(cz)
        ann[z] = 1
        ann[z][(yy - cy) ** 2 + (xx - cx) ** 2 + (z - cz) ** 2 <= 25] = 2
    return Scan.create(path, image, annotations=ann, spacing=(1.0, 1.0, 1.0))


def make_model(scan, out: Path, steps: int = 2, device: str = "cpu") -> Path:
    """A default model (planned patch, default network) after a couple of steps: the weights
    do not change the work of a window."""
    from napari_asymseg.config import Config
    from napari_asymseg.train.loop import fit

    cfg = Config()
    cfg.train.device = device
    cfg.train.steps = steps
    cfg.train.val_every = steps
    cfg.data.val_fraction = 0.0
    for _ in fit(scan, cfg, out):
        pass
    return out


def ours(scan, model: Path, device: str = "cpu") -> float:
    from napari_asymseg.infer.predict import predict
    from napari_asymseg.model.checkpoint import model_from_checkpoint
    from napari_asymseg.model.load import load_checkpoint

    _, cfg, _ = model_from_checkpoint(load_checkpoint(model))
    cfg.train.device = device
    t0 = time.perf_counter()
    for _ in predict(scan, model, config=cfg):
        pass
    return time.perf_counter() - t0


def monai_peer(scan, model: Path, amp: bool, device: str = "cpu") -> float:
    """The plain MONAI way, zarr in and zarr out."""
    import torch
    from monai.inferers import sliding_window_inference

    from napari_asymseg.model.checkpoint import model_from_checkpoint
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.store.scan import read
    from napari_asymseg.train.data import intensity_stats, normalise
    from napari_asymseg.train.device import cpu_has_native_bf16

    t0 = time.perf_counter()
    net, cfg, plan = model_from_checkpoint(load_checkpoint(model))
    dev = torch.device(device)
    net.to(dev).eval()
    image = normalise(read(scan.image), cfg.data, stats=intensity_stats(scan.image))
    x = torch.from_numpy(image)[None, None].to(dev)
    use_bf16 = amp and (dev.type == "cuda" or cpu_has_native_bf16())
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
        logits = sliding_window_inference(
            x,
            plan.patch_size,
            cfg.predict.sw_batch_size,
            net,
            overlap=cfg.predict.overlap,
            mode="gaussian",
        )
    assert isinstance(logits, torch.Tensor)
    probs = torch.softmax(logits[0].float(), 0).cpu()
    scan.write_result("prediction", probs.argmax(0).numpy().astype(np.uint8))
    scan.write_result("probability", (1 - probs[0]).numpy().astype(np.float16))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/prediction.json")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ours and the peers)")
    args = parser.parse_args(argv)
    os.environ.setdefault("ASYMSEG_HOME", tempfile.mkdtemp(prefix="asymseg-bench-"))
    import torch

    from napari_asymseg.model.checkpoint import model_from_checkpoint
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.train.device import autocast_dtype

    work = Path(tempfile.mkdtemp(prefix="asymseg-prediction-"))
    shape = tuple(args.shape)
    scan = make_scan(work / "scan.zarr", shape)
    model = make_model(scan, work / "model", device=args.device)
    _, cfg, plan = model_from_checkpoint(load_checkpoint(model))
    amp = autocast_dtype(torch.device(args.device), cfg.train.amp)
    runs: dict[str, list[float]] = {"ours": [], "monai fp32": [], "monai bf16": []}
    ours(scan, model, args.device)  # warm-up: imports, allocator, oneDNN / cuDNN kernels
    for rep in range(args.repeats):
        for name in runs:
            if name == "ours":
                seconds = ours(scan, model, args.device)
            else:
                seconds = monai_peer(scan, model, name.endswith("bf16"), args.device)
            runs[name].append(seconds)
            print(f"repeat {rep + 1}: {name} {seconds:.1f} s", flush=True)
    voxels = int(np.prod(shape))
    med = {k: statistics.median(v) for k, v in runs.items()}
    rows = [
        [k, f"{med[k]:.1f}", f"{voxels / med[k] / 1e6:.2f}", f"{med[k] / med['ours']:.2f}x"]
        for k in runs
    ]
    print()
    print(f"scan {shape}, window {plan.patch_size}, overlap {cfg.predict.overlap}, ours: {amp}")
    print(table(["run", "s (median)", "Mvoxels/s", "ours is faster by"], rows))
    result: dict[str, Any] = {
        "machine": machine(),
        "device": args.device,
        "shape": list(shape),
        "window": list(plan.patch_size),
        "overlap": cfg.predict.overlap,
        "sw_batch_size": cfg.predict.sw_batch_size,
        "ours_precision": str(amp).replace("torch.", "") if amp else "fp32",
        "seconds": runs,
        "median_seconds": med,
        "mvoxels_per_s": {k: voxels / v / 1e6 for k, v in med.items()},
        "speedup_vs_monai_fp32": med["monai fp32"] / med["ours"],
        "speedup_vs_monai_bf16": med["monai bf16"] / med["ours"],
    }
    write_json(args.out, result)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
