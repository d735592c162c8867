"""Training throughput: the engine's ``fit()`` against a plain MONAI loop (BENCHMARKS.md: >= 1.5x)

    .venv/bin/python benchmarks/training_throughput.py

One run measures, side by side and alternating (ours, ours fp32, MONAI loop per worker count,
then again, ``--repeats`` times), the seconds per training step of the default model
(``Config()``: DynUNet, filters 16-32-64-128, loss ``asym_focal``, AdamW) on 64³ patches, batch
2, on a synthetic scan of 96x160x160 voxels at 1.0 mm isotropic (so the planned network uses
3x3x3 kernels and 2x2x2 strides at every level) with a few annotated slices:

* **ours**: ``napari_asymseg.train.loop.fit`` with its defaults (``amp auto``: bf16 autocast on a
  CPU with native bf16, fp32 elsewhere). Timed: the wall clock between the ``StepEnd`` events of
  the measured steps, i.e. everything the training loop does per step: drawing the patches
  from the in-memory scan (``PatchSampler``: crop, flips, intensity scale/shift, noise),
  forward, loss, backward, AdamW step, and the per-step bookkeeping (loss to a float, a
  sample of foreground margins). The run's set-up (loading the scan, building the network)
  is not timed, and no validation happens inside the timed steps (``val_every`` lies beyond
  them and the generator is closed after the last measured step).
* **ours fp32**: the same with ``amp off``, separating the gain of bf16 autocast from the gain
  of the in-memory sampler.
* **MONAI loop**: the loop MONAI's tutorials teach: a ``monai.data.Dataset`` of dicts
  (image, label: the same normalised volume and the same training target as the engine's,
  unannotated voxels -1) through ``RandCropByPosNegLabeld`` (64³, ``num_samples=2``, so a
  loader batch of 1 volume is 2 patches; pos/neg = p_fg / (1 - p_fg) of the engine, with the
  fg/bg candidate indices precomputed as ``FgBgToIndicesd`` + a cache would: foreground =
  annotated foreground, negatives = any annotated voxel, exactly the engine's pools, since
  MONAI's own rule would take the -1 voxels for foreground), then the engine's augmentations
  (``RandFlipd`` x2, ``RandScaleIntensityd``, ``RandShiftIntensityd``, ``RandGaussianNoised``,
  same probabilities), ``monai.data.DataLoader`` (``num_workers`` 0 and 2 are both measured;
  the faster is the peer), the identical network (``build_model`` with the same
  ``NetworkPlan``), the same loss object (``build_loss``: logits ``[B, C, ...]``, target
  ``[B, ...]`` int with -1 ignored), AdamW with the same learning rate and weight decay, fp32.
  Timed: the wall clock of the measured iterations of ``for batch in loader:`` (waiting for
  the batch, ``.to(device)``, forward, loss, backward, step, ``loss.item()``).
* **MONAI loop, bf16 autocast**: the same loop under the same autocast as ``fit()`` (forward
  and loss under ``torch.autocast``, the logits cast to fp32 for the loss), measured where
  ``fit()`` trains under autocast. The faster of its worker counts is **the peer**: the
  headline ratio (``headline.ratio_equal_precision``) is ours against the MONAI loop in the
  same precision, so that it measures the engine, not bf16 (issue 33: ours in bf16 against
  MONAI in fp32 had read 2.4x where at equal precision it is about 1x). The faster fp32 loop
  stays in the JSON as ``peer_fp32``, with every column's ratio to it.

Seconds per step = the measured wall clock / ``--steps``, after ``--warmup`` steps of each
measurement (one-time costs: oneDNN primitive creation, worker start-up). Voxels/s = batch x
64³ / (seconds per step). Reported: the median over repeats, with the min-max spread.

Hardware use: the FLOPs of one training step (forward + backward of the network and loss,
counted by ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matmuls; norms and
activations count nothing there, and AdamW's ~15 FLOPs per parameter are about 0.01% of a
step) divided by the seconds per step give the achieved FLOP/s. The processor's peak is
measured in the same run, per repeat, as the best FLOP/s of a dense ``--matmul``-sized matmul
in fp32 and in bf16 on the same threads; the theoretical peak is threads x 32 fp32 FLOP/cycle
(Zen4: two 256-bit FMA pipes; bf16 x2) x the clock from /proc/cpuinfo, when it shows one.
Each column's fraction is relative to the peak of its compute dtype.

Prints a table and writes ``benchmarks/results/training_throughput.json`` (machine, config,
every repeat's raw numbers, each step's wall clock, the ratio within each repeat and on the
fastest single steps: checks on the medians when other work shares the machine). About 4
minutes on 2 idle cores with ``--repeats 3 --steps 6``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, timed_log, write_json  # noqa: E402

OURS, OURS_FP32 = "ours", "ours fp32"


def monai_name(workers: int, amp: bool = False) -> str:
    """A MONAI loop's column: fp32 (the tutorials' loop) or under ours' autocast (``amp``)."""
    return f"MONAI loop, {workers} workers" + (", bf16 autocast" if amp else "")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--patch", type=int, default=64, help="patch edge in voxels (64)")
    p.add_argument("--batch", type=int, default=2, help="patches per step (2)")
    p.add_argument(
        "--shape", type=int, nargs=3, default=(96, 160, 160), help="scan Z Y X (96 160 160)"
    )
    p.add_argument("--workers", type=int, nargs="+", default=(0, 2), help="MONAI num_workers")
    p.add_argument(
        "--matmul", type=int, default=4096, help="largest edge of the peak-FLOP/s matmul"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (ours and the MONAI loop)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/training_throughput.json")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- inputs
def make_scan(path: Path, shape: tuple[int, int, int], seed: int):
    """A synthetic lesion scan at 1 mm isotropic with a few whole slices annotated."""
    from napari_asymseg.samples.synthetic import sparse_annotations, synthetic_scan
    from napari_asymseg.store.scan import Scan

    syn = synthetic_scan(seed, shape=shape, spacing=(1.0, 1.0, 1.0), fg_fraction=0.01)
    ann = sparse_annotations(syn.ground_truth, n_slices=8, seed=seed, n_empty=4)
    return Scan.create(path, syn.image, spacing=syn.spacing, annotations=ann)


def make_config(args: argparse.Namespace, threads: int, amp: str = "auto"):
    from napari_asymseg.config import Config

    cfg = Config()
    cfg.data.patch_size = (args.patch,) * 3
    cfg.train.batch_size = args.batch
    cfg.train.steps = args.warmup + args.steps
    cfg.train.val_every = cfg.train.steps + 1  # no validation among the timed steps
    cfg.train.threads = threads
    cfg.train.seed = args.seed
    cfg.train.amp = amp
    cfg.train.device = args.device
    return cfg


def make_plan(cfg, data):
    """The plan ``fit()`` makes for this scan (the patch is given, so ``max_voxels`` is moot)."""
    from napari_asymseg.model.networks import plan_network

    return plan_network(data.spacing, data.image.shape, len(cfg.model.filters), cfg.data.patch_size)


# ----------------------------------------------------------------------------- ours
def measure_ours(scan, cfg, work: Path, warmup: int, steps: int) -> dict[str, Any]:
    """Seconds per step of ``fit()``: wall clock between the StepEnd events of the timed steps."""
    from napari_asymseg.train.events import Started, StepEnd
    from napari_asymseg.train.loop import fit

    gen = fit(scan, cfg, work / f"model-{time.monotonic_ns()}")
    amp, marks, reported = "?", [], []
    try:
        for event in gen:
            if isinstance(event, Started):
                amp = event.amp
            elif isinstance(event, StepEnd):
                marks.append(time.perf_counter())
                if event.step > warmup:
                    reported.append(event.seconds)
                if event.step == warmup + steps:
                    break
    finally:
        gen.close()  # stops before the final validation and checkpoint
    # from the end of the last warm-up step (without warm-up: the first step's own seconds)
    start = marks[warmup - 1] if warmup else marks[0] - reported[0]
    seconds = marks[-1] - start
    ends = marks[warmup:]
    walls = [b - a for a, b in zip([start, *ends[:-1]], ends, strict=True)]
    return {"s_per_step": seconds / steps, "amp": amp, "step_seconds": reported, "walls": walls}


# ----------------------------------------------------------------------------- MONAI loop
def monai_loader(data, cfg, plan, workers: int, n_batches: int, seed: int):
    """The tutorials' pipeline on the in-memory volume: dict Dataset, RandCropByPosNegLabeld,
    augmentations, DataLoader (a batch = the ``num_samples`` crops of one volume)."""
    from monai.data import DataLoader, Dataset
    from monai.transforms import (
        Compose,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    item = {
        "image": data.image[None],  # channel first, already normalised like the engine's
        "label": data.train[None].astype(np.int64),  # -1 = not annotated
        # what FgBgToIndicesd would cache, with the engine's pools: MONAI's own rule
        # (label > 0 is foreground) would count the unannotated -1 voxels as foreground
        "fg": np.flatnonzero(data.train >= 1),
        "bg": np.flatnonzero(data.train >= 0),
    }
    keys = ["image", "label"]
    transform = Compose(
        [
            RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=plan.patch_size,
                pos=cfg.data.p_fg,
                neg=1 - cfg.data.p_fg,
                num_samples=cfg.train.batch_size,
                fg_indices_key="fg",
                bg_indices_key="bg",
            ),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=2),
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            RandGaussianNoised(keys="image", prob=0.3, std=0.05),
        ]
    )
    transform.set_random_state(seed=seed)
    dataset = Dataset(data=[item] * n_batches, transform=transform)
    return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers)


