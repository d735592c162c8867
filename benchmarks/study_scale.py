"""Scale of a study (issue 36, item 5): peak memory training on and predicting an N-scan
synthetic study (default 200), and the time per step of a 2-scan study against one scan.

    .venv/bin/python benchmarks/study_scale.py            # N=200 (the goals' size)
    .venv/bin/python benchmarks/study_scale.py --quick    # tiny plumbing run (the test's)

1. The study: N synthetic scans (``synthetic_scan(seed, shape=(32, 96, 96), polarity=1)``),
   each painted by the real-scan protocol (:func:`real_scans.paint`: two lesion slices and an
   empty one from its ground truth), written to a staging folder and taken in with
   ``Study.add`` (both timed); also a 2-scan study of the first two. Built once under
   ``--work`` and reused.
2. Memory: a child process (this script, ``--measure train``; the parent's memory does not
   count) trains ``fit(STUDY, cfg, model)`` for ``--steps`` steps; a second child
   (``--measure predict``) runs ``predict_study`` over all N scans with that model. Each
   reports its peak resident memory (``ru_maxrss``: the imports included) and its seconds
   (training: preparing the scans, until ``Started``, then the steps).
3. Time per step: one scan against the 2-scan study, same fixed patch, steps and seed,
   interleaved (one, two, one, two, ...; ``--repeats`` each); the median of ``StepEnd.seconds``
   after the first ``--skip`` steps of every run, pooled per arm; the ratio two / one.

The patch is fixed with ``cfg.data.patch_size`` (``--patch``), never planned for the device,
so every machine does the same work per step. MB here are 10^6 bytes (the goal: < 4 GB).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, timed_log, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
GOAL_MB = 4000.0  # 4 GB peak, training and prediction
GOAL_RATIO = 1.2  # a 2-scan study's time per step against one scan's
QUICK = {"n": 4, "shape": (16, 32, 32), "steps": 4, "patch": (8, 24, 24), "repeats": 1, "skip": 1}
QUICK |= {"threads": 1}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="scans in the study")
    p.add_argument("--shape", type=int, nargs=3, default=(32, 96, 96), help="Z Y X of a scan")
    p.add_argument("--steps", type=int, default=20, help="training steps of every run")
    p.add_argument("--patch", type=int, nargs=3, default=(32, 64, 64), help="fixed patch Z Y X")
    p.add_argument("--repeats", type=int, default=3, help="runs of each arm of the step ratio")
    p.add_argument("--skip", type=int, default=5, help="first steps of a run left out of its time")
    p.add_argument("--device", default="auto", help="training device (cfg.train.device)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--work", type=Path, default=HERE / "results" / "study_scale-work")
    p.add_argument("--out", type=Path, default=HERE / "results" / "study_scale.json")
    p.add_argument("--quick", action="store_true", help="tiny plumbing run: 4 tiny scans, 4 steps")
    # the measured child process (this script again)
    p.add_argument("--measure", choices=("train", "predict"), help=argparse.SUPPRESS)
    p.add_argument("--study", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.shape, args.patch = tuple(args.shape), tuple(args.patch)
    if args.steps <= args.skip:
        p.error(f"--steps ({args.steps}) must exceed --skip ({args.skip}): nothing left to time")
    return args


def config_for(args: argparse.Namespace) -> Any:
    """The runs' configuration: the defaults, a fixed patch, one validation at the end."""
    from napari_asymseg.config import Config

    cfg = Config()
    cfg.data.patch_size = args.patch  # fixed: the same work per step on every CPU
    cfg.train.steps = cfg.train.val_every = args.steps
    cfg.train.device, cfg.train.threads, cfg.train.seed = args.device, args.threads, 0
    if args.quick:
        cfg.model.filters, cfg.loss.name = (8, 16, 16), "ce"
    return cfg


