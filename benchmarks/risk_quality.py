"""How well does the false-negative heatmap find the voxels a model misses? (METHODS.md §5)

    .venv/bin/python benchmarks/risk_quality.py            # full run (see docs/benchmarks-risk.md)
    .venv/bin/python benchmarks/risk_quality.py --quick    # tiny plumbing run

On fully labelled held-out voxels, scores every variant of
:func:`napari_asymseg.review.risk_map.risk_map` and two baselines by their average precision (AUPRC)
for the true false negatives (ground-truth foreground that the model predicts background), over the
unannotated voxels of the evaluated volume, side by side on the same predictions:

* baselines ``1 - max softmax`` and the softmax entropy, over all voxels as those maps are
  shown, and the same maps zeroed on predicted foreground (``|bg``: where the gain comes from);
* the risk map with and without test-time flips (``kappa`` 0, 1, 2 times the flip spread of the
  margin), smoothed by ``sigma_mm`` 0, 1, 1.5, 3 mm, with the Platt calibration fitted during
  training, without calibration, or with the logit-shift fallback.

It also reports the calibration of the expected missed volume (sum of the risk over the
unannotated voxels / the true number of missed voxels there; 1 is perfect), and for the flags
(regions of risk >= threshold) how many there are, the share that contain a real miss and the
share of the missed voxels they cover.

Data: synthetic scans (a model per seed trained on 4 lesion slices + 1 empty slice of one scan,
evaluated on its unannotated voxels and on 2 other scans) and Colin27 (hippocampus; trained on
the annotated left hemisphere, evaluated on the unannotated right one). Trained models and
predictions are cached under ``--work``, so a second run only re-scores.
"""

from __future__ import annotations

import argparse
import json
import math
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
    machine,
    mean_std,
    table,
    timed_log,
    write_json,
)
from napari_asymseg.config import Config  # noqa: E402
from napari_asymseg.evaluate.metrics import average_precision
from napari_asymseg.review.calibration import Calibration, calibration_from_history
from napari_asymseg.review.risk_map import KAPPA, SIGMA_MM, THRESHOLD, risk_map

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (0.0, 1.0, 1.5, 3.0)
KAPPAS = (0.0, 1.0, 2.0)
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5)
CALIBRATIONS = ("platt", "none", "logit_shift")
DATASETS = ("synthetic-other", "synthetic-same", "colin27")
SHORT = {"synthetic-other": "syn. other", "synthetic-same": "syn. same", "colin27": "Colin27"}
DATASET_TITLES = {
    "synthetic-other": "synthetic, other scans",
    "synthetic-same": "synthetic, same scan",
    "colin27": "Colin27, right hemisphere",
}


# ----------------------------------------------------------------------------- scoring
def method_name(
    mode: str,
    cal: str,
    sigma: float,
    kappa: float | None,
    annotations: bool = True,
    unmasked: bool = False,
) -> str:
    flips = "flips" if mode == "tta" else "no flips"
    k = f", kappa={kappa:g}" if kappa is not None else ""
    ann = "" if annotations else ", model only"
    fg = ", fg zeroed first" if unmasked else ""
    return f"risk [{flips}{k}, sigma={sigma:g}, {cal}{ann}{fg}]"


def flag_key(sigma: float, kappa: float | None, unmasked: bool = False) -> str:
    k = f"kappa={kappa:g}, " if kappa is not None else ""
    return f"{k}sigma={sigma:g}" + (", fg zeroed first" if unmasked else "")


def risk_fg_zeroed_first(
    margin: Any,
    pred: np.ndarray,
    cal: Calibration,
    *,
    spread: Any,
    annotations: np.ndarray | None,
    spacing: tuple[float, float, float],
    kappa: float,
    sigma_mm: float,
) -> np.ndarray:
    """The first design of :func:`risk_map`, kept for comparison: predicted foreground is set
    to 0 *before* smoothing, which pulls the risk down at the rim of every predicted lesion."""
    from napari_asymseg.review.risk_map import model_risk, smooth, with_annotations

    risk = model_risk(margin, pred, cal, spread=spread, kappa=kappa)
    if annotations is not None:
        risk = with_annotations(risk, annotations, pred)
    risk = smooth(risk, sigma_mm, spacing)
    risk[pred > 0] = 0.0
    if annotations is not None:
        risk = with_annotations(risk, annotations, pred)
    return risk


