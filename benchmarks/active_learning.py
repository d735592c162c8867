"""The review loop in user actions: does the queue beat foreground-aware random? (issue 19)

    .venv/bin/python benchmarks/active_learning.py                   # full run (docs/benchmarks.md)
    .venv/bin/python benchmarks/active_learning.py --quick           # tiny plumbing run

A simulated clinician starts from the real-scan protocol (benchmarks/real_scans.py: the lesion
painted on 2 slices, 1 slice without lesion painted background, a model trained with the
defaults) and then spends a budget of **actions**, each one answer:

* a suspected false alarm (a predicted region) is answered from the ground truth: "lesion"
  when most of its voxels are lesion, else "not lesion"; the answer writes the region as the
  dock's buttons do (:func:`napari_asymseg.review.queue.answer_writes`);
* a suspected miss, or a box, is answered by painting the truth inside it on one slice (its
  centre's): the unannotated voxels of the box on that slice become lesion or background.

After every ``--per-round`` actions the model is fine-tuned from where it was, as the dock's
Review section does (40 steps at a peak rate of 1e-3), and predicts the scan again. Scored
after each round: the DSC of what the clinician has (the paint where painted, the model
elsewhere) on the voxels nobody had painted at the start, with the voxels painted counted
beside the actions.

Strategies, the same budget and the same initial model per seed:

* ``queue``: the top open item of the review queue (:mod:`napari_asymseg.review.queue`);
* ``fg_random``: foreground-aware random (nnActive's strongest baseline): with probability
  1/2 a random predicted region (a false-alarm item), else a box at a random unannotated voxel
  within 10 mm of the predicted or painted lesion;
* ``entropy``: the box with the most summed prediction entropy on unannotated voxels;
* ``random``: a box at a random unannotated voxel of the body.

Boxes are 40 x 40 mm on one slice. Cases: brain1, the Colin27 hippocampus, the synthetic
sample (as built by real_scans.py, under ``--work``). Results resume from ``--work``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PALETTE, Figure, machine, mean_std, table, timed_log, write_json  # noqa: E402
from napari_asymseg.config import Config  # noqa: E402
from napari_asymseg.store.annotations import (  # noqa: E402
    BACKGROUND,
    NOT_ANNOTATED,
    code_of_class,
)
from napari_asymseg.store.scan import Scan  # noqa: E402
from real_scans import build_case, paint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("queue", "fg_random", "entropy", "random")
CASES = ("brain1", "colin27", "synthetic")
COLORS = {"queue": PALETTE[1], "fg_random": PALETTE[2], "entropy": PALETTE[0], "random": PALETTE[6]}
BOX_MM = 40.0
NEAR_MM = 10.0
FINE_TUNE_STEPS, FINE_TUNE_LR = 40, 1e-3  # the dock's Review section (napari_asymseg._qt.review)


# ----------------------------------------------------------------------------- the clinician
def paint_box(ann: np.ndarray, truth: np.ndarray, z: int, ys: slice, xs: slice) -> int:
    """Paint the truth on the unannotated voxels of one slice's box; voxels painted."""
    free = ann[z, ys, xs] == NOT_ANNOTATED
    values = np.where(truth[z, ys, xs], code_of_class(1), BACKGROUND).astype(np.uint8)
    ann[z, ys, xs] = np.where(free, values, ann[z, ys, xs])
    return int(free.sum())


def box_at(center: tuple[int, int, int], spacing, shape) -> tuple[int, slice, slice]:
    """The 40 x 40 mm box of one slice around ``center``, clipped to the scan."""
    z, y, x = center
    hy, hx = (max(1, int(BOX_MM / 2 / s)) for s in spacing[1:])
    return (
        z,
        slice(max(0, y - hy), min(shape[1], y + hy)),
        slice(max(0, x - hx), min(shape[2], x + hx)),
    )


def answer_item(item, ann, truth, prediction) -> tuple[int, str]:
    """The clinician's answer to a queue item, written into ``ann``; voxels written, what."""
    from napari_asymseg.review import queue as rq

    if item.kind == rq.FALSE_ALARM:
        mask = rq.region_of(item, prediction, ann)
        lesion = truth[item.box][mask].mean() >= 0.5 if mask.any() else False
        verdict = rq.LESION if lesion else rq.NOT_LESION
        (z, y, x), codes = rq.answer_writes(item, verdict, prediction, ann)
        ann[z, y, x] = codes
        return int(z.size), verdict
    z0, y0, x0, z1, y1, x1 = item.bbox
    return paint_box(ann, truth, item.center[0], slice(y0, y1), slice(x0, x1)), "painted"


