"""Do the under-segmentation flags pick better regions to annotate? (METHODS.md §5)

    .venv/bin/python benchmarks/active_learning.py            # full run (docs/benchmarks-risk.md)
    .venv/bin/python benchmarks/active_learning.py --quick    # tiny plumbing run

An active-learning simulation on synthetic scans. Each seed draws one synthetic volume; its
upper half is the training scan, its lower half (same appearance, other lesions) is held out.
Starting from a few annotated slices of the training scan and one model trained on them, every
round of every strategy:

1. predicts the training scan with the current model (``predict()``, which writes the risk map),
2. picks a centre by the strategy and reveals the ground truth in a fixed box around it
   (``--box``, default 3 slices x 32 x 32 voxels, clipped to the volume): 1 where background,
   k + 1 where class k, exactly as a user would paint it,
3. fine-tunes from the current model (``fit(..., init=previous)``, ``--steps`` steps),
4. scores the new model on the held-out half and on the whole training scan (DSC, sensitivity,
   precision), and counts the annotated voxels.

Strategies (all reveal boxes of the same size; no centre inside an already annotated voxel):

* ``flags``: the peak of the top-ranked open flag of ``flag_scan`` (the risk map's regions);
* ``entropy``: the box with the highest summed softmax entropy over unannotated voxels;
* ``random``: a uniformly random unannotated voxel of the body (image above the air level);
* ``risk_box`` (optional): the box with the highest summed risk over unannotated voxels.

All strategies of a seed start from the same initial model. Models, annotations and per-round
scores are cached under ``--work``: an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PALETTE,
    Figure,
    cached_fit,
    fmt,
    logits_of,
    machine,
    mean_std,
    table,
    timed_log,
    write_json,
)
from napari_asymseg.config import Config  # noqa: E402
from napari_asymseg.review.risk_map import KAPPA, SIGMA_MM, THRESHOLD

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("flags", "entropy", "random")
COLORS = {"flags": PALETTE[1], "entropy": PALETTE[0], "random": PALETTE[6], "risk_box": PALETTE[2]}


# ----------------------------------------------------------------------------- data
def split_volume(seed: int, shape: tuple[int, int, int]) -> dict[str, Any] | None:
    """One synthetic volume of twice the depth: the upper half trains, the lower is held out.
    None when either half has no lesion."""
    from napari_asymseg.samples.synthetic import synthetic_scan

    depth = shape[0]
    syn = synthetic_scan(seed, shape=(2 * depth, shape[1], shape[2]))
    gt = syn.ground_truth
    if not gt[:depth].any() or not gt[depth:].any():
        return None
    return {
        "image": syn.image[:depth],
        "gt": gt[:depth],
        "test_image": syn.image[depth:],
        "test_gt": gt[depth:],
        "spacing": syn.spacing,
    }


def body_mask(image: np.ndarray) -> np.ndarray:
    """Voxels inside the body: smoothed intensity above the air's level (Otsu-free: the air is
    Rayleigh noise under ~100, tissue ~100 to 1000), holes filled."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(image.astype(np.float32), 1.0)
    inside = smooth > 0.5 * float(np.percentile(smooth, 60))
    return ndimage.binary_fill_holes(inside)