def calibrations(ckpt: dict[str, Any]) -> dict[str, Calibration]:
    history, best = ckpt.get("history", []), ckpt.get("best_step", -1)
    rows = [h for h in history if h.get("step") == best] or history[-1:]
    shift = rows[-1].get("logit_shift") if rows else None
    fallback = Calibration()
    if shift is not None and math.isfinite(shift) and shift < 0:
        fallback = Calibration(1.0, -float(shift), "logit_shift")
    return {
        "platt": calibration_from_history(history, best),
        "none": Calibration(),
        "logit_shift": fallback,
    }


def flag_stats(
    risk: np.ndarray, fn: np.ndarray, evaluated: np.ndarray, threshold: float
) -> dict[str, float]:
    """Flags as :func:`napari_asymseg.review.flags.find_flags` builds them (26-connected regions of
    risk >= threshold with expected missed volume >= 1), on the evaluated voxels only."""
    from scipy import ndimage

    r = np.where(evaluated, risk, 0.0).astype(np.float32)
    labels, n = ndimage.label(r >= threshold, structure=np.ones((3, 3, 3), bool))
    total_fn = int((fn & evaluated).sum())
    if n == 0:
        return {"flags": 0, "precision": float("nan"), "fn_recall": 0.0, "top1_hit": 0.0}
    index = np.arange(1, n + 1)
    sums = np.asarray(ndimage.sum_labels(r, labels, index))
    hits = np.bincount(labels[fn & evaluated], minlength=n + 1)[1:]
    keep = sums >= 1.0
    if not keep.any():
        return {"flags": 0, "precision": float("nan"), "fn_recall": 0.0, "top1_hit": 0.0}
    order = np.argsort(-sums[keep], kind="stable")
    kept_hits = hits[keep]
    return {
        "flags": int(keep.sum()),
        "precision": float((kept_hits > 0).mean()),
        "fn_recall": float(kept_hits.sum() / total_fn) if total_fn else float("nan"),
        "top1_hit": float(kept_hits[order[0]] > 0),
    }