def body_mask(image: np.ndarray) -> np.ndarray:
    """Voxels inside the body: smoothed intensity above half its 60th percentile, filled."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(image.astype(np.float32), 1.0)
    return ndimage.binary_fill_holes(smooth > 0.5 * float(np.percentile(smooth, 60)))


def act(strategy, rng, ann, truth, results, spacing, body) -> tuple[int, str]:
    """One action of ``strategy``; voxels written and what was done."""
    from scipy import ndimage

    from napari_asymseg.review import queue as rq

    prediction, probability, risk, queue = results
    free = ann == NOT_ANNOTATED
    if strategy == "queue":
        open_items = queue.open
        if open_items:
            item = open_items[0]
            queue.items = tuple(i for i in queue.items if i is not item)
            return answer_item(item, ann, truth, prediction)
    if strategy == "fg_random":
        alarms = [i for i in queue.open if i.kind == rq.FALSE_ALARM]
        if alarms and rng.random() < 0.5:
            item = alarms[int(rng.integers(len(alarms)))]
            queue.items = tuple(i for i in queue.items if i is not item)
            return answer_item(item, ann, truth, prediction)
        lesion = (prediction > 0) | (ann > BACKGROUND)
        near = ndimage.distance_transform_edt(~lesion, sampling=spacing) <= NEAR_MM
        cand = np.flatnonzero(near & free)
    elif strategy == "entropy":
        p = np.clip(probability, 1e-6, 1 - 1e-6)
        h = np.where(free, -(p * np.log(p) + (1 - p) * np.log(1 - p)), 0).astype(np.float32)
        size = [1, *(max(1, int(BOX_MM / s)) for s in spacing[1:])]
        summed = ndimage.uniform_filter(h, size=size, mode="constant")
        centre = np.unravel_index(int(np.argmax(np.where(free, summed, -1))), ann.shape)
        return paint_box(ann, truth, *box_at(centre, spacing, ann.shape)), "box"
    else:  # random, and queue once it is empty
        cand = np.flatnonzero(body & free)
    if cand.size == 0:
        cand = np.flatnonzero(free)
    centre = np.unravel_index(int(rng.choice(cand)), ann.shape)
    return paint_box(ann, truth, *box_at(centre, spacing, ann.shape)), "box"


# ----------------------------------------------------------------------------- the loop
def fine_tune(scan: Scan, cfg: Config, init: Path, out: Path, steps: int) -> float:
    from napari_asymseg.train.loop import fit

    t0 = time.perf_counter()
    tune = copy.deepcopy(cfg)
    tune.train.steps, tune.train.lr, tune.train.estimate = steps, FINE_TUNE_LR, False
    tune.train.val_every = min(tune.train.val_every, steps)
    for _ in fit(scan, tune, out, init=init):
        pass
    return time.perf_counter() - t0


def predict_and_rank(scan: Scan, model: Path) -> tuple[tuple[Any, ...], float]:
    from napari_asymseg.infer.predict import predict
    from napari_asymseg.review.queue import build_queue

    t0 = time.perf_counter()
    for _ in predict(scan, model):
        pass
    queue = build_queue(scan)
    results = (
        np.asarray(scan.result("prediction")[...]),
        np.asarray(scan.result("probability")[...], np.float32),
        np.asarray(scan.result("risk")[...], np.float32),
        _Mutable(queue.items),
    )
    return results, time.perf_counter() - t0


class _Mutable:
    """The queue's items, taken one by one within a round."""

    def __init__(self, items) -> None:
        self.items = tuple(items)

    @property
    def open(self):
        return [i for i in self.items if not i.answered]


def mask_dsc(ann: np.ndarray, prediction: np.ndarray, truth: np.ndarray, scored: np.ndarray):
    """DSC, sensitivity, precision of the clinician's mask (paint, else model) on ``scored``."""
    mask = np.where(ann != NOT_ANNOTATED, ann > BACKGROUND, prediction > 0)
    p, t = mask[scored], truth[scored]
    tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
    return {
        "dsc": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
    }