def measure_monai(
    data, cfg, plan, warmup: int, steps: int, workers: int, amp_dtype=None
) -> dict[str, Any]:
    """Seconds per step of the plain MONAI loop on ``cfg.train.device``: fp32, or with
    ``amp_dtype`` under the same autocast as ``fit()`` (forward and loss under
    ``torch.autocast``, the logits cast to fp32 for the loss, as ``train/step.py`` does)."""
    import torch

    from napari_asymseg.model.losses import build_loss
    from napari_asymseg.model.networks import build_model

    torch.manual_seed(cfg.train.seed)
    device = torch.device(cfg.train.device)
    model = build_model(cfg.model, plan, out_channels=data.num_classes).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    loss_function = build_loss(cfg.loss.name, **cfg.loss.params)
    loader = monai_loader(data, cfg, plan, workers, warmup + steps, cfg.train.seed)
    threads = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    waits, losses, walls = [], [], []
    try:
        model.train()
        t0 = t_wait = time.perf_counter()
        for i, batch_data in enumerate(loader):
            if i == warmup:
                t0 = t_wait
            if i >= warmup:
                waits.append(time.perf_counter() - t_wait)
            inputs, labels = batch_data["image"].to(device), batch_data["label"].to(device)
            optimizer.zero_grad()
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                outputs = model(inputs).float()  # the loss in fp32, as in fit()
                loss = loss_function(outputs, labels[:, 0].long())
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if i >= warmup:  # the whole iteration: waiting for the batch and the step
                walls.append(time.perf_counter() - t_wait)
            t_wait = time.perf_counter()
        seconds = t_wait - t0
    finally:
        torch.set_num_threads(threads)
        del loader
    amp = str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else "off"
    return {
        "s_per_step": seconds / steps,
        "data_wait_s": waits,
        "workers": workers,
        "amp": amp,
        "walls": walls,
    }