def score_volume(
    logits: dict[str, Any],
    spread: Any,
    gt: np.ndarray,
    annotations: np.ndarray,
    spacing: tuple[float, float, float],
    cals: dict[str, Calibration],
    evaluated: np.ndarray,
) -> dict[str, Any]:
    """Every method's AUPRC and expected-missed ratio on one volume, for both prediction modes
    (``plain``: one pass; ``tta``: mean over 4 flips, with the flip spread)."""
    import torch

    from napari_asymseg.evaluate.metrics import class_scores
    from napari_asymseg.review.calibration import foreground_margin

    out: dict[str, Any] = {}
    for mode, z in logits.items():
        probs = torch.softmax(z.float(), 0)
        pred = probs.argmax(0).numpy().astype(np.uint8)
        margin = foreground_margin(z, 0)
        p = probs.numpy()
        fn = (gt > 0) & (pred == 0)
        positives = fn[evaluated]
        n_fn = int(positives.sum())
        s = class_scores(
            pred,
            np.where(evaluated, gt.astype(np.int64), -1),
            2 if gt.max() <= 1 else int(gt.max()) + 1,
        )
        seg = {
            "dsc": float(np.nanmean([c.dsc for c in s.values()])),
            "sensitivity": float(np.nanmean([c.sensitivity for c in s.values()])),
            "precision": float(np.nanmean([c.precision for c in s.values()])),
        }
        methods: dict[str, dict[str, float]] = {}
        bg = pred == 0
        one_minus = 1.0 - p.max(0)
        entropy = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(0)
        for name, score in (("1 - max prob", one_minus), ("entropy", entropy)):
            methods[name] = {"auprc": average_precision(score[evaluated], positives)}
            methods[f"{name} |bg"] = {
                "auprc": average_precision(np.where(bg, score, 0.0)[evaluated], positives)
            }
        flags: dict[str, Any] = {}
        for cal_name in CALIBRATIONS:
            for kappa in KAPPAS if mode == "tta" else (None,):
                for sigma in SIGMAS:
                    risk = risk_map(
                        margin,
                        pred,
                        cals[cal_name],
                        spread=spread if mode == "tta" else None,
                        annotations=annotations,
                        spacing=spacing,
                        kappa=kappa or 0.0,
                        sigma_mm=sigma,
                    )
                    r = risk[evaluated]
                    name = method_name(mode, cal_name, sigma, kappa)
                    methods[name] = {
                        "auprc": average_precision(r, positives),
                        "missed_ratio": float(r.sum(dtype=np.float64) / n_fn) if n_fn else math.nan,
                    }
                    if cal_name != "platt" or kappa not in (None, 0.0, KAPPA):
                        continue
                    flags[flag_key(sigma, kappa)] = {
                        f"{t:g}": flag_stats(risk, fn, evaluated, t) for t in THRESHOLDS
                    }
                    common = {
                        "spread": spread if mode == "tta" else None,
                        "spacing": spacing,
                        "kappa": kappa or 0.0,
                        "sigma_mm": sigma,
                    }
                    # the same without the annotations: the model's evidence alone
                    alone = risk_map(margin, pred, cals[cal_name], **common)
                    # the first design: predicted foreground zeroed before the smoothing
                    unmasked = risk_fg_zeroed_first(
                        margin, pred, cals[cal_name], annotations=annotations, **common
                    )
                    flags[flag_key(sigma, kappa, True)] = {
                        f"{t:g}": flag_stats(unmasked, fn, evaluated, t) for t in THRESHOLDS
                    }
                    for variant, r in (
                        (method_name(mode, cal_name, sigma, kappa, False), alone[evaluated]),
                        (
                            method_name(mode, cal_name, sigma, kappa, True, True),
                            unmasked[evaluated],
                        ),
                    ):
                        methods[variant] = {
                            "auprc": average_precision(r, positives),
                            "missed_ratio": float(r.sum(dtype=np.float64) / n_fn)
                            if n_fn
                            else math.nan,
                        }
        out[mode] = {
            "evaluated_voxels": int(evaluated.sum()),
            "false_negatives": n_fn,
            "positive_rate": n_fn / max(1, int(evaluated.sum())),
            "segmentation": seg,
            "methods": methods,
            "flags": flags,
        }
    return out


# ----------------------------------------------------------------------------- data
def synthetic_config(args: argparse.Namespace, seed: int) -> Config:
    cfg = Config()
    cfg.train.steps = args.steps
    cfg.train.seed = seed
    if args.quick:
        cfg.model.filters = (8, 16, 32)
        cfg.train.val_every = max(1, args.steps // 2)
    return cfg


def predict_cached(model_dir: Path, image: np.ndarray, cache: Path, stats=None) -> tuple:
    """Plain logits, flip-mean logits and flip spread of a volume (cached as .npz)."""
    import torch

    from _common import logits_of

    if cache.is_file():
        data = np.load(cache)
        return (
            {"plain": torch.from_numpy(data["plain"]), "tta": torch.from_numpy(data["tta"])},
            torch.from_numpy(data["spread"]),
        )
    plain, _ = logits_of(model_dir, image, tta=False, stats=stats)
    tta, spread = logits_of(model_dir, image, tta=True, stats=stats)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, plain=plain.numpy(), tta=tta.numpy(), spread=spread.numpy())
    return {"plain": plain, "tta": tta}, spread