def initial(case: str, seed: int, args, log) -> tuple[Path, Path, Config]:
    """The protocol's painted scan and its model (trained once per case and seed)."""
    from napari_asymseg.train.loop import fit

    work = Path(args.work)
    base = work / "initial" / f"{case}-{seed}"
    scan_path, model = base.with_suffix(".zarr"), base.with_suffix(".model")
    cfg = Config()
    cfg.train.seed, cfg.train.estimate = seed, False
    if args.quick:
        cfg.train.steps, cfg.train.val_every = 4, 2
    if not (model / "best.pt").is_file():
        if scan_path.exists():
            shutil.rmtree(scan_path)
        shutil.copytree(build_case(case, work, args.quick), scan_path)
        paint(Scan.open(scan_path), case)
        log(f"{case} seed {seed}: training the initial model")
        # a run killed before its best.pt is redone from scratch
        for _ in fit(Scan.open(scan_path), cfg, model, overwrite=True):
            pass
    return scan_path, model, cfg


def simulate(case: str, seed: int, strategy: str, args, log) -> dict[str, Any]:
    scan_path, model, cfg = initial(case, seed, args, log)
    run = Path(args.work) / "runs" / f"{case}-{seed}-{strategy}"
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    shutil.copytree(scan_path, run / "scan.zarr")
    scan = Scan.open(run / "scan.zarr")
    truth = np.asarray(scan.ground_truth[...]) > 0
    ann = scan.read_annotations()
    scored = ann == NOT_ANNOTATED
    body = body_mask(np.asarray(scan.image[...]))
    rng = np.random.default_rng(1000 * seed + STRATEGIES.index(strategy))
    results, machine_s = predict_and_rank(scan, model)
    rows = [{"actions": 0, "voxels": 0, **mask_dsc(ann, results[0], truth, scored)}]
    actions = voxels = 0
    kinds: list[str] = []
    current = model
    while actions < args.budget:
        for _ in range(min(args.per_round, args.budget - actions)):
            n, what = act(strategy, rng, ann, truth, results, scan.spacing, body)
            actions, voxels = actions + 1, voxels + n
            kinds.append(what)
        scan.write_annotations(ann)
        nxt = run / f"model-{actions}"
        machine_s += fine_tune(scan, cfg, current, nxt, args.tune_steps)
        if current != model:
            shutil.rmtree(current, ignore_errors=True)
        current = nxt
        results, s = predict_and_rank(scan, current)
        machine_s += s
        rows.append(
            {"actions": actions, "voxels": voxels, **mask_dsc(ann, results[0], truth, scored)}
        )
        log(f"{case} seed {seed} {strategy}: {actions} actions, DSC {rows[-1]['dsc']:.3f}")
    shutil.rmtree(run, ignore_errors=True)
    return {"rows": rows, "answers": kinds, "machine_s": machine_s}


# ----------------------------------------------------------------------------- summary
def actions_to_reach(rows: list[dict[str, Any]], level: float) -> float:
    for r in rows:
        if r["dsc"] >= level:
            return r["actions"]
    return float("inf")


def reach(curves: dict[str, Any]) -> dict[str, Any]:
    """Per case: the actions each strategy's mean curve needs to reach each DSC level that
    foreground-aware random reaches, and the queue's share of fg_random's actions (the goal:
    at most 0.5)."""
    out: dict[str, Any] = {}
    for case, cs in curves.items():
        if "queue" not in cs or "fg_random" not in cs:
            continue
        rows = {st: [{"actions": a, "dsc": d} for a, d in zip(c["actions"], c["mean"],
                strict=True)] for st, c in cs.items()}  # fmt: skip
        start = cs["fg_random"]["mean"][0]
        levels = sorted(
            {math.floor(d * 100) / 100 for d in cs["fg_random"]["mean"][1:] if d > start + 0.005}
        )
        shares = []
        for level in levels:
            q, r = (
                actions_to_reach(rows["queue"], level),
                actions_to_reach(rows["fg_random"], level),
            )
            shares.append({"level": level, "queue": q, "fg_random": r,
                           "share": q / r if r and math.isfinite(q) else None})  # fmt: skip
        out[case] = shares
    return out