# ----------------------------------------------------------------------------- the study
def build(args: argparse.Namespace, log: Any) -> tuple[Path, dict[str, Any]]:
    """The N-scan study and the 2-scan one under ``--work`` (made once, then reused); what
    making them took."""
    folder = args.work / f"n{args.n}-{'x'.join(map(str, args.shape))}"
    marker = folder / "built.json"
    if marker.is_file():
        log(f"reusing the study in {folder}")
        return folder, json.loads(marker.read_text())
    from napari_asymseg.study.study import Study

    shutil.rmtree(folder, ignore_errors=True)  # a build killed halfway starts again
    staging = folder / "staging"
    t0 = time.perf_counter()
    slices = [stage(staging, i, args.shape) for i in range(args.n)]
    made = time.perf_counter() - t0
    log(f"made and painted {args.n} scans in {made:.0f} s")
    t0 = time.perf_counter()
    study = Study.init(folder / "study")
    study.add(sorted(staging.glob("*.zarr")))
    added = time.perf_counter() - t0
    log(f"Study.add took {added:.1f} s ({added / args.n * 1e3:.0f} ms a scan)")
    Study.init(folder / "pair").add(sorted(staging.glob("*.zarr"))[:2])
    shutil.rmtree(staging)
    info = {
        "n": args.n,
        "shape": list(args.shape),
        "make_and_paint_s": made,
        "study_add_s": added,
        "study_add_s_per_scan": added / args.n,
        "study_bytes": folder_bytes(folder / "study"),
        "annotated": len(study.annotated()),
        "painted": slices[:3],  # the first scans' painted slices, for the record
    }
    write_json(marker, info)
    return folder, info


def stage(staging: Path, seed: int, shape: tuple[int, int, int]) -> dict[str, list[int]]:
    """One synthetic scan, written and painted by the protocol; the slices painted."""
    from napari_asymseg.samples.synthetic import synthetic_scan
    from napari_asymseg.store.scan import Scan
    from real_scans import paint

    s = synthetic_scan(seed, shape=shape, polarity=1)
    scan = Scan.create(
        staging / f"scan{seed:03d}.zarr", s.image, spacing=s.spacing, ground_truth=s.ground_truth
    )
    return paint(scan, f"scan{seed:03d}")


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


# ----------------------------------------------------------------------------- memory (child)
def peak_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def measure(args: argparse.Namespace) -> None:
    """The child: train on, or predict, the study; its peak memory and seconds to ``--result``."""
    from napari_asymseg.study.predict import predict_study
    from napari_asymseg.train.events import Started
    from napari_asymseg.train.loop import fit

    imported = peak_mb()  # Python, torch, MONAI and the package: the floor of every run
    t0 = time.perf_counter()
    out: dict[str, Any] = {"imports_peak_mb": imported}
    if args.measure == "train":
        started = None
        for event in fit(args.study, config_for(args), args.model, overwrite=True):
            if isinstance(event, Started):
                started = time.perf_counter()
        assert started is not None
        out |= {"prepare_s": started - t0, "train_s": time.perf_counter() - started}
    else:
        events = predict_study(args.study, args.model)
        while True:
            try:
                next(events)
            except StopIteration as stop:
                outcomes = stop.value
                break
        out["predicted"] = sum(o.done is not None for o in outcomes)
        out["skipped"] = [o.line() for o in outcomes if o.done is None]
        out["predict_s"] = time.perf_counter() - t0
    out |= {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_mb()}
    write_json(args.result, out)


def child(kind: str, args: argparse.Namespace, study: Path, model: Path) -> dict[str, Any]:
    """Run :func:`measure` in a fresh process; what it reported."""
    result = args.work / f"{kind}-result.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", kind]
    cmd += ["--study", str(study), "--model", str(model), "--result", str(result)]
    cmd += ["--steps", str(args.steps), "--patch", *map(str, args.patch), "--skip", "0"]
    cmd += ["--device", args.device, "--threads", str(args.threads)]
    cmd += ["--quick"] * args.quick
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0 or not result.is_file():
        raise SystemExit(f"the {kind} child failed (exit {done.returncode}): see its output above")
    return json.loads(result.read_text())


# ----------------------------------------------------------------------------- step time
def step_seconds(source: Path, args: argparse.Namespace, out: Path) -> list[float]:
    """``StepEnd.seconds`` of one run of ``--steps`` steps on ``source``."""
    from napari_asymseg.train.events import StepEnd
    from napari_asymseg.train.loop import fit

    events = fit(source, config_for(args), out, overwrite=True)
    return [e.seconds for e in events if isinstance(e, StepEnd)]


