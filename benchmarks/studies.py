"""Studies: does a model trained on several annotated patients find the lesion on the next?

    .venv/bin/python benchmarks/studies.py            # full run (docs/benchmarks.md)
    .venv/bin/python benchmarks/studies.py --quick    # tiny plumbing run (the test's)

Li et al.'s Table 1 in the product's own workflow: models are trained with ``fit`` on the
scans of a study (the product's study training, :mod:`napari_asymseg.train.study_data`) and
predict scans nobody annotated with ``predict``; DSC, sensitivity and precision on those
unseen scans, against the number of annotated scans, for three losses:

* ``dice_asym_focal``: Dice + asymmetric focal (the default),
* ``dice_ce``: Dice + cross-entropy (symmetric),
* ``asym_combined``: Li et al.'s asymmetric combination (the ``asym_combined`` preset:
  asymmetric large margin + focal with adversarial training and mixup).

With Li et al.'s diagnostic, the logit shift on the unseen scans: the mean foreground margin
(logit of the lesion minus logit of background) on the unseen scans' lesion voxels minus the
mean margin on the training patches' lesion voxels at the end of training (negative: unseen
lesion sits nearer or across the boundary).

Series:

* ``synthetic-painted``: synthetic MR-like scans (one sequence: bright lesions), each painted
  as the real-scan protocol paints (2 lesion slices + 1 empty slice, benchmarks/real_scans.py),
  k = 1, 2, 4, 8 annotated scans; 4 unseen scans.
* ``synthetic-full``: the same scans annotated on every slice.
* ``colin27``: the Colin27 hippocampus annotated on the left; scored on the right (mirrored
  anatomy nobody painted), k = 1.
* ``brain1-brain2``: trained on brain1 (protocol-painted, and fully annotated: the end point
  of a finished review loop can hold no more than that), scored on brain2.

Peer, side by side: the ilastik-style random forest of real_scans.py trained on the same
painted voxels of the same k scans (each scan z-scored on its own) and applied to the
unseen scans. (The fill-between peer needs paint on the scan it fills: on an unseen scan it
finds nothing by construction, so it is not run.)

Training runs a fixed number of steps (``--steps``, default 240), not the default time
budget, so the numbers do not depend on the CPU's speed.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, finite, machine, table, write_json  # noqa: E402
from napari_asymseg.config import PRESETS, Config  # noqa: E402
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED  # noqa: E402
from napari_asymseg.store.scan import Scan  # noqa: E402
from real_scans import build_case, forest_features, paint  # noqa: E402

HERE = Path(__file__).resolve().parent
LOSSES = ("dice_asym_focal", "dice_ce", "asym_combined")
COLOURS = {"dice_asym_focal": "#d62728", "dice_ce": "#1f77b4", "asym_combined": "#2ca02c"}
KS = (1, 2, 4, 8)
TRAIN_SEEDS = tuple(range(100, 108))
TEST_SEEDS = tuple(range(200, 204))
HEADER = ["series", "k", "loss", "DSC", "sens", "prec", "logit shift", "forest DSC",
          "forest sens", "forest prec", "train s", "s/step"]  # fmt: skip


def config_for(loss: str, steps: int, seed: int) -> Config:
    cfg = Config()
    if loss in PRESETS:
        cfg = PRESETS[loss](cfg)
    else:
        cfg.loss.name = loss
    cfg.train.steps, cfg.train.val_every, cfg.train.seed = steps, max(steps // 2, 1), seed
    return cfg


# ----------------------------------------------------------------------------- the scans
def synthetic(work: Path, seed: int, annotation: str, quick: bool) -> Path:
    """A synthetic scan (bright lesions), painted by the protocol, fully, or not at all."""
    from napari_asymseg.samples.synthetic import synthetic_scan

    out = work / "scans" / f"synthetic-{seed}-{annotation}{'-quick' if quick else ''}.zarr"
    if (out / "zarr.json").is_file():
        return out
    s = synthetic_scan(seed, shape=(16, 48, 48) if quick else (40, 112, 112), polarity=1)
    truth = s.ground_truth.astype(np.uint8)
    scan = Scan.create(out, s.image, spacing=s.spacing, ground_truth=truth, overwrite=True)
    if annotation == "painted":
        paint(scan, "synthetic-study")
    elif annotation == "full":
        scan.write_annotations(np.where(truth > 0, BACKGROUND + 1, BACKGROUND).astype(np.uint8))
    return out


def real(work: Path, case: str, annotation: str) -> Path:
    """A real case's scan copied for this series: protocol-painted, full, or as built."""
    source = build_case(case, work)
    out = work / "scans" / f"{case}-{annotation}.zarr"
    if not (out / "zarr.json").is_file():
        shutil.copytree(source, out, dirs_exist_ok=True)
        scan, truth = Scan.open(out), None
        if annotation == "painted":
            paint(scan, case)
        elif annotation == "full":
            truth = np.asarray(scan.ground_truth[...]) > 0
            scan.write_annotations(np.where(truth, BACKGROUND + 1, BACKGROUND).astype(np.uint8))
        elif annotation == "none":
            scan.write_annotations(np.zeros(scan.shape, np.uint8))
    return out