# ----------------------------------------------------------------------------- hardware
def step_flops(cfg, plan, num_classes: int) -> dict[str, float]:
    """FLOPs of one training step's forward and backward (FlopCounterMode), and AdamW's."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from napari_asymseg.model.losses import build_loss
    from napari_asymseg.model.networks import build_model, count_parameters

    torch.manual_seed(0)
    model = build_model(cfg.model, plan, out_channels=num_classes)
    loss_fn = build_loss(cfg.loss.name, **cfg.loss.params)
    x = torch.randn(cfg.train.batch_size, 1, *plan.patch_size)
    y = torch.randint(-1, num_classes, (cfg.train.batch_size, *plan.patch_size))
    with FlopCounterMode(display=False) as fwd:
        loss = loss_fn(model(x), y)
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    params = count_parameters(model)
    return {
        "forward": float(fwd.get_total_flops()),
        "backward": float(bwd.get_total_flops()),
        "total": float(fwd.get_total_flops() + bwd.get_total_flops()),
        "parameters": params,
        "adamw_approx": 15.0 * params,
    }


def matmul_flops_per_s(
    n_max: int, dtype_name: str, device: str = "cpu", budget_s: float = 0.5, reps: int = 3
) -> tuple[float, int]:
    """Best FLOP/s of a square matmul in ``dtype_name`` on ``device``, and its edge.

    The edge doubles from 256 up to ``n_max`` while the next size's product would still take
    under ``budget_s``: a CPU that only emulates bf16 (AVX2: ~1 GFLOP/s) measures a small
    product instead of spending minutes on a 4096² one, and every CPU finishes.
    """
    import torch

    dtype = getattr(torch, dtype_name)
    n, best_rate = min(256, n_max), 0.0
    while True:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        torch.mm(a, b)  # warm-up
        best = float("inf")
        for _ in range(reps):
            _sync(device)
            t0 = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        best_rate = max(best_rate, 2.0 * n**3 / best)
        if n * 2 > n_max or best * 8 > budget_s:
            return best_rate, n
        n *= 2


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def theoretical_peak(threads: int) -> dict[str, Any]:
    """threads x 32 fp32 FLOP/cycle (Zen4's two 256-bit FMA pipes) x the /proc/cpuinfo clock."""
    mhz = None
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    except (OSError, ValueError, IndexError):
        mhz = None
    fp32 = threads * 32 * mhz * 1e6 if mhz else None
    return {
        "threads": threads,
        "fp32_flop_per_cycle_per_core": 32,
        "cpu_mhz": mhz,
        "float32": fp32,
        "bfloat16": 2 * fp32 if fp32 else None,
        "note": "cpu MHz as /proc/cpuinfo shows it in this VM (nominal, not the boost clock)"
        if mhz
        else "clock unknown: /proc/cpuinfo shows no cpu MHz",
    }


# ----------------------------------------------------------------------------- run
def median_spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    import torch

    log = timed_log()
    before = torch.get_num_threads()
    threads = args.threads or before
    torch.set_num_threads(threads)  # the FLOP count and the matmul peak too
    t_start, load_before = time.perf_counter(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="asymseg-throughput-"))
    try:
        result = measure(args, work, threads, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        torch.set_num_threads(before)
    result["runtime_s"] = time.perf_counter() - t_start
    # other work on the machine shows here (1, 5, 15 min): a busy machine slows every column
    result["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    write_json(args.out, result)
    log(f"wrote {args.out}")
    return result


def monai_columns(args: argparse.Namespace, amp_dtype) -> dict[str, tuple[int, Any]]:
    """The MONAI loop's columns: (workers, autocast dtype) by name. fp32 is the tutorials'
    loop; where ``fit()`` trains under autocast, the same loop under the same autocast is the
    peer at equal precision (without it a ratio would mostly measure bf16, not the engine)."""
    cols = {monai_name(w): (w, None) for w in args.workers}
    if amp_dtype is not None:
        cols |= {monai_name(w, amp=True): (w, amp_dtype) for w in args.workers}
    return cols


def measure(args: argparse.Namespace, work: Path, threads: int, log) -> dict[str, Any]:
    """The alternating measurements; prints the table and returns the JSON's content."""
    import torch

    from napari_asymseg.train.data import ScanData
    from napari_asymseg.train.device import autocast_dtype

    scan = make_scan(work / "scan.zarr", tuple(args.shape), args.seed)
    cfgs = {OURS: make_config(args, threads), OURS_FP32: make_config(args, threads, amp="off")}
    data = ScanData.from_scan(scan, cfgs[OURS].data, seed=args.seed)  # what fit() trains on
    plan = make_plan(cfgs[OURS], data)
    log(f"scan {scan.shape} at {scan.spacing} mm, plan {plan}, {threads} threads")
    flops = step_flops(cfgs[OURS_FP32], plan, data.num_classes)
    log(f"one step: {flops['total'] / 1e9:.1f} GFLOP (forward {flops['forward'] / 1e9:.1f})")
    amp_dtype = autocast_dtype(torch.device(args.device), cfgs[OURS].train.amp)
    monai_cols = monai_columns(args, amp_dtype)

    columns = [OURS, OURS_FP32, *monai_cols]
    raw: dict[str, list[dict[str, Any]]] = {c: [] for c in columns}
    peaks: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    edges: dict[str, int] = {}
    for rep in range(args.repeats):
        for dtype in peaks:
            rate, edges[dtype] = matmul_flops_per_s(args.matmul, dtype, args.device)
            peaks[dtype].append(rate)
        for col in columns:
            if col in cfgs:
                r = measure_ours(scan, cfgs[col], work, args.warmup, args.steps)
            else:
                workers, dtype_ = monai_cols[col]
                cfg = cfgs[OURS_FP32]
                r = measure_monai(data, cfg, plan, args.warmup, args.steps, workers, dtype_)
            raw[col].append(r)
            log(f"repeat {rep + 1}/{args.repeats} {col}: {r['s_per_step']:.3f} s/step")
        log(
            f"repeat {rep + 1}: matmul fp32 {edges['float32']}² "
            f"{peaks['float32'][-1] / 1e9:.0f}, bf16 {edges['bfloat16']}² "
            f"{peaks['bfloat16'][-1] / 1e9:.0f} GFLOP/s"
        )
    peak = {d: max(v) for d, v in peaks.items()}
    theory = theoretical_peak(threads) if args.device == "cpu" else _no_theory(args.device)
    summary = summarise(args, raw, flops, peak, theory)
    peers = choose_peers(summary, monai_cols)
    # the same ratio within each repeat (the two measured minutes apart, not hours): on a
    # shared machine, load that comes and goes shows as a spread here
    peers["headline"]["ratio_equal_precision_best_steps"] = (
        summary[peers["peer"]]["best_step_s"] / summary[OURS]["best_step_s"]
    )
    peers["headline"]["ratio_equal_precision_per_repeat"] = [
        p["s_per_step"] / o["s_per_step"]
        for p, o in zip(raw[peers["peer"]], raw[OURS], strict=True)
    ]
    print_table(args, summary, peers, flops, peak, theory, edges, threads)
    return {
        "machine": machine(),
        "runtime_s": None,
        "config": {
            "scan_shape": list(args.shape),
            "spacing_mm": list(scan.spacing),
            "patch": args.patch,
            "batch": args.batch,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "threads": threads,
            "workers": list(args.workers),
            "matmul_max": args.matmul,
            "matmul_edges": edges,
            "device": args.device,
            "plan": {
                "patch_size": list(plan.patch_size),
                "kernels": [list(k) for k in plan.kernels],
                "strides": [list(s) for s in plan.strides],
            },
            "model": {"name": cfgs[OURS].model.name, "filters": list(cfgs[OURS].model.filters)},
            "loss": cfgs[OURS].loss.name,
            "cpu_has_native_bf16": _native_bf16(),
        },
        "flops_per_step": flops,
        "peak_flop_per_s": {"measured_best": peak, "measured": peaks, "theoretical": theory},
        **peers,
        "summary": summary,
        "repeats": raw,
    }


def summarise(args, raw, flops, peak, theory) -> dict[str, dict[str, Any]]:
    """Per column: the median seconds per step with its spread, voxels/s and hardware use."""
    voxels = args.batch * args.patch**3
    summary: dict[str, dict[str, Any]] = {}
    for col, runs in raw.items():
        s = median_spread([r["s_per_step"] for r in runs])
        dtype = "bfloat16" if runs[0].get("amp") == "bfloat16" else "float32"
        summary[col] = {
            "s_per_step": s,
            "voxels_per_s": voxels / s["median"],
            "dtype": dtype,
            "gflop_per_s": flops["total"] / s["median"] / 1e9,
            "fraction_of_peak": flops["total"] / s["median"] / peak[dtype],
            "fraction_of_theoretical": flops["total"] / s["median"] / theory[dtype]
            if theory[dtype]
            else None,
        }
        # the fastest single step over all repeats: on a shared machine, the step that ran
        # with the cores to itself (a check on the medians, not the headline)
        summary[col]["best_step_s"] = min(w for r in runs for w in r["walls"])
        if "data_wait_s" in runs[0]:  # the share of a step spent waiting for the batch
            waits = [w for r in runs for w in r["data_wait_s"]]
            summary[col]["data_wait_s_per_step"] = statistics.median(waits)
    return summary


def choose_peers(summary: dict[str, dict[str, Any]], monai_cols: dict) -> dict[str, Any]:
    """The peers and the headline. ``peer``: the faster MONAI loop computing in the precision
    ours trains in (equal precision; the ratio the README quotes); ``peer_fp32``: the faster
    plain fp32 loop, as the tutorials run it. Adds each column's ratio to both."""

    def fastest(cols: list[str]) -> str:
        return min(cols, key=lambda c: summary[c]["s_per_step"]["median"])

    same = [c for c in monai_cols if summary[c]["dtype"] == summary[OURS]["dtype"]]
    peer = fastest(same)
    peer_fp32 = fastest([c for c in monai_cols if monai_cols[c][1] is None])
    for s in summary.values():
        t = s["s_per_step"]["median"]
        s["speedup_vs_peer"] = summary[peer]["s_per_step"]["median"] / t
        s["speedup_vs_fp32_peer"] = summary[peer_fp32]["s_per_step"]["median"] / t
    return {
        "peer": peer,
        "peer_fp32": peer_fp32,
        "headline": {
            "ratio_equal_precision": summary[OURS]["speedup_vs_peer"],
            "dtype": summary[OURS]["dtype"],
            "ratio_vs_fp32_loop": summary[OURS]["speedup_vs_fp32_peer"],
            "ratio_fp32_vs_fp32_loop": summary[OURS_FP32]["speedup_vs_fp32_peer"],
        },
    }


def print_table(args, summary, peers, flops, peak, theory, edges, threads) -> None:
    rows = []
    for col, s in summary.items():
        dtype = "bf16" if s["dtype"] == "bfloat16" else "fp32"
        amp = {OURS: "fit(), amp auto: ", OURS_FP32: "fit(), amp off: "}.get(col, "")
        name = col.split(" fp32")[0].split(", bf16")[0]
        tag = {peers["peer"]: " (the peer)", peers["peer_fp32"]: " (the fp32 peer)"}.get(col, "")
        rows.append(
            [
                f"{name}, {amp}{dtype}{tag}",
                f"{s['s_per_step']['median']:.3f} [{s['s_per_step']['min']:.3f}-"
                f"{s['s_per_step']['max']:.3f}]",
                f"{s['voxels_per_s'] / 1e3:.0f} k",
                f"{s['speedup_vs_peer']:.2f}x",
                f"{s['speedup_vs_fp32_peer']:.2f}x",
                f"{s['gflop_per_s']:.1f}",
                f"{100 * s['fraction_of_peak']:.0f}%",
            ]
        )
    header = ["", "s/step median [min-max]", "voxels/s", "vs the peer (equal precision)"]
    header += ["vs the fp32 loop", "GFLOP/s", "% of peak"]
    print()
    print(table(header, rows))
    print(
        f"\n{args.batch} x {args.patch}³ patches, {args.steps} timed steps after {args.warmup} "
        f"warm-up, {args.repeats} alternating repeats, {threads} threads; one step = "
        f"{flops['total'] / 1e9:.1f} GFLOP (FlopCounterMode, forward + backward)."
    )
    theory_text = (
        f"theoretical {theory['float32'] / 1e9:.0f} fp32 / {theory['bfloat16'] / 1e9:.0f} bf16 "
        f"GFLOP/s at {theory['cpu_mhz']:.0f} MHz"
        if theory["float32"]
        else "theoretical peak unknown (no clock in /proc/cpuinfo)"
    )
    print(
        f"peak = best matmul (fp32 {edges['float32']}², bf16 {edges['bfloat16']}²): fp32 "
        f"{peak['float32'] / 1e9:.0f}, bf16 {peak['bfloat16'] / 1e9:.0f} GFLOP/s "
        f"({theory_text}, {threads} x 32 FLOP/cycle)."
    )
    print(f"headline: ours / the peer at equal precision = {summary[OURS]['speedup_vs_peer']:.2f}x")


def _no_theory(device: str) -> dict[str, Any]:
    return {"float32": None, "bfloat16": None, "note": f"no theoretical peak for {device}"}


def _native_bf16() -> bool:
    from napari_asymseg.train.device import cpu_has_native_bf16

    return cpu_has_native_bf16()


if __name__ == "__main__":
    os.environ.setdefault("ASYMSEG_HOME", tempfile.mkdtemp(prefix="asymseg-bench-"))
    main()