def box_around(centre: tuple[int, ...], box: tuple[int, ...], shape: tuple[int, ...]) -> tuple:
    return tuple(
        slice(max(0, c - b // 2), min(n, c - b // 2 + b))
        for c, b, n in zip(centre, box, shape, strict=True)
    )


# ----------------------------------------------------------------------------- strategies
def pick(
    strategy: str,
    scan: Any,
    ann: np.ndarray,
    body: np.ndarray,
    box: tuple[int, int, int],
    rng: np.random.Generator,
) -> tuple[tuple[int, int, int], str]:
    """The centre of the next box to reveal, and how it was chosen."""
    from scipy import ndimage

    from napari_asymseg.review.flags import current_risk, flag_scan

    free = ann == 0
    if strategy == "random":
        cand = np.flatnonzero(body & free)
        if cand.size == 0:
            cand = np.flatnonzero(free)
        c = np.unravel_index(int(rng.choice(cand)), ann.shape)
        return (int(c[0]), int(c[1]), int(c[2])), "random"
    if strategy == "flags":
        for flag in flag_scan(scan, save=False):
            if not flag.done and free[flag.center]:
                return flag.center, f"flag (rank {flag.rank}, risk {flag.max_risk:.2f})"
        risk = np.where(free, current_risk(scan), 0.0)
        if risk.max() > 0:  # no flag: the heatmap's peak
            c = np.unravel_index(int(np.argmax(risk)), ann.shape)
            return (int(c[0]), int(c[1]), int(c[2])), "risk peak (no open flag)"
        return pick("random", scan, ann, body, box, rng)[0], "random (no risk)"
    if strategy == "entropy":
        p = np.asarray(scan.results()["probability"][...], np.float64)  # foreground probability
        p = np.clip(p, 1e-7, 1 - 1e-7)
        score = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    elif strategy == "risk_box":
        score = current_risk(scan).astype(np.float64)
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    score = np.where(free, score, 0.0)
    sums = ndimage.uniform_filter(score, size=box, mode="constant")
    sums[~free] = -np.inf
    c = np.unravel_index(int(np.argmax(sums)), ann.shape)
    return (int(c[0]), int(c[1]), int(c[2])), f"{strategy} box"


# ----------------------------------------------------------------------------- scoring
def scores(model_dir: Path, image: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    from napari_asymseg.evaluate.metrics import class_scores

    logits, _ = logits_of(model_dir, image, tta=False)
    pred = logits.argmax(0).numpy()
    s = class_scores(pred, gt.astype(np.int64), 2)[1]
    return {"dsc": s.dsc, "sensitivity": s.sensitivity, "precision": s.precision}


def evaluate(model_dir: Path, vol: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        "held_out": scores(model_dir, vol["test_image"], vol["test_gt"]),
        "train_scan": scores(model_dir, vol["image"], vol["gt"]),
    }


# ----------------------------------------------------------------------------- the simulation
def run_seed(args: argparse.Namespace, seed: int, work: Path, log) -> dict[str, Any] | None:
    from napari_asymseg.infer.predict import predict
    from napari_asymseg.samples.synthetic import sparse_annotations
    from napari_asymseg.store.scan import Scan

    vol = split_volume(seed, tuple(args.shape))
    if vol is None:
        log(f"seed {seed}: a half without lesions, skipped")
        return None
    init_ann = sparse_annotations(vol["gt"], args.init_slices, seed=seed, n_empty=1)
    body = body_mask(vol["image"])
    box = tuple(args.box)
    root = work / f"seed-{seed}"
    root.mkdir(parents=True, exist_ok=True)
    base_scan = root / "initial.zarr"
    if not base_scan.exists():
        Scan.create(
            base_scan,
            vol["image"],
            spacing=vol["spacing"],
            annotations=init_ann,
            ground_truth=vol["gt"],
        )
    cfg = Config()
    if args.filters:
        cfg.model.filters = tuple(args.filters)
    cfg.train.steps = args.init_steps
    cfg.train.seed = seed
    if args.patch:
        cfg.data.patch_size = tuple(args.patch)
    log(f"seed {seed}: {int(vol['gt'].sum())} lesion voxels in the training half")
    init_model = root / "model-initial"
    init_fit = cached_fit(Scan.open(base_scan), cfg, init_model, log=log)
    # None: nothing was held out (fewer than 3 runs of lesion slices), nothing to judge by
    if init_fit["best_val_dsc"] is not None and init_fit["best_val_dsc"] < args.min_init_dsc:
        log(
            f"  the initial model's best validation DSC is {init_fit['best_val_dsc']:.2f} "
            f"< {args.min_init_dsc}: seed skipped (a model that finds nothing has no flags)"
        )
        return None
    start_file = root / "initial-scores.json"
    if start_file.is_file():
        start = json.loads(start_file.read_text())
    else:
        start = evaluate(init_model, vol)
        write_json(start_file, start)
    n0 = int((init_ann != 0).sum())
    log(f"  initial: held-out DSC {start['held_out']['dsc']:.3f}, {n0} annotated voxels")
    ft = Config()
    ft.train.steps = args.steps
    ft.train.val_every = max(1, min(args.steps, 20))
    ft.train.seed = seed
    ft.train.lr = args.lr
    result: dict[str, Any] = {
        "seed": seed,
        "lesion_voxels": int(vol["gt"].sum()),
        "held_out_lesion_voxels": int(vol["test_gt"].sum()),
        "initial_annotated": n0,
        "initial_fit": init_fit,
        "strategies": {},
    }
    for strategy in args.strategies:
        sdir = root / strategy
        state_file = sdir / "state.json"
        state = json.loads(state_file.read_text()) if state_file.is_file() else {"rounds": []}
        scan_path = sdir / "scan.zarr"
        if not state["rounds"] or not scan_path.exists():
            state = {"rounds": []}
            shutil.rmtree(sdir, ignore_errors=True)
            sdir.mkdir(parents=True)
            shutil.copytree(base_scan, scan_path)
        scan = Scan.open(scan_path)
        if state["rounds"]:
            scan.write_annotations(np.load(sdir / f"annotations-{len(state['rounds'])}.npy"))
        model = sdir / f"model-{len(state['rounds'])}" if state["rounds"] else init_model
        for r in range(len(state["rounds"]) + 1, args.rounds + 1):
            t0 = time.perf_counter()
            for _event in predict(scan, model):
                pass
            ann = scan.read_annotations()
            rng = np.random.default_rng([seed, r, 7])  # the same draws after a resume
            centre, how = pick(strategy, scan, ann, body, box, rng)
            region = box_around(centre, box, ann.shape)
            before = int((ann != 0).sum())
            truth = vol["gt"][region]
            hit = int(((ann[region] == 0) & (truth > 0)).sum())
            ann[region] = truth + 1
            scan.write_annotations(ann)
            np.save(sdir / f"annotations-{r}.npy", ann)
            new_model = sdir / f"model-{r}"
            shutil.rmtree(new_model, ignore_errors=True)
            fit_summary = cached_fit(scan, ft, new_model, init=model)
            model = new_model
            metrics = evaluate(model, vol)
            state["rounds"].append(
                {
                    "round": r,
                    "centre": list(centre),
                    "how": how,
                    "box": [[s.start, s.stop] for s in region],
                    "new_voxels": int((ann != 0).sum()) - before,
                    "new_foreground_voxels": hit,
                    "annotated_voxels": int((ann != 0).sum()),
                    "fit": fit_summary,
                    **metrics,
                    "seconds": time.perf_counter() - t0,
                }
            )
            write_json(state_file, state)
            held = metrics["held_out"]
            log(
                f"  {strategy:8s} round {r}: {how}, +{hit} lesion voxels revealed, held-out "
                f"DSC {held['dsc']:.3f} sens {held['sensitivity']:.3f} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
        result["strategies"][strategy] = state["rounds"]
    result["initial"] = start
    return result


# ----------------------------------------------------------------------------- summary
def curves(seeds: list[dict[str, Any]], strategy: str, where: str, key: str) -> dict[str, Any]:
    """Per round (0 = the initial model): mean and std over seeds of the score and of the
    annotated voxels added to the initial slices."""
    n = min(len(s["strategies"][strategy]) for s in seeds)
    ys = [[s["initial"][where][key]] for s in seeds]
    xs = [[0] for _ in seeds]
    for i, s in enumerate(seeds):
        for row in s["strategies"][strategy][:n]:
            ys[i].append(row[where][key])
            xs[i].append(row["annotated_voxels"] - s["initial_annotated"])
    y = np.asarray(ys, np.float64)
    x = np.asarray(xs, np.float64)
    return {
        "added_voxels": x.mean(0).tolist(),
        "mean": np.nanmean(y, 0).tolist(),
        "std": (np.nanstd(y, 0, ddof=1) if len(seeds) > 1 else np.zeros(n + 1)).tolist(),
        "per_seed": y.tolist(),
    }


def voxels_to_reach(xs: list[float], ys: list[float], target: float) -> float | None:
    """The first (linearly interpolated) added-voxel count at which the curve reaches target."""
    if ys[0] >= target:
        return xs[0]
    for i in range(1, len(ys)):
        if ys[i] >= target:
            y0, y1 = ys[i - 1], ys[i]
            t = (target - y0) / (y1 - y0) if y1 > y0 else 1.0
            return xs[i - 1] + t * (xs[i] - xs[i - 1])
    return None


def goal(
    seeds: list[dict[str, Any]], summary: dict[str, Any], strategy: str, where: str
) -> dict[str, Any]:
    """Voxels ``strategy`` needs to reach random's final DSC, as a fraction of random's final
    voxels: on the mean curves, and per seed. Both for the added voxels (the boxes) and for all
    annotated voxels (the initial slices too)."""
    cur, ref = summary[where][strategy]["dsc"], summary[where]["random"]["dsc"]
    target, ref_x = ref["mean"][-1], ref["added_voxels"][-1]
    n0 = float(np.mean([s["initial_annotated"] for s in seeds]))
    x = voxels_to_reach(cur["added_voxels"], cur["mean"], target)
    per_seed = []
    for i, s in enumerate(seeds):
        rows = s["strategies"][strategy]
        xs = [0.0] + [r["annotated_voxels"] - s["initial_annotated"] for r in rows]
        rx = s["strategies"]["random"][-1]["annotated_voxels"] - s["initial_annotated"]
        xi = voxels_to_reach(xs, cur["per_seed"][i], ref["per_seed"][i][-1])
        per_seed.append(None if xi is None or rx <= 0 else xi / rx)
    return {
        "random_final_dsc": target,
        "random_final_added_voxels": ref_x,
        "voxels_needed": x,
        "fraction_of_added": None if x is None or ref_x <= 0 else x / ref_x,
        "fraction_of_total": None if x is None else (x + n0) / (ref_x + n0),
        "per_seed_fraction_of_added": per_seed,
        "met": x is not None and ref_x > 0 and x / ref_x <= 0.7,
    }


def summarise(seeds: list[dict[str, Any]], strategies: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for where in ("held_out", "train_scan"):
        summary[where] = {
            st: {k: curves(seeds, st, where, k) for k in ("dsc", "sensitivity", "precision")}
            for st in strategies
        }
    hits = {}
    for st in strategies:
        vals = [r["new_foreground_voxels"] for s in seeds for r in s["strategies"][st]]
        new = [r["new_voxels"] for s in seeds for r in s["strategies"][st]]
        hits[st] = {
            "lesion_voxels_per_box": mean_std(vals)[:2],
            "share_of_boxes_with_lesion": float(np.mean([v > 0 for v in vals])),
            "new_voxels_per_box": mean_std(new)[:2],
        }
    summary["revealed"] = hits
    # less sensitive to one round's noise than a final value: the mean score over the range of
    # added voxels that every strategy covered (area under the interpolated curve / range)
    summary["mean_over_common_range"] = {}
    for where in ("held_out", "train_scan"):
        x_end = min(summary[where][st]["dsc"]["added_voxels"][-1] for st in strategies)
        grid = np.linspace(0.0, x_end, 101)
        summary["mean_over_common_range"][where] = {
            "added_voxels": x_end,
            **{
                st: {
                    key: float(
                        np.mean(
                            np.interp(
                                grid,
                                summary[where][st][key]["added_voxels"],
                                summary[where][st][key]["mean"],
                            )
                        )
                    )
                    for key in ("dsc", "sensitivity", "precision")
                }
                for st in strategies
            },
        }
    if "random" in strategies:
        summary["goal"] = {
            where: {st: goal(seeds, summary, st, where) for st in strategies if st != "random"}
            for where in ("held_out", "train_scan")
        }
    return summary


def print_tables(summary: dict[str, Any], strategies: list[str]) -> str:
    out = []
    for where, title in (("held_out", "held-out half"), ("train_scan", "whole training scan")):
        n = len(summary[where][strategies[0]]["dsc"]["mean"])
        header = ["strategy", "metric", *(f"round {r}" for r in range(n))]
        rows = []
        for st in strategies:
            c = summary[where][st]
            rows.append([st, "added voxels", *(f"{v:.0f}" for v in c["dsc"]["added_voxels"])])
            for key in ("dsc", "sensitivity", "precision"):
                rows.append(
                    [
                        "",
                        key,
                        *(fmt(m, s, 2) for m, s in zip(c[key]["mean"], c[key]["std"], strict=True)),
                    ]
                )
        out.append(f"\nScores on the {title} (mean ± std over seeds)\n")
        out.append(table(header, rows))
    rows = []
    for where, per in summary["mean_over_common_range"].items():
        for st in strategies:
            rows.append(
                [where, st, f"{per['added_voxels']:.0f}"]
                + [f"{per[st][key]:.3f}" for key in ("dsc", "sensitivity", "precision")]
            )
    out.append("\nMean score over the added-voxel range all strategies covered\n")
    out.append(table(["scored on", "strategy", "range", "DSC", "sensitivity", "precision"], rows))
    rows = []
    for st, h in summary["revealed"].items():
        rows.append(
            [
                st,
                f"{h['new_voxels_per_box'][0]:.0f}",
                f"{h['lesion_voxels_per_box'][0]:.0f} ± {h['lesion_voxels_per_box'][1]:.0f}",
                f"{100 * h['share_of_boxes_with_lesion']:.0f}%",
            ]
        )
    out.append("\nWhat the boxes revealed\n")
    out.append(
        table(["strategy", "new voxels / box", "lesion voxels / box", "boxes with lesion"], rows)
    )
    if "goal" in summary:
        rows = []
        for where, per in summary["goal"].items():
            for st, g in per.items():
                frac = g["fraction_of_added"]
                rows.append(
                    [
                        where,
                        st,
                        f"{g['random_final_dsc']:.3f}",
                        "not reached" if frac is None else f"{100 * frac:.0f}%",
                        "n/a"
                        if g["fraction_of_total"] is None
                        else f"{100 * g['fraction_of_total']:.0f}%",
                        " ".join(
                            "-" if v is None else f"{100 * v:.0f}%"
                            for v in g["per_seed_fraction_of_added"]
                        ),
                        "yes" if g["met"] else "no",
                    ]
                )
        out.append("\nVoxels needed to reach random's final DSC, as a share of random's voxels\n")
        out.append(
            table(
                [
                    "scored on",
                    "strategy",
                    "random final DSC",
                    "share (added voxels)",
                    "share (all annotated)",
                    "per seed (added)",
                    "goal <= 70%",
                ],
                rows,
            )
        )
    text = "\n".join(out)
    print(text)
    return text


def draw(summary: dict[str, Any], strategies: list[str], path: Path, n_seeds: int) -> None:
    fig = Figure(1400, 820, f"Active learning on synthetic scans: mean ± std over {n_seeds} seeds")
    panels = [
        ("held_out", "dsc", "DSC, held-out half"),
        ("held_out", "sensitivity", "sensitivity, held-out half"),
        ("train_scan", "dsc", "DSC, whole training scan"),
        ("train_scan", "sensitivity", "sensitivity, whole training scan"),
    ]
    xmax = max(max(summary["held_out"][st]["dsc"]["added_voxels"]) for st in strategies)
    for i, (where, key, title) in enumerate(panels):
        left, top = (i % 2) * 700, 30 + (i // 2) * 395
        cs = [summary[where][st][key] for st in strategies]
        lo = min(min(np.subtract(c["mean"], c["std"])) for c in cs)
        hi = max(max(np.add(c["mean"], c["std"])) for c in cs)
        pad = max(0.02, 0.08 * (hi - lo))
        p = fig.panel(
            (left, top, left + 690, top + 390),
            xlim=(0.0, xmax * 1.03 or 1.0),
            ylim=(max(0.0, lo - pad), min(1.0, hi + pad)),
            title=title,
            xlabel="annotated voxels added to the initial slices",
            ylabel=key,
        )
        for st, c in zip(strategies, cs, strict=True):
            p.line(
                c["added_voxels"],
                c["mean"],
                COLORS[st],
                lo=list(np.subtract(c["mean"], c["std"])),
                hi=list(np.add(c["mean"], c["std"])),
            )
        p.legend([(st, COLORS[st]) for st in strategies], "lr")
    fig.save(path)


# ----------------------------------------------------------------------------- main
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/asymseg-active-learning", help="cache folder")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=list(range(1, 13)), help="candidate seeds"
    )
    p.add_argument("--n-seeds", type=int, default=3, help="usable seeds to run")
    p.add_argument(
        "--min-init-dsc",
        type=float,
        default=0.3,
        help="skip a seed whose initial model's best validation DSC is lower",
    )
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    p.add_argument("--shape", type=int, nargs=3, default=[32, 96, 96], help="training half")
    p.add_argument("--box", type=int, nargs=3, default=[3, 32, 32])
    p.add_argument("--init-slices", type=int, default=4, help="annotated lesion slices at start")
    p.add_argument("--init-steps", type=int, default=120)
    p.add_argument("--steps", type=int, default=40, help="fine-tuning steps per round")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tuning peak learning rate")
    p.add_argument("--filters", type=int, nargs="+", default=None, help="default: Config()'s")
    p.add_argument("--patch", type=int, nargs=3, default=None, help="default: planned")
    p.add_argument("--quick", action="store_true", help="tiny configuration (plumbing only)")
    p.add_argument("--redraw", action="store_true", help="only re-summarise --out and redraw")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/active_learning.json"))
    p.add_argument("--figure", default=str(ROOT / "docs/images/active-learning.png"))
    args = p.parse_args(argv)
    if args.quick:
        args.n_seeds, args.rounds, args.shape = 1, 2, [16, 48, 48]
        args.init_steps, args.steps, args.box, args.patch = 4, 2, [3, 16, 16], [8, 32, 32]
        args.init_slices, args.filters, args.min_init_dsc = 2, [8, 16, 32], -1.0
    for st in args.strategies:
        if st not in (*STRATEGIES, "risk_box"):
            p.error(f"unknown strategy {st}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.redraw:  # summarise the stored per-seed rounds again, and draw
        result = json.loads(Path(args.out).read_text())
        strategies = result["config"]["strategies"]
        result["summary"] = summary = summarise(result["seeds"], strategies)
        result["tables"] = print_tables(summary, strategies)
        write_json(args.out, result, compact=["seeds"])
        draw(summary, strategies, Path(args.figure), len(result["seeds"]))
        return result
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log = timed_log()

    seeds, skipped = [], []
    for seed in args.seeds:
        if len(seeds) == args.n_seeds:
            break
        res = run_seed(args, seed, work, log)
        if res is None:
            skipped.append(seed)
        else:
            seeds.append(res)
    if not seeds:
        raise SystemExit("no usable seed")
    summary = summarise(seeds, args.strategies)
    tables = print_tables(summary, args.strategies)
    result = {
        "benchmark": "active_learning",
        "machine": machine(),
        "runtime_s": time.perf_counter() - t0,
        "config": {
            "quick": args.quick,
            "seeds": [s["seed"] for s in seeds],
            "skipped_seeds": skipped,
            "rounds": args.rounds,
            "strategies": args.strategies,
            "training_scan_shape": args.shape,
            "held_out": "the other half (same depth) of the same synthetic volume",
            "box": args.box,
            "initial_annotation": f"{args.init_slices} lesion slices + 1 empty slice",
            "initial_steps": args.init_steps,
            "fine_tune_steps": args.steps,
            "fine_tune_lr": args.lr,
            "filters": args.filters or list(Config().model.filters),
            "patch": args.patch or "planned by the engine",
            "min_initial_val_dsc": args.min_init_dsc,
            "random_centres": "uniform over unannotated voxels of the body (smoothed image "
            "above half its 60th percentile, holes filled)",
            "risk_defaults": {"KAPPA": KAPPA, "SIGMA_MM": SIGMA_MM, "THRESHOLD": THRESHOLD},
            "prediction": "predict() with the training config (no test-time flips)",
        },
        "summary": summary,
        "seeds": seeds,
        "tables": tables,
    }
    write_json(args.out, result, compact=["seeds"])
    draw(summary, args.strategies, Path(args.figure), len(seeds))
    log(f"wrote {args.out} and {args.figure}")
    return result


if __name__ == "__main__":
    main()
