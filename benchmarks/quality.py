"""Quality under scarce labels: the shape of Li et al. (2020) Table 1, and the logit shift.

    .venv/bin/python benchmarks/quality.py            # full run (docs/benchmarks.md), resumable
    .venv/bin/python benchmarks/quality.py --quick    # tiny plumbing run (the test's)
    .venv/bin/python benchmarks/quality.py --redraw   # tables and figures from the stored runs
    .venv/bin/python benchmarks/quality.py --from-json benchmarks/results/quality.json
                                                      # the same from a results JSON's records

Every row of the table trains a model with the engine's ``fit()`` (as the dock and the CLI do)
on 5%, 10%, 20% and 50% of the training slices, fully annotated, and is scored on held-out
volumes with DSC, sensitivity and precision of the argmax prediction, as mean ± standard
deviation over seeds. The same scores on the unannotated slices of the training volume (the
dock's use: annotate a few slices, segment the rest) come with every run.

Data (``synthetic_split``, ``colin27_split``):

* synthetic: per seed, 3 synthetic scans stacked along z are the training volume and 2 other
  scans are the test volumes. Lesions are bright in all of them (``--polarity 1``, as on
  FLAIR); their contrast, texture, rim, edges, number and size vary from scan to scan.
  ``--polarity 0`` draws bright or dark per scan as well; with 3 training scans no row learned
  that (DSC <= 0.02 at 5-20%, seed 1, an early run);
* Colin27: the hippocampus (AAL 37/38) in a box around both hippocampi (12 voxels of margin);
  the left half is the training volume, the right half mirrored to look like a left one is the
  test volume.

The annotated slices (axial) are drawn per seed, stratified: the same fraction of the slices
with foreground and of those without (at least one with), nested, so that a larger fraction
adds slices to a smaller one. No slices are held out for validation (``val_fraction`` 0): the
model after the last step is scored, as in the paper.

Logit diagnostics (Li et al. Figs. 2 and 4): for every run, histograms of the foreground margin
``logsumexp(z_fg) - z_bg`` on training foreground and background voxels (the annotated voxels of
the training volume) and on test voxels, and the shift
``Δ = mean test fg margin - mean training fg margin`` (the engine's definition; signed, so
test lesions on the background side of the boundary give a negative Δ). The ``DIAGNOSED`` rows
also record Δ at every quarter of training ("per epoch").

A run's record is written as soon as it is scored (``--work``/records); a second invocation
skips finished runs, so an interrupted benchmark resumes where it stopped.

Budget: a small network (filters 8-16-32, about 83 k parameters), 16x48x48 (synthetic) and
32x32x32 (Colin27) patches, batch 2, 200 steps (the paper trained far longer). One dataset
(16 rows x 4 fractions x 3 seeds = 192 models) takes 1.5-3 hours on 2 CPU cores; run one
process per dataset (``--datasets``), then ``--redraw`` to merge them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PALETTE,
    Figure,
    fmt,
    logits_of,
    machine,
    mean_std,
    table,
    timed_log,
    write_json,
)
from napari_asymseg.config import Config, asym_combined  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (0.05, 0.1, 0.2, 0.5)
DATASETS = ("synthetic", "colin27")
SHORT = {"synthetic": "synthetic", "colin27": "Colin27"}
TITLES = {"synthetic": "synthetic scans (train 3, test 2 others)", "colin27": "Colin27 hippocampus"}
BINS, LIM = 40, 20.0  # margin histograms: 40 bins over [-20, 20]
SHOWN_LIM = 12.0  # the figure's margin axis: the histograms of these models end well inside


# ----------------------------------------------------------------------------- the rows
def _loss(name: str, **params: Any) -> Callable[[Config], None]:
    def apply(cfg: Config) -> None:
        cfg.loss.name, cfg.loss.params = name, params

    return apply


def _with(**regs: Any) -> Callable[[Config], None]:
    def apply(cfg: Config) -> None:
        cfg.loss.name, cfg.loss.params = "ce", {}
        for key, value in regs.items():
            setattr(cfg.regularizers, key, value)

    return apply


def _fg_sampling(cfg: Config) -> None:
    cfg.loss.name, cfg.loss.params = "ce", {}
    cfg.data.p_fg = 0.8


def _combined(cfg: Config) -> None:
    asym_combined(cfg)


# (key, label, kind, how the config differs from the defaults); kind groups the table rows
ROWS: list[tuple[str, str, str, Callable[[Config], None]]] = [
    ("ce", "CE", "baseline", _loss("ce")),
    ("dice", "Dice", "baseline", _loss("dice")),
    ("ce_fg80", "CE, 80% fg patches", "baseline", _fg_sampling),
    ("large_margin", "Large margin", "symmetric", _loss("large_margin")),
    ("focal", "Focal", "symmetric", _loss("focal")),
    (
        "adversarial",
        "Adversarial",
        "symmetric",
        _with(adversarial=True, adversarial_asymmetric=False),
    ),
    ("mixup", "Mixup", "symmetric", _with(mixup=True, mixup_asymmetric=False)),
    ("asym_large_margin", "Asym. large margin", "asymmetric", _loss("asym_large_margin")),
    ("asym_focal", "Asym. focal", "asymmetric", _loss("asym_focal")),
    ("asym_adversarial", "Asym. adversarial", "asymmetric", _with(adversarial=True)),
    ("asym_mixup", "Asym. mixup", "asymmetric", _with(mixup=True)),
    ("asym_combined", "Asym. combination", "asymmetric", _combined),
    ("gdl", "GDL", "other", _loss("gdl")),
    ("ss", "SS", "other", _loss("ss")),
    ("wce", "WCE", "other", _loss("wce")),
    ("sam_a", "SAM-A", "other", _with(sam="sam_a")),
]
LABELS = {key: label for key, label, _, _ in ROWS}
DIAGNOSED = ("ce", "asym_combined")  # rows whose margins are also recorded during training


def diagnosed(key: str, fraction: float, args: argparse.Namespace) -> bool:
    """Whether a run records Δ during training (a quarter of its steps apart)."""
    return key in DIAGNOSED and math.isclose(fraction, args.diagnostic_fraction)


def row_config(
    key: str, args: argparse.Namespace, dataset: str, seed: int, fraction: float
) -> Config:
    cfg = Config()
    cfg.model.filters = tuple(args.filters)
    cfg.data.patch_size = tuple(
        args.patch_synthetic if dataset == "synthetic" else args.patch_colin
    )
    cfg.data.val_fraction = 0.0
    # Li et al.'s protocol: the losses alone learn from the annotated slices (no forest
    # teacher on the unannotated voxels, patches around the annotation), as when the
    # recorded results were made (and the sampler of then, without a forced lesion patch)
    cfg.data.unpainted, cfg.data.p_anywhere = "ignore", 0.0
    cfg.data.fg_every_batch = False
    cfg.train.steps = args.steps
    cfg.train.lr = args.lr
    cfg.train.seed = seed
    cfg.train.device = args.device
    cfg.train.threads = args.threads
    cfg.train.val_every = max(1, args.steps // 4) if diagnosed(key, fraction, args) else args.steps
    dict(((k, f) for k, _, _, f in ROWS))[key](cfg)
    return cfg


# ----------------------------------------------------------------------------- the data
@dataclass
class Split:
    """A training volume with full ground truth, and the test volumes."""

    train_image: np.ndarray
    train_truth: np.ndarray
    spacing: tuple[float, float, float]
    tests: list[tuple[np.ndarray, np.ndarray]]


def synthetic_split(
    seed: int, shape: tuple[int, int, int], n_train: int = 3, n_test: int = 2, polarity: int = 1
) -> Split:
    """Bright lesions (``polarity`` 1, as on FLAIR) whose contrast, texture, rim and edges vary
    from scan to scan; ``polarity`` 0 draws it per scan too (a sequence shift on top)."""
    from napari_asymseg.samples.synthetic import synthetic_scan

    def scan(k: int):
        return synthetic_scan(100 * seed + k, shape=shape, polarity=polarity or None)

    train = [scan(k) for k in range(n_train)]
    tests = [scan(50 + k) for k in range(n_test)]
    return Split(
        np.concatenate([s.image for s in train]),
        np.concatenate([s.ground_truth for s in train]),
        train[0].spacing,
        [(s.image, s.ground_truth) for s in tests],
    )


def colin27_split(work: Path, margin: int = 12) -> Split:
    """Left and mirrored right hippocampus boxes of Colin27, axial slices along axis 0."""
    from napari_asymseg.samples.sample_data import build_colin27
    from napari_asymseg.store.scan import Scan

    path = work / "colin27.zarr"
    scan = Scan.open(path) if path.exists() else build_colin27(path)
    image = np.asarray(scan.image[...], np.float32)
    gt = np.asarray(scan.ground_truth[...], np.uint8)
    a = np.asarray(scan.affine)
    lr = int(np.argmax(np.abs(a[0, :3])))  # the array axis along world x (left-right)
    axial = int(np.argmax(np.abs(a[2, :3])))  # the array axis along world z
    coords = [np.arange(n) for n in image.shape]
    world_x = a[0, lr] * coords[lr] + a[0, 3]
    left = world_x < 0
    boxes = []
    for side in (left, ~left):
        sel = [slice(None)] * 3
        sel[lr] = side
        fg = np.zeros_like(gt)
        fg[tuple(sel)] = gt[tuple(sel)]
        idx = np.argwhere(fg)
        lo, hi = idx.min(0) - margin, idx.max(0) + margin + 1
        boxes.append(
            [
                slice(max(0, int(a_)), min(n, int(b_)))
                for a_, b_, n in zip(lo, hi, image.shape, strict=True)
            ]
        )
    # the same box across the midline: equal extents along the other axes, mirrored along x
    for axis in range(3):
        if axis != lr:
            lo = min(b[axis].start for b in boxes)
            hi = max(b[axis].stop for b in boxes)
            for b in boxes:
                b[axis] = slice(lo, hi)
    spacing = tuple(float(s) for s in scan.spacing)

    def take(box: list[slice], mirror: bool) -> tuple[np.ndarray, np.ndarray]:
        im, tr = image[tuple(box)], gt[tuple(box)]
        if mirror:
            im, tr = np.flip(im, lr), np.flip(tr, lr)
        return (
            np.ascontiguousarray(np.moveaxis(im, axial, 0)),
            np.ascontiguousarray(np.moveaxis(tr, axial, 0)),
        )

    (tim, ttr), test = take(boxes[0], False), take(boxes[1], True)
    order = [axial] + [i for i in range(3) if i != axial]
    return Split(tim, ttr, tuple(spacing[i] for i in order), [test])  # type: ignore[arg-type]


def slice_order(truth: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random order of the slices with and without foreground (axis 0)."""
    rng = np.random.default_rng(seed)
    has = truth.reshape(truth.shape[0], -1).any(1)
    return rng.permutation(np.flatnonzero(has)), rng.permutation(np.flatnonzero(~has))