def run_synthetic(args: argparse.Namespace, work: Path, log) -> list[dict[str, Any]]:
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.samples.synthetic import sparse_annotations, synthetic_scan
    from napari_asymseg.store.scan import Scan

    shape = tuple(args.shape)
    rows = []
    for seed in args.seeds:
        syn = synthetic_scan(seed, shape=shape)
        ann = sparse_annotations(syn.ground_truth, args.slices, seed=seed, n_empty=1)
        path = work / f"synthetic-{seed}.zarr"
        scan = (
            Scan.open(path)
            if path.exists()
            else Scan.create(
                path,
                syn.image,
                spacing=syn.spacing,
                annotations=ann,
                ground_truth=syn.ground_truth,
            )
        )
        model = work / f"model-synthetic-{seed}"
        log(f"synthetic seed {seed}: {int(syn.ground_truth.sum())} lesion voxels")
        train = cached_fit(scan, synthetic_config(args, seed), model, log=log)
        ckpt = load_checkpoint(model)
        cals = calibrations(ckpt)
        volumes = [("synthetic-same", seed, syn, ann)]
        for k in range(args.others):
            other_seed = 1000 + 10 * seed + k
            other = synthetic_scan(other_seed, shape=shape)
            volumes.append(("synthetic-other", other_seed, other, np.zeros(shape, np.uint8)))
        for dataset, vseed, vol, vann in volumes:
            t0 = time.perf_counter()
            logits, spread = predict_cached(
                model, vol.image, work / "logits" / f"{seed}-{dataset}-{vseed}.npz"
            )
            scores = score_volume(
                logits, spread, vol.ground_truth, vann, vol.spacing, cals, vann == 0
            )
            rows.append(
                {
                    "dataset": dataset,
                    "train_seed": seed,
                    "volume_seed": vseed,
                    "lesion_voxels": int(vol.ground_truth.sum()),
                    "train": train,
                    "calibration": {k: v.as_dict() for k, v in cals.items()},
                    **scores,
                }
            )
            log(
                f"  {dataset} {vseed}: DSC {scores['plain']['segmentation']['dsc']:.3f}, "
                f"{scores['plain']['false_negatives']} missed voxels "
                f"({time.perf_counter() - t0:.0f} s)"
            )
    return rows


def run_colin27(args: argparse.Namespace, work: Path, log) -> list[dict[str, Any]]:
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.samples.sample_data import build_colin27
    from napari_asymseg.store.scan import Scan
    from napari_asymseg.train.data import intensity_stats

    path = work / "colin27.zarr"
    scan = Scan.open(path) if path.exists() else build_colin27(path)
    cfg = Config()
    cfg.train.steps = args.colin_steps
    cfg.train.seed = args.colin_seed
    model = work / f"model-colin27-{args.colin_seed}"
    log(f"Colin27 {scan.shape}: training {args.colin_steps} steps")
    train = cached_fit(scan, cfg, model, log=log)
    ckpt = load_checkpoint(model)
    cals = calibrations(ckpt)
    ann = scan.read_annotations()
    gt = np.asarray(scan.ground_truth[...])
    image = np.asarray(scan.image[...], np.float32)
    # predict only the unannotated hemisphere and a margin (the window's context and room
    # for the smoothing), with the whole scan's intensity statistics as predict() uses
    unannotated = ann == 0
    pad = 32
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(unannotated.any(axis=other))
        box.append(slice(max(0, int(idx[0]) - pad), min(ann.shape[axis], int(idx[-1]) + pad + 1)))
    crop = tuple(box)
    t0 = time.perf_counter()
    logits, spread = predict_cached(
        model,
        image[crop],
        work / "logits" / f"colin27-{args.colin_seed}.npz",
        stats=intensity_stats(scan.image),
    )
    scores = score_volume(
        logits, spread, gt[crop], ann[crop], scan.spacing, cals, unannotated[crop]
    )
    log(
        f"  colin27: DSC {scores['plain']['segmentation']['dsc']:.3f}, "
        f"{scores['plain']['false_negatives']} missed voxels ({time.perf_counter() - t0:.0f} s)"
    )
    return [
        {
            "dataset": "colin27",
            "train_seed": args.colin_seed,
            "volume_seed": None,
            "lesion_voxels": int(gt[unannotated].sum()),
            "crop": [[s.start, s.stop] for s in crop],
            "train": train,
            "calibration": {k: v.as_dict() for k, v in cals.items()},
            **scores,
        }
    ]