def step_ratio(folder: Path, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """One scan against the 2-scan study, interleaved; medians after the first steps."""
    from napari_asymseg.study.study import Study

    pair = Study.open(folder / "pair")
    arms = {"one scan": pair.scan_path(pair.names[0]), "2-scan study": pair.path}
    runs: dict[str, list[list[float]]] = {arm: [] for arm in arms}
    for r in range(args.repeats):
        for k, (arm, source) in enumerate(arms.items()):
            secs = step_seconds(source, args, args.work / f"ratio-{k}")
            runs[arm].append(secs)
            log(f"  {arm}, run {r + 1}: median {statistics.median(secs[args.skip :]):.3f} s a step")
    timed = {arm: [run[args.skip :] for run in rs] for arm, rs in runs.items()}
    medians = {arm: statistics.median(s for run in rs for s in run) for arm, rs in timed.items()}
    per_run = {arm: [statistics.median(run) for run in rs] for arm, rs in timed.items()}
    return {
        "median_s": medians,
        "per_run_median_s": per_run,
        "ratio": medians["2-scan study"] / medians["one scan"],
        "ratio_per_repeat": [
            b / a for a, b in zip(per_run["one scan"], per_run["2-scan study"], strict=True)
        ],
        "steps": args.steps,
        "skipped_steps": args.skip,
        "repeats": args.repeats,
        "raw_s": runs,
    }


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.measure:
        measure(args)
        return {}
    log = timed_log()
    args.work.mkdir(parents=True, exist_ok=True)
    folder, built = build(args, log)
    model = args.work / "model"
    log(f"training on the {args.n}-scan study for {args.steps} steps (child process)")
    train = child("train", args, folder / "study", model)
    log(f"predicting the {args.n} scans (child process)")
    predict = child("predict", args, folder / "study", model)
    log("time per step: one scan against the 2-scan study")
    ratio = step_ratio(folder, args, log)
    cfg = config_for(args)
    data = {
        "machine": machine(),
        "n": args.n,
        "shape": list(args.shape),
        "patch": list(args.patch),
        "patch_fixed_by": "cfg.data.patch_size",
        "steps": args.steps,
        "device": args.device,
        "threads": args.threads,
        "config": {
            "filters": list(cfg.model.filters),
            "batch_size": cfg.train.batch_size,
            "loss": cfg.loss.name,
            "unpainted": cfg.data.unpainted,
        },
        "quick": args.quick,
        "units": "MB = 10^6 bytes; peak RSS = ru_maxrss of the child process, imports included",
        "study": built,
        "train": train,
        "predict": predict,
        "step_ratio": ratio,
        "goals": {
            "peak_mb": GOAL_MB,
            "train_peak_met": train["peak_rss_mb"] < GOAL_MB,
            "predict_peak_met": predict["peak_rss_mb"] < GOAL_MB,
            "step_ratio": GOAL_RATIO,
            "step_ratio_met": ratio["ratio"] <= GOAL_RATIO,
        },
    }
    write_json(args.out, data)
    print(report(data))
    return data


def report(data: dict[str, Any]) -> str:
    """The table printed at the end."""
    tr, pr, ra = data["train"], data["predict"], data["step_ratio"]
    n = data["n"]
    rows = [
        [f"train on {n} scans", f"{tr['peak_rss_mb']:.0f}", f"{tr['imports_peak_mb']:.0f}",
         f"prepare {tr['prepare_s']:.1f} s, {data['steps']} steps {tr['train_s']:.1f} s"],
        [f"predict {n} scans", f"{pr['peak_rss_mb']:.0f}", f"{pr['imports_peak_mb']:.0f}",
         f"{pr['predict_s']:.1f} s ({pr['predicted']} predicted)"],
    ]  # fmt: skip
    one, two = ra["median_s"]["one scan"], ra["median_s"]["2-scan study"]
    steps = (
        f"time per step: one scan {one:.3f} s, 2-scan study {two:.3f} s, ratio "
        f"{ra['ratio']:.2f} (goal <= {GOAL_RATIO}); study.add {data['study']['study_add_s']:.1f} s"
    )
    return table(["run", "peak RSS (MB)", "after imports (MB)", "seconds"], rows) + "\n" + steps


if __name__ == "__main__":
    main()