# ----------------------------------------------------------------------------- scoring
def scored(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    p, t = pred.astype(bool), truth.astype(bool)
    tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
    return {
        "dsc": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "false_positive_voxels": fp,
    }


def ours_on(model: Path, scan_path: Path, where: np.ndarray | None) -> dict[str, float]:
    """Predict an unseen scan as the product does; its scores and the lesion's mean margin."""
    from _common import logits_of
    from napari_asymseg.infer.predict import predict

    scan = Scan.open(scan_path)
    for _ in predict(scan, model):
        pass
    truth = np.asarray(scan.ground_truth[...]) > 0
    pred = np.asarray(scan.result("prediction")[...]) > 0
    logits, _ = logits_of(model, np.asarray(scan.image[...], np.float32), tta=False)
    margin = (logits[1] - logits[0]).float().numpy()
    where = np.ones(truth.shape, bool) if where is None else where
    out = scored(pred & where, truth & where)
    out["unseen_margin"] = float(margin[truth & where].mean()) if (truth & where).any() else None
    return out


@functools.lru_cache(maxsize=16)
def features(path: Path) -> np.ndarray:
    """The forest's features of a scan, z-scored on its own (kept: scans recur across k)."""
    from napari_asymseg.config import DataConfig
    from napari_asymseg.train.data import normalise

    return forest_features(normalise(Scan.open(path).image[...], DataConfig()))


def forest_on(train: list[Path], unseen: list[tuple[Path, np.ndarray | None]], seed: int):
    """The forest peer on the painted voxels of ``train``, applied to each unseen scan."""
    from sklearn.ensemble import RandomForestClassifier

    xs, ys = [], []
    rng = np.random.default_rng(seed)
    for path in train:
        scan = Scan.open(path)
        ann = scan.read_annotations()
        feats = features(path)
        idx = np.flatnonzero(ann > NOT_ANNOTATED)
        idx = rng.choice(idx, min(idx.size, 60_000), replace=False)  # each scan the same
        xs.append(feats.reshape(-1, feats.shape[-1])[idx])
        ys.append((ann.reshape(-1)[idx] > BACKGROUND).astype(np.uint8))
    forest = RandomForestClassifier(
        n_estimators=100, class_weight="balanced", n_jobs=-1, random_state=seed
    )
    forest.fit(np.concatenate(xs), np.concatenate(ys))
    out = []
    for path, where in unseen:
        scan = Scan.open(path)
        feats = features(path)
        flat = feats.reshape(-1, feats.shape[-1])
        pred = np.zeros(flat.shape[0], np.uint8)
        for a in range(0, flat.shape[0], 1 << 18):
            pred[a : a + (1 << 18)] = forest.predict(flat[a : a + (1 << 18)])
        truth = np.asarray(scan.ground_truth[...]) > 0
        where = np.ones(truth.shape, bool) if where is None else where
        out.append(scored(pred.reshape(truth.shape).astype(bool) & where, truth & where))
    return out


# ----------------------------------------------------------------------------- one point
def run_point(
    work: Path,
    series: str,
    k: int,
    loss: str,
    train: list[Path],
    unseen: list[tuple[Path, np.ndarray | None]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train on ``train`` (a study of k scans), score every unseen scan; the mean."""
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.train.events import Finished, StepEnd
    from napari_asymseg.train.loop import fit

    model = work / "models" / f"{series}-{k}-{loss}"
    shutil.rmtree(model, ignore_errors=True)
    cfg = config_for(loss, args.steps, args.seed)
    t0, step_s = time.perf_counter(), []
    for event in fit(train if len(train) > 1 else train[0], cfg, model):
        if isinstance(event, StepEnd):
            step_s.append(event.seconds)
        elif isinstance(event, Finished):
            pass
    train_s = time.perf_counter() - t0
    history = load_checkpoint(model)["history"]
    train_margin = history[-1].get("train_margin")
    per_scan = [ours_on(model, path, where) for path, where in unseen]
    rec: dict[str, Any] = {"series": series, "k": k, "loss": loss, "train_s": train_s}
    rec["s_per_step"] = float(np.median(step_s[5:] or step_s))
    for key in ("dsc", "sensitivity", "precision"):
        rec[key] = float(np.nanmean([s[key] for s in per_scan]))
    margins = [s["unseen_margin"] for s in per_scan if s["unseen_margin"] is not None]
    rec["unseen_margin"] = float(np.mean(margins)) if margins else None
    rec["train_margin"] = train_margin
    if margins and train_margin is not None:
        rec["logit_shift"] = rec["unseen_margin"] - train_margin
    rec["per_scan"] = per_scan
    return rec


def series_jobs(work: Path, args: argparse.Namespace):
    """(series, k, train paths, unseen (path, where)) of every point to run."""
    quick = args.quick
    tests = [(synthetic(work, s, "none", quick), None) for s in TEST_SEEDS[: args.unseen]]
    for annotation in ("painted", "full"):
        if f"synthetic-{annotation}" not in args.series:
            continue
        scans = [synthetic(work, s, annotation, quick) for s in TRAIN_SEEDS[: max(args.ks)]]
        for k in args.ks:
            yield f"synthetic-{annotation}", k, scans[:k], tests
    if "colin27" in args.series:
        path = real(work, "colin27", "as-built")
        unpainted = Scan.open(path).read_annotations() == NOT_ANNOTATED  # the right side
        yield "colin27", 1, [path], [(path, unpainted)]
    for annotation in ("painted", "full"):
        if f"brain1-brain2-{annotation}" in args.series:
            train = [real(work, "brain1", annotation)]
            yield f"brain1-brain2-{annotation}", 1, train, [(real(work, "brain2", "none"), None)]


def summarise(records: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for r in records:
        f = r.get("forest") or {}

        def num(v: Any) -> str:
            return f"{v:.3f}" if isinstance(v, float) and v == v else "-"

        rows.append([r["series"], r["k"], r["loss"], num(r["dsc"]), num(r["sensitivity"]),
                     num(r["precision"]), num(r.get("logit_shift")), num(f.get("dsc")),
                     num(f.get("sensitivity")), num(f.get("precision")),
                     f"{r['train_s']:.0f}", f"{r['s_per_step']:.3f}"])  # fmt: skip
    return rows


def plot(records: list[dict[str, Any]], path: Path, how: str) -> None:
    """DSC and sensitivity on unseen scans against the annotated scans, per loss."""
    fig = Figure(1400, 440, f"Unseen synthetic scans against the annotated scans ({how})")
    for i, key in enumerate(("dsc", "sensitivity")):
        p = fig.panel(
            (i * 700, 30, i * 700 + 690, 430),
            xlim=(0.5, 8.5),
            ylim=(0.0, 1.0),
            xticks=list(KS),
            title=f"{key} (solid: painted by the protocol, dashed: fully annotated)",
            xlabel="annotated scans in the study",
            ylabel=f"{key} on 4 unseen scans",
        )
        for loss in LOSSES:
            for series, dash in (("synthetic-painted", False), ("synthetic-full", True)):
                pts = sorted((r["k"], r[key]) for r in records
                             if r["series"] == series and r["loss"] == loss)  # fmt: skip
                if pts:
                    p.line([a for a, _ in pts], [b for _, b in pts], COLOURS[loss], dash=dash)
        forest = sorted((r["k"], r["forest"][key]) for r in records
                        if r["series"] == "synthetic-painted" and r.get("forest")
                        and r["loss"] == LOSSES[0])  # fmt: skip
        if forest:
            p.line([a for a, _ in forest], [b for _, b in forest], "#7f7f7f")
        p.legend([(name, COLOURS[name]) for name in LOSSES] + [("forest", "#7f7f7f")], "ul")
    fig.save(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    every = ["synthetic-painted", "synthetic-full", "colin27", "brain1-brain2-painted",
             "brain1-brain2-full"]  # fmt: skip
    p.add_argument("--series", nargs="+", default=every, choices=every)
    p.add_argument("--ks", nargs="+", type=int, default=list(KS))
    p.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    p.add_argument("--steps", type=int, default=240, help="training steps per model")
    p.add_argument("--unseen", type=int, default=len(TEST_SEEDS), help="unseen synthetic scans")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--work", default=str(HERE / "results" / "studies-work"))
    p.add_argument("--out", default=str(HERE / "results" / "studies.json"))
    p.add_argument(
        "--plot", default=str(HERE.parent / "docs" / "images" / "studies.png"), help="'' for none"
    )
    p.add_argument("--quick", action="store_true", help="tiny synthetic plumbing run")
    p.add_argument(
        "--cached-only", action="store_true", help="only the points already run: the table"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.series, args.ks, args.losses = ["synthetic-painted"], [1, 2], ["dice_asym_focal"]
        args.steps, args.unseen = 4, 1
    work = Path(args.work)
    records_dir = work / "records" / ("quick" if args.quick else f"steps{args.steps}")
    records_dir.mkdir(parents=True, exist_ok=True)
    t0, records = time.perf_counter(), []
    for series, k, train, unseen in series_jobs(work, args):
        forest = None
        for loss in args.losses:
            path = records_dir / f"{series}-{k}-{loss}-seed{args.seed}.json"
            if path.is_file():
                rec = json.loads(path.read_text())
            elif args.cached_only:  # the table of what was run, e.g. by parts
                continue
            else:
                rec = run_point(work, series, k, loss, train, unseen, args)
                if forest is None:
                    scores = forest_on(train, unseen, args.seed)
                    forest = {key: float(np.nanmean([s[key] for s in scores]))
                              for key in ("dsc", "sensitivity", "precision")}  # fmt: skip
                rec["forest"] = forest
                write_json(path, finite(rec))
            forest = rec.get("forest") or forest
            records.append(rec)
            print(f"{series} k={k} {loss}: DSC {rec['dsc']:.3f} sens {rec['sensitivity']:.3f} "
                  f"prec {rec['precision']:.3f} ({rec['train_s']:.0f} s)", flush=True)  # fmt: skip
    rows = summarise(records)
    print(table(HEADER, rows))
    result = {
        "machine": machine(),
        "runtime_s": time.perf_counter() - t0,
        "steps": args.steps,
        "seed": args.seed,
        "records": finite(records),
        "table": {"header": HEADER, "rows": rows},
    }
    if not args.quick:
        write_json(Path(args.out), finite(result))
        if args.plot:
            plot(records, Path(args.plot), f"{args.steps} steps, seed {args.seed}")
    return result


if __name__ == "__main__":
    main()