def summarise(records, cases, seeds, strategies) -> tuple[list[list[Any]], dict[str, Any]]:
    table_rows, curves = [], {}
    for case in cases:
        curves[case] = {}
        for st in strategies:
            runs = [records.get(f"{case}-{s}-{st}") for s in seeds]
            runs = [r for r in runs if r]
            if not runs:
                continue
            n = min(len(r["rows"]) for r in runs)
            xs = [runs[0]["rows"][k]["actions"] for k in range(n)]
            means = [mean_std(r["rows"][k]["dsc"] for r in runs) for k in range(n)]
            curves[case][st] = {"actions": xs, "mean": [m for m, _, _ in means],
                                "std": [s for _, s, _ in means], "runs": len(runs)}  # fmt: skip
            start, end = means[0][0], means[-1][0]
            vox = mean_std(r["rows"][-1]["voxels"] for r in runs)[0]
            secs = mean_std(r["machine_s"] for r in runs)[0]
            table_rows.append(
                [
                    case,
                    st,
                    f"{start:.3f}",
                    f"{end:.3f} ± {means[-1][1]:.3f}",
                    f"{end - start:+.3f}",
                    f"{vox:,.0f}",
                    f"{secs:.0f}",
                    len(runs),
                ]  # fmt: skip
            )
    return table_rows, curves


def plot(curves, path: Path, n_seeds: int) -> None:
    cases = [c for c in curves if curves[c]]
    fig = Figure(700 * len(cases), 440, "The review loop in user actions: mean ± std over seeds")
    for i, case in enumerate(cases):
        cs = curves[case]
        lo = min(min(np.subtract(c["mean"], c["std"])) for c in cs.values())
        hi = max(max(np.add(c["mean"], c["std"])) for c in cs.values())
        pad = max(0.02, 0.08 * (hi - lo))
        xmax = max(max(c["actions"]) for c in cs.values())
        p = fig.panel(
            (i * 700, 30, i * 700 + 690, 430),
            xlim=(0.0, xmax or 1.0),
            ylim=(max(0.0, lo - pad), min(1.0, hi + pad)),
            title=f"{case} ({max(c['runs'] for c in cs.values())} seed(s))",
            xlabel="actions (answers)",
            ylabel="DSC on the voxels unpainted at the start",
        )
        for st, c in cs.items():
            p.line(c["actions"], c["mean"], COLORS[st],
                   lo=list(np.subtract(c["mean"], c["std"])),
                   hi=list(np.add(c["mean"], c["std"])))  # fmt: skip
        p.legend([(st, COLORS[st]) for st in cs], "lr")
    fig.save(path)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/asymseg-active-learning", help="cache folder")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--budget", type=int, default=10, help="actions per run (default 10)")
    p.add_argument("--per-round", type=int, default=2, help="actions per fine-tune (default 2)")
    p.add_argument("--out", help="results JSON (default benchmarks/results/active_learning.json)")
    p.add_argument("--figure", help="the plot (default: the results' name, .png)")
    p.add_argument("--quick", action="store_true", help="tiny plumbing run (writes only --out)")
    p.add_argument(
        "--summarise",
        action="store_true",
        help="only summarise the runs already in --work (nothing new is simulated)",
    )
    args = p.parse_args(argv)
    args.tune_steps = FINE_TUNE_STEPS
    if args.quick:
        args.cases, args.seeds, args.budget, args.per_round = ["synthetic"], [0], 2, 1
        args.tune_steps = 4
    elif args.out is None:
        args.out = str(ROOT / "benchmarks" / "results" / "active_learning.json")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    log = timed_log()
    cache = Path(args.work) / "records"
    cache.mkdir(parents=True, exist_ok=True)
    records: dict[str, Any] = {}
    for case in args.cases:
        for seed in args.seeds:
            for st in args.strategies:
                key = f"{case}-{seed}-{st}"
                path = cache / f"{key}{'-quick' if args.quick else ''}.json"
                if path.is_file():
                    records[key] = json.loads(path.read_text())
                    continue
                if args.summarise:
                    continue
                records[key] = simulate(case, seed, st, args, log)
                path.write_text(json.dumps(records[key]))
    rows, curves = summarise(records, args.cases, args.seeds, args.strategies)
    header = ["case", "strategy", "DSC at start", f"after {args.budget} actions",
              "gain", "voxels painted", "machine s", "seeds"]  # fmt: skip
    print(table(header, rows))
    result = {"machine": machine(), "args": dict(vars(args)), "records": records,
              "curves": curves, "reach": reach(curves)}  # fmt: skip
    if args.out:
        write_json(Path(args.out), result)
        plot(curves, Path(args.figure or Path(args.out).with_suffix(".png")), len(args.seeds))
    return result


if __name__ == "__main__":
    main()