def annotate(truth: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Whole annotated slices, stratified and nested in ``fraction`` (0 unannotated, 1
    background, 2 foreground: the scan store's convention)."""
    fg, bg = slice_order(truth, seed)
    chosen = np.concatenate(
        [fg[: max(1, round(fraction * fg.size))], bg[: round(fraction * bg.size)]]
    )
    ann = np.zeros(truth.shape, np.uint8)
    ann[chosen] = truth[chosen] + 1
    return ann


# ----------------------------------------------------------------------------- scoring
def margins_of(model: Path, image: np.ndarray) -> np.ndarray:
    from napari_asymseg.review.calibration import foreground_margin

    logits, _ = logits_of(model, image, tta=False)
    return foreground_margin(logits, 0).numpy()


def hist(values: np.ndarray) -> list[int]:
    from napari_asymseg.evaluate.metrics import histogram

    return histogram(np.asarray(values, np.float32).ravel(), bins=BINS, lim=LIM)


def score(model: Path, split: Split, ann: np.ndarray) -> dict[str, Any]:
    """Test DSC/sensitivity/precision (mean over the test volumes), the same on the
    unannotated slices of the training volume, and the margin statistics on training
    (annotated) and test voxels."""
    from napari_asymseg.evaluate.metrics import class_scores, logit_shift

    m_train = margins_of(model, split.train_image)
    labelled = ann > 0
    fg_train, bg_train = m_train[labelled & (ann == 2)], m_train[labelled & (ann == 1)]
    per_volume, fg_test, bg_test = [], [], []
    for image, truth in split.tests:
        m = margins_of(model, image)
        s = class_scores(m > 0, truth, 2)[1]
        per_volume.append({"dsc": s.dsc, "sensitivity": s.sensitivity, "precision": s.precision})
        fg_test.append(m[truth > 0])
        bg_test.append(m[truth == 0])
    fg_t, bg_t = np.concatenate(fg_test), np.concatenate(bg_test)
    # the clinical use of the product: the unannotated slices of the annotated volume
    rest = ann == 0
    same = class_scores(m_train[rest] > 0, split.train_truth[rest], 2)[1]
    out: dict[str, Any] = {
        key: float(np.nanmean([v[key] for v in per_volume]))
        if any(math.isfinite(v[key]) for v in per_volume)
        else float("nan")
        for key in ("dsc", "sensitivity", "precision")
    }
    out.update(
        per_volume=per_volume,
        same_scan={"dsc": same.dsc, "sensitivity": same.sensitivity, "precision": same.precision},
        logit_shift=logit_shift(fg_train, fg_t),
        margin={
            "train_fg": float(fg_train.mean()),
            "train_bg": float(bg_train.mean()) if bg_train.size else float("nan"),
            "test_fg": float(fg_t.mean()),
            "test_bg": float(bg_t.mean()),
        },
        hist={
            "train_fg": hist(fg_train),
            "train_bg": hist(bg_train),
            "test_fg": hist(fg_t),
            "test_bg": hist(bg_t),
        },
    )
    return out


def shift_now(model: Path, split: Split, ann: np.ndarray) -> dict[str, float]:
    """Δ and the mean foreground margins of the model as it is now (for the per-epoch curve)."""
    from napari_asymseg.evaluate.metrics import logit_shift

    m_train = margins_of(model, split.train_image)[ann == 2]
    m_test = np.concatenate([margins_of(model, im)[tr > 0] for im, tr in split.tests])
    return {
        "logit_shift": logit_shift(m_train, m_test),
        "train_fg": float(m_train.mean()),
        "test_fg": float(m_test.mean()),
    }


def run_one(
    key: str,
    args: argparse.Namespace,
    dataset: str,
    seed: int,
    fraction: float,
    split: Split,
    scan_path: Path,
    ann: np.ndarray,
    model_dir: Path,
) -> dict[str, Any]:
    """Train one row on one split and score it."""
    from napari_asymseg.store.scan import Scan
    from napari_asymseg.train.events import EpochEnd, Finished
    from napari_asymseg.train.loop import fit

    cfg = row_config(key, args, dataset, seed, fraction)
    t0 = time.perf_counter()
    epochs: list[dict[str, float]] = []
    done: Finished | None = None
    for event in fit(Scan.open(scan_path), cfg, model_dir):
        if isinstance(event, EpochEnd) and diagnosed(key, fraction, args):
            if event.step < cfg.train.steps:  # the last one is the final score's
                # best.pt is the latest model when nothing is held out for validation
                epochs.append({"step": event.step, **shift_now(model_dir, split, ann)})
        elif isinstance(event, Finished):
            done = event
    assert done is not None
    train_s = time.perf_counter() - t0
    scores = score(model_dir, split, ann)
    if diagnosed(key, fraction, args):
        margin = scores["margin"]
        epochs.append(
            {
                "step": done.steps_done,
                "logit_shift": scores["logit_shift"],
                "train_fg": margin["train_fg"],
                "test_fg": margin["test_fg"],
            }
        )
    record = {
        "dataset": dataset,
        "seed": seed,
        "fraction": fraction,
        "row": key,
        "train_s": train_s,
        "steps": done.steps_done,
        "annotated_slices": int((ann > 0).any(axis=(1, 2)).sum()),
        "annotated_fg_voxels": int((ann == 2).sum()),
        **scores,
        "epochs": epochs,
    }
    record["score_s"] = time.perf_counter() - t0 - train_s
    return record


def record_path(work: Path, dataset: str, seed: int, fraction: float, key: str) -> Path:
    return work / "records" / f"{dataset}-s{seed}-f{round(fraction * 100):02d}-{key}.json"


def run_all(
    args: argparse.Namespace, work: Path, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Every (seed, dataset, fraction, row), seed-major so that an early stop leaves whole seeds."""
    import shutil

    from napari_asymseg.store.scan import Scan

    records = []
    for seed in args.seeds:
        for dataset in args.datasets:
            split: Split | None = None
            for fraction in args.fractions:
                todo = [
                    k
                    for k in args.rows
                    if not record_path(work, dataset, seed, fraction, k).is_file()
                ]
                if todo and split is None:
                    split = (
                        synthetic_split(
                            seed,
                            tuple(args.shape),
                            args.train_scans,
                            args.test_scans,
                            args.polarity,
                        )
                        if dataset == "synthetic"
                        else colin27_split(work)
                    )
                for key in args.rows:
                    path = record_path(work, dataset, seed, fraction, key)
                    if path.is_file():
                        records.append(json.loads(path.read_text()))
                        continue
                    assert split is not None
                    ann = annotate(split.train_truth, fraction, seed)
                    scan_path = (
                        work / "scans" / f"{dataset}-s{seed}-f{round(fraction * 100):02d}.zarr"
                    )
                    if not scan_path.exists():
                        Scan.create(
                            scan_path, split.train_image, spacing=split.spacing, annotations=ann
                        )
                    model_dir = work / "models" / path.stem
                    shutil.rmtree(model_dir, ignore_errors=True)  # an interrupted run restarts
                    rec = run_one(
                        key, args, dataset, seed, fraction, split, scan_path, ann, model_dir
                    )
                    write_json(path, rec)
                    if not args.keep_models:
                        shutil.rmtree(model_dir, ignore_errors=True)
                    records.append(rec)
                    log(
                        f"{dataset} seed {seed} {fraction:>4.0%} {LABELS[key]:<20} "
                        f"DSC {rec['dsc']:.3f} "
                        f"SENS {rec['sensitivity']:.3f} PRC {rec['precision']:.3f} "
                        f"Δ {rec['logit_shift']:+.2f} ({rec['train_s']:.0f}+{rec['score_s']:.0f} s)"
                    )
    return records


# ----------------------------------------------------------------------------- summary
SCORES = ("dsc", "sensitivity", "precision")  # on the test volumes
SAME = ("same_dsc", "same_sensitivity", "same_precision")  # unannotated training slices


def value(record: dict[str, Any], metric: str) -> float | None:
    """A record's number; ``same_*`` are on the training volume's unannotated slices (None
    in records made before that score existed)."""
    if metric.startswith("same_"):
        same = record.get("same_scan")
        return None if same is None else same[metric[5:]]
    return record[metric]


def summed_histograms(
    records: list[dict[str, Any]], d: str, fractions: list[float], rows: list[str]
) -> dict[str, Any]:
    """The diagnosed rows' margin histograms per fraction, summed over seeds."""
    return {
        key: {
            str(f): {
                part: np.sum(
                    [
                        r["hist"][part]
                        for r in records
                        if (r["dataset"], r["fraction"], r["row"]) == (d, f, key)
                    ],
                    axis=0,
                ).tolist()
                for part in ("train_fg", "train_bg", "test_fg", "test_bg")
            }
            for f in fractions
        }
        for key in DIAGNOSED
        if key in rows
    }


def resigned(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record with Δ recomputed from its signed mean margins, as
    ``evaluate.metrics.logit_shift`` now computes it (test mean - training mean). Records made
    before issue 33 hold |test mean| - |training mean|, which reads test lesions on the wrong
    side of the boundary as further from it. Δ depends on the two means only, so this is
    exact (to the JSON's 5 digits)."""

    def signed(entry: dict[str, Any]) -> float:
        test, train = entry["test_fg"], entry["train_fg"]
        return float("nan") if test is None or train is None else test - train

    out = {**record, "logit_shift": signed(record["margin"])}
    out["epochs"] = [{**e, "logit_shift": signed(e)} for e in record["epochs"]]
    return out


def summarise(
    records: list[dict[str, Any]], histograms: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Mean ± std over seeds per dataset, fraction and row; differences to CE per seed.

    ``histograms``: per dataset, the summed margin histograms of a stored summary, for records
    read back from a results JSON (which keeps them only summed, not per record)."""
    out: dict[str, Any] = {}
    by = {(r["dataset"], r["fraction"], r["row"], r["seed"]): r for r in records}
    datasets = sorted({r["dataset"] for r in records}, key=lambda d: DATASETS.index(d))
    for d in datasets:
        fractions = sorted({r["fraction"] for r in records if r["dataset"] == d})
        rows = [k for k, *_ in ROWS if any(r["row"] == k and r["dataset"] == d for r in records)]
        out[d] = {"fractions": fractions, "rows": {}}
        for key in rows:
            per_fraction = {}
            for f in fractions:
                runs = [r for (dd, ff, kk, _), r in by.items() if (dd, ff, kk) == (d, f, key)]
                entry: dict[str, Any] = {"n": len(runs)}
                for metric in (*SCORES, *SAME, "logit_shift", "train_s"):
                    m, s, _ = mean_std(value(r, metric) for r in runs)
                    entry[metric] = {"mean": m, "std": s}
                for part in ("train_fg", "test_fg"):  # the signed means behind Δ
                    m, s, _ = mean_std(r["margin"][part] for r in runs)
                    entry[f"{part}_margin"] = {"mean": m, "std": s}
                for metric in (*SCORES, *SAME):  # paired with CE on the same seed
                    diffs = [
                        value(r, metric) - value(by[(d, f, "ce", r["seed"])], metric)
                        for r in runs
                        if (d, f, "ce", r["seed"]) in by
                        and value(r, metric) is not None
                        and value(by[(d, f, "ce", r["seed"])], metric) is not None
                    ]
                    m, s, _ = mean_std(diffs)
                    entry[f"{metric}_vs_ce"] = {"mean": m, "std": s}
                per_fraction[str(f)] = entry
            out[d]["rows"][key] = per_fraction
        if histograms is not None:
            out[d]["histograms"] = histograms[d]
        else:
            out[d]["histograms"] = summed_histograms(records, d, fractions, rows)
        out[d]["epochs"] = {}
        for key in DIAGNOSED:
            for f in fractions:
                curves = [
                    r["epochs"]
                    for r in records
                    if (r["dataset"], r["fraction"], r["row"]) == (d, f, key) and r["epochs"]
                ]
                if not curves:
                    continue
                steps = [e["step"] for e in curves[0]]
                shifts = [
                    mean_std(c[i]["logit_shift"] for c in curves if i < len(c))
                    for i in range(len(steps))
                ]
                out[d]["epochs"].setdefault(key, {})[str(f)] = {
                    "step": steps,
                    "mean": [s[0] for s in shifts],
                    "std": [s[1] for s in shifts],
                }
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def trends(summary: dict[str, Any]) -> dict[str, Any]:
    """Per row: the change against CE (paired by seed), averaged over the fractions, for each
    dataset; and each asymmetric technique against its symmetric twin."""
    out: dict[str, Any] = {}
    for d, s in summary.items():
        fr = [str(f) for f in s["fractions"]]
        rows = {}
        for key, per in s["rows"].items():
            rows[key] = {
                m: _mean([per[f][f"{m}_vs_ce"]["mean"] for f in fr]) for m in (*SCORES, *SAME)
            }
            rows[key]["logit_shift"] = _mean([per[f]["logit_shift"]["mean"] for f in fr])
        twins = {}
        for sym in ("large_margin", "focal", "adversarial", "mixup"):
            asym = f"asym_{sym}"
            if sym in s["rows"] and asym in s["rows"]:
                a, b = s["rows"][asym], s["rows"][sym]
                twins[asym] = {
                    m: _mean([a[f][m]["mean"] - b[f][m]["mean"] for f in fr])
                    for m in (*SCORES, *SAME)
                }
        out[d] = {"vs_ce": rows, "asym_vs_sym": twins}
    return out


def print_tables(summary: dict[str, Any]) -> str:
    parts = []
    for d, s in summary.items():
        fr = s["fractions"]
        header = ["method"] + [f"{f:.0%} {m}" for f in fr for m in ("DSC", "SENS", "PRC")]
        rows = []
        for key, per in s["rows"].items():
            cells = [LABELS[key]]
            for f in fr:
                e = per[str(f)]
                cells += [
                    fmt(e[m]["mean"], e[m]["std"], 2) for m in ("dsc", "sensitivity", "precision")
                ]
            rows.append(cells)
        parts.append(f"### {TITLES[d]}: test volumes\n\n" + table(header, rows))
        if any(
            math.isfinite(per[str(f)]["same_dsc"]["mean"]) for per in s["rows"].values() for f in fr
        ):
            rows = []
            for key, per in s["rows"].items():
                cells = [LABELS[key]]
                for f in fr:
                    e = per[str(f)]
                    cells += [fmt(e[m]["mean"], e[m]["std"], 2) for m in SAME]
                rows.append(cells)
            parts.append(
                f"### {TITLES[d]}: unannotated slices of the training volume\n\n"
                + table(header, rows)
            )
        keys = (
            ("logit_shift", "Δ"),
            ("train_fg_margin", "train fg"),
            ("test_fg_margin", "test fg"),
        )
        header = ["method"] + [f"{f:.0%} {label}" for f in fr for _, label in keys]
        rows = []
        for key, per in s["rows"].items():
            cells = [LABELS[key]]
            for f in fr:
                e = per[str(f)]
                cells += [fmt(e[m]["mean"], e[m]["std"], 1) if m in e else "n/a" for m, _ in keys]
            rows.append(cells)
        parts.append(
            f"Logit shift Δ and mean foreground margins, training vs test ({TITLES[d]})\n\n"
            + table(header, rows)
        )
    text = "\n\n".join(parts)
    print(text)
    return text


def print_trends(tr: dict[str, Any]) -> str:
    """The paper's claims in two tables per dataset: each row against CE, and each asymmetric
    technique against its symmetric twin (differences of means, averaged over the fractions)."""
    parts = []
    for d, t in tr.items():
        header = ["method", "ΔDSC", "ΔSENS", "ΔPRC", "ΔDSC same", "ΔSENS same", "ΔPRC same"]
        rows = [
            [LABELS[k]]
            + [f"{v[m]:+.2f}" if math.isfinite(v[m]) else "n/a" for m in (*SCORES, *SAME)]
            for k, v in t["vs_ce"].items()
            if k != "ce"
        ]
        parts.append(f"Against CE, same seed ({TITLES[d]})\n\n" + table(header, rows))
        rows = [
            [LABELS[k] + " vs symmetric"]
            + [f"{v[m]:+.2f}" if math.isfinite(v[m]) else "n/a" for m in (*SCORES, *SAME)]
            for k, v in t["asym_vs_sym"].items()
        ]
        parts.append(f"Asymmetric against symmetric ({TITLES[d]})\n\n" + table(header, rows))
    text = "\n\n".join(parts)
    print(text)
    return text


# ----------------------------------------------------------------------------- figures
SHOWN = ("ce", "dice", "focal", "asym_focal", "asym_large_margin", "asym_combined", "gdl")


def draw_quality(summary: dict[str, Any], path: Path) -> None:
    """DSC, sensitivity and precision against the annotated fraction: one row of panels per
    dataset and view (test volumes; unannotated slices of the training volume where scored)."""
    views = []
    for d, s in summary.items():
        views.append((d, "", "test volumes"))
        if any(
            math.isfinite(per[str(f)]["same_dsc"]["mean"])
            for per in s["rows"].values()
            for f in s["fractions"]
        ):
            views.append((d, "same_", "unannotated slices"))
    names = (("dsc", "DSC"), ("sensitivity", "sensitivity"), ("precision", "precision"))
    w, h = 360, 280
    fig = Figure(
        w * 3, h * len(views) + 40, "Scores against the annotated share of training slices"
    )
    for i, (d, prefix, where) in enumerate(views):
        s = summary[d]
        xs = [math.log10(f) for f in s["fractions"]]
        shown = [k for k in SHOWN if k in s["rows"]]
        for j, (metric, label) in enumerate(names):
            panel = fig.panel(
                (j * w, 34 + i * h, (j + 1) * w, 34 + (i + 1) * h),
                xlim=(min(xs) - 0.1, max(xs) + 0.1),
                ylim=(0.0, 1.0),
                title=f"{SHORT[d]}, {where}: {label}",
                xlabel="annotated training slices",
                ylabel=label,
                xticks=xs,
                xticklabels=[f"{f:.0%}" for f in s["fractions"]],
            )
            for c, key in enumerate(shown):
                ys = [s["rows"][key][str(f)][prefix + metric]["mean"] for f in s["fractions"]]
                # asymmetric rows solid, the others dashed, CE solid (the reference)
                dash = not key.startswith("asym") and key != "ce"
                panel.line(xs, ys, PALETTE[c % len(PALETTE)], dash=dash)
            if j == 0:
                panel.legend(
                    [(LABELS[k], PALETTE[c % len(PALETTE)]) for c, k in enumerate(shown)], "ul"
                )
    fig.save(path)


def draw_logits(summary: dict[str, Any], path: Path, fraction: float) -> None:
    """Li et al. Figs. 2 and 4: margin histograms (training vs test, fg and bg) for CE and the
    asymmetric combination, and Δ during training."""
    datasets = list(summary)
    w, h = 380, 300
    fig = Figure(
        w * 3,
        h * len(datasets) + 40,
        f"Foreground margin logsumexp(z_fg) - z_bg, {fraction:.0%} of slices annotated",
    )
    centres = [-LIM + (k + 0.5) * 2 * LIM / BINS for k in range(BINS)]
    parts = (
        ("train_fg", "train fg", "#d62728", False),
        ("test_fg", "test fg", "#d62728", True),
        ("train_bg", "train bg", "#1f77b4", False),
        ("test_bg", "test bg", "#1f77b4", True),
    )
    for i, d in enumerate(datasets):
        s = summary[d]
        f = (
            str(fraction)
            if str(fraction) in s["histograms"].get("ce", {})
            else str(s["fractions"][0])
        )
        for j, key in enumerate(DIAGNOSED):
            hists = s["histograms"].get(key, {}).get(f)
            if hists is None:
                continue
            panel = fig.panel(
                (j * w, 34 + i * h, (j + 1) * w, 34 + (i + 1) * h),
                xlim=(-SHOWN_LIM, SHOWN_LIM),
                ylim=(0.0, 0.5),
                title=f"{SHORT[d]}: {LABELS[key]}",
                xlabel="margin (> 0: foreground predicted)",
                ylabel="share of voxels",
            )
            panel.line([0.0, 0.0], [0.0, 0.5], "#555555", width=1, marker=False, dash=True)
            inside = [k for k, c in enumerate(centres) if abs(c) < SHOWN_LIM]
            for part, _, color, dash in parts:
                counts = np.asarray(hists[part], np.float64)
                if counts.sum() > 0:
                    share = (counts / counts.sum()).tolist()
                    xs, ys = [centres[k] for k in inside], [share[k] for k in inside]
                    panel.line(xs, ys, color, dash=dash, marker=False)
            panel.legend(
                [(label + (" (dashed)" if dash else ""), c) for _, label, c, dash in parts], "ul"
            )
        curves = s["epochs"]
        allv = [
            v for k in curves for c in curves[k].values() for v in c["mean"] if math.isfinite(v)
        ]
        if not allv:
            continue
        steps = [st for k in curves for c in curves[k].values() for st in c["step"]]
        panel = fig.panel(
            (2 * w, 34 + i * h, 3 * w, 34 + (i + 1) * h),
            xlim=(0, max(steps)),
            ylim=(min(min(allv) - 0.5, -1.0), max(max(allv) + 0.5, 0.5)),
            title=f"Delta during training ({fraction:.0%})",
            xlabel="step",
            ylabel="Delta = mean test fg - mean train fg",
        )
        panel.hline(0.0)
        for c, key in enumerate(DIAGNOSED):
            cur = curves.get(key, {}).get(f)
            if cur:
                lo = [m - e for m, e in zip(cur["mean"], cur["std"], strict=True)]
                hi = [m + e for m, e in zip(cur["mean"], cur["std"], strict=True)]
                panel.line(cur["step"], cur["mean"], PALETTE[c], lo=lo, hi=hi)
        panel.legend([(LABELS[k], PALETTE[c]) for c, k in enumerate(DIAGNOSED)], "lr")
    fig.save(path)


# ----------------------------------------------------------------------------- main
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/asymseg-quality", help="cache folder (resumable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    p.add_argument(
        "--rows", nargs="+", default=[k for k, *_ in ROWS], choices=[k for k, *_ in ROWS]
    )
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=Config().train.lr)
    p.add_argument("--filters", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--patch-synthetic", type=int, nargs=3, default=[16, 48, 48])
    p.add_argument("--patch-colin", type=int, nargs=3, default=[32, 32, 32])
    p.add_argument("--shape", type=int, nargs=3, default=[32, 96, 96], help="synthetic scan shape")
    p.add_argument("--train-scans", type=int, default=3, help="synthetic training scans")
    p.add_argument("--test-scans", type=int, default=2, help="synthetic test scans")
    p.add_argument(
        "--polarity",
        type=int,
        choices=(1, -1, 0),
        default=1,
        help="synthetic lesions bright (1), dark (-1), or drawn per scan (0)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--diagnostic-fraction", type=float, default=0.1)
    p.add_argument("--keep-models", action="store_true", help="keep the trained models")
    p.add_argument("--quick", action="store_true", help="tiny configuration (plumbing only)")
    p.add_argument("--redraw", action="store_true", help="only re-summarise and redraw")
    p.add_argument(
        "--from-json",
        metavar="JSON",
        help="re-summarise this results JSON's records (Δ recomputed signed) and redraw",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/quality.json"))
    p.add_argument("--figure", default=str(ROOT / "docs/images/quality.png"))
    p.add_argument("--logit-figure", default=str(ROOT / "docs/images/logit-shift.png"))
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.fractions, args.steps = args.seeds[:1], [0.1, 0.5], 4
        args.rows = ["ce", "asym_combined", "dice"]
        args.shape, args.patch_synthetic, args.patch_colin = [16, 48, 48], [8, 32, 32], [16, 16, 16]
        args.filters = [4, 8, 16]
        args.diagnostic_fraction = 0.1
    return args


def finish(
    records: list[dict[str, Any]],
    args: argparse.Namespace,
    extra: dict[str, Any],
    histograms: dict[str, Any] | None = None,
) -> dict[str, Any]:
    summary = summarise(records, histograms)
    trend = trends(summary)
    planned = len(args.rows) * len(args.fractions) * len(args.seeds) * len(args.datasets)
    result = {
        "benchmark": "quality",
        **extra,
        "progress": {
            "runs": len(records),
            "planned": planned,
            "complete": len(records) >= planned,
            "per_dataset": {d: sum(r["dataset"] == d for r in records) for d in args.datasets},
        },
        "summary": summary,
        "trends": trend,
        "tables": print_tables(summary) + "\n\n" + print_trends(trend),
        "training_s_total": float(sum(r["train_s"] for r in records)),
        "records": [{k: v for k, v in r.items() if k != "hist"} for r in records],
    }
    write_json(args.out, result, compact=["records"])
    draw_quality(summary, Path(args.figure))
    draw_logits(summary, Path(args.logit_figure), args.diagnostic_fraction)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    work = Path(args.work)
    log = timed_log()
    if args.from_json:
        return from_json(args)
    if args.redraw:
        # the stored runs (possibly made by several processes, e.g. one per dataset)
        stored = (json.loads(p.read_text()) for p in sorted((work / "records").glob("*.json")))
        records = [r for r in stored if r["dataset"] in args.datasets]
        extra = {"machine": machine(), "config": config_of(args)}
        extra["config"]["seeds"] = sorted({r["seed"] for r in records})
        extra["config"]["datasets"] = [
            d for d in DATASETS if any(r["dataset"] == d for r in records)
        ]
        return finish(records, args, extra)
    work.mkdir(parents=True, exist_ok=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # scoring too, not only fit()
    t0 = time.perf_counter()
    records = run_all(args, work, log)
    extra = {"machine": machine(), "runtime_s": time.perf_counter() - t0, "config": config_of(args)}
    result = finish(records, args, extra)
    log(f"wrote {args.out}, {args.figure} and {args.logit_figure}")
    return result


def from_json(args: argparse.Namespace) -> dict[str, Any]:
    """Re-summarise a results JSON's records with the signed Δ (``resigned``), keeping its
    machine, configuration and summed histograms; redraws the figures."""
    old = json.loads(Path(args.from_json).read_text())
    records = [resigned(r) for r in old["records"]]
    cfg = old["config"]
    args.seeds, args.datasets, args.fractions = cfg["seeds"], cfg["datasets"], cfg["fractions"]
    args.rows = list(cfg["rows"])
    extra = {
        "machine": old["machine"],
        "config": cfg,
        "resummarised": {
            "from": str(args.from_json),
            "date": machine()["date"],
            "why": "logit shift signed: mean test fg margin - mean training fg margin (issue 33)",
        },
    }
    hists = {d: s["histograms"] for d, s in old["summary"].items()}
    return finish(records, args, extra, hists)


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "quick": args.quick,
        "seeds": args.seeds,
        "datasets": args.datasets,
        "fractions": args.fractions,
        "rows": {k: LABELS[k] for k in args.rows},
        "steps": args.steps,
        "lr": args.lr,
        "filters": args.filters,
        "patch_synthetic": args.patch_synthetic,
        "patch_colin27": args.patch_colin,
        "synthetic_shape": args.shape,
        "synthetic_train_scans": args.train_scans,
        "synthetic_test_scans": args.test_scans,
        "synthetic_polarity": args.polarity,
        "batch_size": Config().train.batch_size,
        "val_fraction": 0.0,
        "diagnosed_rows": list(DIAGNOSED),
        "diagnostic_fraction": args.diagnostic_fraction,
    }


if __name__ == "__main__":
    main()