# ----------------------------------------------------------------------------- summary
def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over volumes, per dataset, mode and method."""
    summary: dict[str, Any] = {}
    for dataset in DATASETS:
        sel = [r for r in rows if r["dataset"] == dataset]
        if not sel:
            continue
        summary[dataset] = {"volumes": len(sel)}
        for mode in ("plain", "tta"):
            part: dict[str, Any] = {}
            for key in ("dsc", "sensitivity", "precision"):
                m, s, _ = mean_std(r[mode]["segmentation"][key] for r in sel)
                part[key] = {"mean": m, "std": s}
            m, s, _ = mean_std(r[mode]["positive_rate"] for r in sel)
            part["positive_rate"] = {"mean": m, "std": s}
            methods: dict[str, Any] = {}
            for name in sel[0][mode]["methods"]:
                entry = {}
                for metric in ("auprc", "missed_ratio"):
                    vals = [r[mode]["methods"][name].get(metric) for r in sel]
                    if all(v is None for v in vals):
                        continue
                    m, s, n = mean_std(v for v in vals if v is not None)
                    entry[metric] = {"mean": m, "std": s, "n": n}
                methods[name] = entry
            part["methods"] = methods
            flags: dict[str, Any] = {}
            for sig, per_t in sel[0][mode]["flags"].items():
                flags[sig] = {}
                for t in per_t:
                    flags[sig][t] = {
                        key: dict(
                            zip(
                                ("mean", "std", "n"),
                                mean_std(r[mode]["flags"][sig][t][key] for r in sel),
                                strict=True,
                            )
                        )
                        for key in ("flags", "precision", "fn_recall", "top1_hit")
                    }
            part["flags"] = flags
            summary[dataset][mode] = part
    return summary


def choose(summary: dict[str, Any]) -> dict[str, Any]:
    """The designs the numbers support, per prediction mode, by two criteria: the best mean
    AUPRC over the datasets (each dataset weighs the same), and the best worst case of the
    lift over the strongest baseline of each dataset (AUPRC / best baseline AUPRC)."""
    datasets = [d for d in DATASETS if d in summary]
    baselines = ("1 - max prob", "entropy", "1 - max prob |bg", "entropy |bg")

    def auprc(d: str, mode: str, name: str) -> float:
        return summary[d][mode]["methods"][name]["auprc"]["mean"]

    def avg(mode: str, name: str) -> float:
        return float(np.mean([auprc(d, mode, name) for d in datasets]))

    def worst_lift(mode: str, name: str) -> float:
        return min(
            auprc(d, mode, name) / max(auprc(d, mode, b) for b in baselines) for d in datasets
        )

    chosen: dict[str, Any] = {"datasets": datasets}
    for mode in ("plain", "tta"):
        names = [n for n in summary[datasets[0]][mode]["methods"] if n.startswith("risk")]
        by_mean = sorted(names, key=lambda n: -avg(mode, n))
        by_lift = sorted(names, key=lambda n: -worst_lift(mode, n))
        chosen[mode] = {
            "best_mean_auprc": by_mean[0],
            "ranking_mean_auprc": [(n, avg(mode, n)) for n in by_mean[:8]],
            "best_worst_case_lift": by_lift[0],
            "ranking_worst_case_lift": [(n, worst_lift(mode, n)) for n in by_lift[:8]],
            "baselines_mean_auprc": {b: avg(mode, b) for b in baselines},
        }
    return chosen


def print_tables(summary: dict[str, Any]) -> str:
    datasets = [d for d in DATASETS if d in summary]
    out = []
    for mode, title in (("plain", "one pass (no flips)"), ("tta", "4 test-time flips")):
        header = ["method", *(f"{DATASET_TITLES[d]} (n={summary[d]['volumes']})" for d in datasets)]
        rows = []
        for key, label in (
            ("dsc", "DSC"),
            ("sensitivity", "sensitivity"),
            ("positive_rate", "FN rate"),
        ):
            digits = 5 if key == "positive_rate" else 3
            rows.append(
                [f"*{label} of the prediction*"]
                + [
                    fmt(summary[d][mode][key]["mean"], summary[d][mode][key]["std"], digits)
                    for d in datasets
                ]
            )
        names = list(summary[datasets[0]][mode]["methods"])
        for name in names:
            cells = []
            for d in datasets:
                e = summary[d][mode]["methods"][name]
                cell = fmt(e["auprc"]["mean"], e["auprc"]["std"])
                if "missed_ratio" in e:
                    cell += f" ({e['missed_ratio']['mean']:.2f})"
                cells.append(cell)
            rows.append([name, *cells])
        out.append(f"\nAUPRC for the false negatives, {title}; (expected/true missed volume)\n")
        out.append(table(header, rows))
    # flags: the default smoothing and 3 mm, no flips (both smoothing designs), flips kappa 0
    header = ["dataset", "variant", *(f"t={t:g}" for t in THRESHOLDS)]
    rows = []
    for d in datasets:
        for mode, kappa, unmasked in (
            ("plain", None, False),
            ("plain", None, True),
            ("tta", 0.0, False),
        ):
            for sigma in sorted({SIGMA_MM, 3.0}):
                f = summary[d][mode]["flags"][flag_key(sigma, kappa, unmasked)]
                rows.append(
                    [
                        DATASET_TITLES[d],
                        ("flips, " if mode == "tta" else "") + flag_key(sigma, kappa, unmasked),
                    ]
                    + [
                        f"{f[f'{t:g}']['flags']['mean']:.1f} / "
                        f"{f[f'{t:g}']['precision']['mean']:.2f} / "
                        f"{f[f'{t:g}']['fn_recall']['mean']:.2f}"
                        for t in THRESHOLDS
                    ]
                )
    out.append(
        "\nFlags (Platt): count / share containing a real miss / share of missed voxels covered\n"
    )
    out.append(table(header, rows))
    text = "\n".join(out)
    print(text)
    return text


# ----------------------------------------------------------------------------- figure
def draw(summary: dict[str, Any], path: Path) -> None:
    """Four panels, log scales (AUPRCs span 0.005 to 0.7): the defaults against the baselines,
    the smoothing, the flips, and the calibration of the expected missed volume."""
    datasets = [d for d in DATASETS if d in summary]
    fig = Figure(1400, 900, "False-negative risk map: AUPRC for the missed voxels (mean ± std)")
    dcolors = dict(zip(DATASETS, (PALETTE[1], PALETTE[0], PALETTE[2]), strict=True))

    def entry(d: str, mode: str, name: str, metric: str = "auprc") -> tuple[float, float]:
        e = summary[d][mode]["methods"][name][metric]
        return e["mean"], e["std"]

    def log_range(values: list[float]) -> tuple[float, float]:
        v = [x for x in values if x > 0 and math.isfinite(x)]
        return 10 ** math.floor(math.log10(min(v))), 10 ** math.ceil(math.log10(max(v)))

    def chance(panel: Any) -> None:  # the positive rate: the AUPRC of a random score
        gw = (panel.x1 - panel.x0) / len(datasets)
        for g, d in enumerate(datasets):
            y = panel.py(summary[d]["plain"]["positive_rate"]["mean"])
            x = panel.x0 + g * gw + 4
            while x < panel.x0 + (g + 1) * gw - 4:
                panel.draw.line([(x, y), (x + 5, y)], fill="black", width=2)
                x += 9

    # A. the defaults against the baselines
    series = [
        ("1 - max prob", "plain", "1 - max prob", PALETTE[6]),
        ("entropy", "plain", "entropy", PALETTE[5]),
        ("1 - max prob, zeroed on predicted fg", "plain", "1 - max prob |bg", PALETTE[4]),
        (
            f"risk, model only (sigma={SIGMA_MM:g})",
            "plain",
            method_name("plain", "platt", SIGMA_MM, None, False),
            PALETTE[3],
        ),
        (
            f"risk as implemented (sigma={SIGMA_MM:g})",
            "plain",
            method_name("plain", "platt", SIGMA_MM, None),
            PALETTE[0],
        ),
        (
            "risk, first design: fg zeroed first (sigma=3)",
            "plain",
            method_name("plain", "platt", 3.0, None, True, True),
            PALETTE[2],
        ),
    ]
    vals = [entry(d, m, n)[0] for d in datasets for _, m, n, _ in series]
    vals += [summary[d]["plain"]["positive_rate"]["mean"] for d in datasets]
    p = fig.panel(
        (0, 30, 700, 465),
        ylim=log_range(vals),
        ylog=True,
        title="A. defaults vs baselines (dashes: chance = share of missed voxels)",
        ylabel="AUPRC",
        xticks=[],
    )
    p.bars(
        [SHORT[d] for d in datasets],
        [
            (label, [entry(d, m, n)[0] for d in datasets], [entry(d, m, n)[1] for d in datasets], c)
            for label, m, n, c in series
        ],
    )
    chance(p)
    p.legend([(label, c) for label, _, _, c in series], "ul")

    # B. smoothing: as implemented (solid) and the first design, fg zeroed first (dashed)
    lines = []
    for d in datasets:
        for unmasked in (False, True):
            ys = [
                entry(d, "plain", method_name("plain", "platt", s, None, True, unmasked))[0]
                for s in SIGMAS
            ]
            lines.append((SHORT[d] + (", fg zeroed first" if unmasked else ""), ys, d, unmasked))
    p = fig.panel(
        (700, 30, 1400, 465),
        xlim=(-0.2, 3.2),
        ylim=log_range([y for _, ys, _, _ in lines for y in ys]),
        ylog=True,
        title="B. smoothing (no flips, Platt); dashed: first design, predicted fg zeroed first",
        xlabel="sigma_mm",
        ylabel="AUPRC",
        xticks=list(SIGMAS),
    )
    for _, ys, d, unmasked in lines:
        p.line(list(SIGMAS), ys, dcolors[d], dash=unmasked)
    p.legend([(SHORT[d], dcolors[d]) for d in datasets], "lr")

    # C. flips
    variants = [("no flips", "plain", None, PALETTE[0])] + [
        (f"flips, kappa={k:g}", "tta", k, PALETTE[i + 1]) for i, k in enumerate(KAPPAS)
    ]
    vals = [
        entry(d, m, method_name(m, "platt", SIGMA_MM, k))[0]
        for d in datasets
        for _, m, k, _ in variants
    ]
    vals += [summary[d]["plain"]["positive_rate"]["mean"] for d in datasets]
    p = fig.panel(
        (0, 465, 700, 900),
        ylim=log_range(vals),
        ylog=True,
        title=f"C. test-time flips (sigma={SIGMA_MM:g}, Platt)",
        ylabel="AUPRC",
        xticks=[],
    )
    p.bars(
        [SHORT[d] for d in datasets],
        [
            (
                label,
                [entry(d, m, method_name(m, "platt", SIGMA_MM, k))[0] for d in datasets],
                [entry(d, m, method_name(m, "platt", SIGMA_MM, k))[1] for d in datasets],
                c,
            )
            for label, m, k, c in variants
        ],
    )
    chance(p)
    p.legend([(label, c) for label, _, _, c in variants], "ul")

    # D. calibration of the expected missed volume
    cal_colors = {"platt": PALETTE[0], "none": PALETTE[1], "logit_shift": PALETTE[3]}
    ratios = {
        cal: [
            entry(d, "plain", method_name("plain", cal, SIGMA_MM, None), "missed_ratio")
            for d in datasets
        ]
        for cal in CALIBRATIONS
    }
    lo, hi = log_range([m for v in ratios.values() for m, _ in v] + [1.0])
    p = fig.panel(
        (700, 465, 1400, 900),
        ylim=(min(lo, 0.1), hi),
        ylog=True,
        title=f"D. expected / true missed volume (no flips, sigma={SIGMA_MM:g}); 1 = calibrated",
        ylabel="ratio",
        xticks=[],
    )
    p.bars(
        [SHORT[d] for d in datasets],
        [(cal, [m for m, _ in v], [s for _, s in v], cal_colors[cal]) for cal, v in ratios.items()],
    )
    p.hline(1.0)
    p.legend([(cal, c) for cal, c in cal_colors.items()], "ul")
    fig.save(path)


# ----------------------------------------------------------------------------- main
def training_seconds(rows: list[dict[str, Any]]) -> float:
    """The time spent training the models (once each, possibly in an earlier, cached run)."""
    seen = {(r["dataset"] == "colin27", r["train_seed"]): r["train"]["seconds"] for r in rows}
    return float(sum(seen.values()))


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/asymseg-risk-quality", help="cache folder")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 9)), help="training scans")
    p.add_argument("--others", type=int, default=2, help="other scans evaluated per seed")
    p.add_argument("--steps", type=int, default=120, help="training steps (synthetic)")
    p.add_argument("--slices", type=int, default=4, help="annotated lesion slices")
    p.add_argument("--shape", type=int, nargs=3, default=[40, 112, 112])
    p.add_argument("--colin-steps", type=int, default=200)
    p.add_argument("--colin-seed", type=int, default=0)
    p.add_argument("--no-colin", action="store_true", help="skip Colin27")
    p.add_argument("--quick", action="store_true", help="tiny configuration (plumbing only)")
    p.add_argument("--redraw", action="store_true", help="only redraw the figure from --out")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/risk_quality.json"))
    p.add_argument("--figure", default=str(ROOT / "docs/images/risk-quality.png"))
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.others, args.steps = args.seeds[:1], 1, 4
        args.shape, args.slices, args.no_colin = [16, 48, 48], 2, True
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.redraw:  # summarise the stored per-volume scores again, and draw
        result = json.loads(Path(args.out).read_text())
        result["summary"] = summary = summarise(result["volumes"])
        result["chosen"] = choose(summary)
        result["tables"] = print_tables(summary)
        result["training_s_total"] = training_seconds(result["volumes"])
        write_json(args.out, result, compact=["volumes"])
        draw(summary, Path(args.figure))
        return result
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log = timed_log()

    rows = run_synthetic(args, work, log)
    if not args.no_colin:
        rows += run_colin27(args, work, log)
    summary = summarise(rows)
    chosen = choose(summary)
    tables = print_tables(summary)
    result = {
        "benchmark": "risk_quality",
        "machine": machine(),
        "runtime_s": time.perf_counter() - t0,
        "config": {
            "quick": args.quick,
            "seeds": args.seeds,
            "other_scans_per_seed": args.others,
            "synthetic_shape": args.shape,
            "synthetic_steps": args.steps,
            "annotated_lesion_slices": args.slices,
            "annotated_empty_slices": 1,
            "colin27": None
            if args.no_colin
            else {"steps": args.colin_steps, "seed": args.colin_seed},
            "model": "default Config() (unet, filters 16-32-64-128, asym_focal)"
            if not args.quick
            else "filters 8-16-32",
            "sigmas_mm": list(SIGMAS),
            "kappas": list(KAPPAS),
            "thresholds": list(THRESHOLDS),
            "current_defaults": {"KAPPA": KAPPA, "SIGMA_MM": SIGMA_MM, "THRESHOLD": THRESHOLD},
        },
        "training_s_total": training_seconds(rows),
        "summary": summary,
        "chosen": chosen,
        "volumes": rows,
        "tables": tables,
    }
    write_json(args.out, result, compact=["volumes"])
    draw(summary, Path(args.figure))
    log(f"wrote {args.out} and {args.figure}")
    return result


if __name__ == "__main__":
    main()
