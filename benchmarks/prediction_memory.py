"""Peak memory predicting a 512³ zarr scan into zarr (BENCHMARKS.md: bounded by the window,
far below the volume's 512 MiB in float32), against MONAI's whole-volume sliding window.

    .venv/bin/python benchmarks/prediction_memory.py     # ~10 min on 2 cores

Each run is a fresh process that imports everything and loads the model first (its resident
memory then is the baseline: Python, torch, MONAI, the network), then predicts; a sampler
thread reads the process's resident memory (RSS) every 5 ms from then on. (The kernel's
``ru_maxrss`` is recorded too, but it covers the imports, whose transient peak lies above the
baseline.) Reported: the baseline, the peak, and the peak above the
baseline, which is what the prediction itself holds.
* ``ours``: ``asymseg predict SCAN --model MODEL`` (run in the measured process through the
  CLI's ``main``): ``predict()``, the streamed window (one window's depth of slices in
  memory);
* ``monai``: read the image, ``sliding_window_inference`` on the whole volume (same window,
  overlap and bf16 autocast as ours), softmax, argmax, write to zarr (``prediction.py``'s peer).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MIB = 2**20


def child(kind: str, scan_path: str, model: str, device: str = "cpu") -> None:
    """One measured run: print a JSON line with the memory figures (on CUDA, the GPU's peak
    allocation above its baseline too)."""
    import psutil
    import torch

    from napari_asymseg.model.checkpoint import model_from_checkpoint
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.store.scan import Scan
    from napari_asymseg.train.device import autocast_dtype
    from prediction import monai_peer

    proc = psutil.Process()
    # warm up as a ready predictor would be: the network's first windows (oneDNN's kernels)
    net, cfg, plan = model_from_checkpoint(load_checkpoint(model))
    dev = torch.device(device)
    amp = autocast_dtype(dev, cfg.train.amp)
    with torch.inference_mode(), torch.autocast(dev.type, torch.bfloat16, enabled=amp is not None):
        net.to(dev).eval()(torch.zeros(cfg.predict.sw_batch_size, 1, *plan.patch_size, device=dev))
    del net
    gpu_base = _gpu_reset(dev)
    scan = Scan.open(scan_path)
    baseline = proc.memory_info().rss
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    if kind == "ours":  # exactly what `asymseg predict SCAN --model MODEL` runs
        from napari_asymseg.cli.main import main as asymseg

        del scan  # the command opens the scan itself
        assert asymseg(["predict", scan_path, "--model", model, "--device", device]) == 0
    else:
        monai_peer(scan, Path(model), True, device)
    seconds = time.perf_counter() - t0
    gpu_peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else None
    stop.set()
    sampler.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "kind": kind,
                "seconds": seconds,
                "baseline_mib": baseline / MIB,
                "peak_mib": peak[0] / MIB,
                "above_baseline_mib": (peak[0] - baseline) / MIB,
                "lifetime_maxrss_mib": maxrss / MIB,
                "device": device,
                "gpu_above_baseline_mib": None if gpu_peak is None else (gpu_peak - gpu_base) / MIB,
            }
        )
    )


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _gpu_reset(dev) -> int:
    """CUDA: the memory allocated now, with the peak counter reset to it (else 0)."""
    import torch

    if dev.type != "cuda":
        return 0
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="the scan is SIZE³ voxels")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default="benchmarks/results/prediction_memory.json")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ours and the peer)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("ASYMSEG_HOME", tempfile.mkdtemp(prefix="asymseg-bench-"))
    if args.child:
        child(*args.child)
        return 0

    from _common import machine, table, write_json
    from prediction import make_model, make_scan

    work = Path(tempfile.mkdtemp(prefix="asymseg-memory-"))
    shape = (args.size,) * 3
    print(f"writing a {shape} scan ...", flush=True)
    scan = make_scan(work / "scan.zarr", shape)
    small = make_scan(work / "train.zarr", (64, 96, 96))  # a model of the default plan
    model = make_model(small, work / "model", device=args.device)
    del scan
    runs = []
    kinds = ["ours"] + (["monai"] if args.peer else [])
    for kind in kinds:
        print(f"{kind} ...", flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(work / "scan.zarr"), str(model)]
            + [args.device],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            print(done.stderr[-3000:])
            runs.append({"kind": kind, "failed": done.stderr.strip().splitlines()[-1:]})
            continue
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    volume_mib = args.size**3 * 4 / MIB
    rows = [
        [
            r["kind"],
            f"{r['seconds']:.0f}",
            f"{r['baseline_mib']:.0f}",
            f"{r['peak_mib']:.0f}",
            f"{r['above_baseline_mib']:.0f}",
            f"{r['above_baseline_mib'] / volume_mib:.2f}",
            "—"
            if r.get("gpu_above_baseline_mib") is None
            else f"{r['gpu_above_baseline_mib']:.0f}",
        ]
        for r in runs
        if "failed" not in r
    ]
    print()
    print(f"scan {shape} float32 = {volume_mib:.0f} MiB")
    header = ["run", "s", "baseline MiB", "peak MiB", "peak - baseline MiB", "of the volume"]
    header.append("GPU peak - baseline MiB")
    print(table(header, rows))
    write_json(
        args.out,
        {"machine": machine(), "shape": list(shape), "volume_mib": volume_mib, "runs": runs},
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
