"""Real scans from a few painted slices: the product's main number, against an ilastik peer.

    .venv/bin/python benchmarks/real_scans.py                 # full run (docs/benchmarks.md)
    .venv/bin/python benchmarks/real_scans.py --cases brain1 --seeds 0
    .venv/bin/python benchmarks/real_scans.py --quick         # tiny plumbing run (the test's)
    .venv/bin/python benchmarks/real_scans.py --set loss.name=ce --tag ce   # a variant

Protocol (docs/benchmarks.md): on each case the lesion is painted on 2 slices, the rest of
those slices background, and 1 slice without lesion is painted background; a model is
trained with the defaults (as one click in the dock does) and predicts the whole scan; DSC,
sensitivity, precision and lesions found / missed are scored on the voxels nobody painted.

Cases:

* ``brain1``, ``brain2``: MR with a brain tumour from the clinical test cases of the
  pyradiomics 3.0.1 source distribution (see docs/data.md), built on demand with
  ``pip download`` into ``--work``; never committed. Only these two cases of that archive are
  used: its other cases are held back to check that the defaults generalise.
* ``colin27``: the Colin27 brain with the AAL hippocampi (Debian ``mricron-data``).
* ``synthetic``: the synthetic sample scan (its generator's defaults).

Peer, side by side on the same painted voxels: an ilastik-style pixel classifier, i.e. a
random forest (100 trees, balanced classes) on per-slice
``skimage.feature.multiscale_basic_features`` (intensity, edges, texture; sigma 1-16).

Second peer (``--methods fill``): the image-blind interpolation of the painted slices, as
Slicer's "Fill between slices" gives in one click: the product's own ``asymseg fill``
(:func:`napari_asymseg.annotate.interpolate.fill_between`), which predicts lesion only on the
slices between two painted lesion slices. It is deterministic: its seeds repeat one number.

Ours is scored by :func:`napari_asymseg.infer.predict.predict` (the product's prediction) and
the quality figure the dock shows is recorded beside the truth. Records are written per
(case, method, seed) as soon as they are scored; a second invocation skips them (resumable).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finite, machine, mean_std, table, write_json  # noqa: E402
from napari_asymseg.config import Config, config_from_dict, config_to_dict  # noqa: E402
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED, code_of_class  # noqa: E402
from napari_asymseg.store.scan import Scan  # noqa: E402

HERE = Path(__file__).resolve().parent
PYRADIOMICS = "pyradiomics==3.0.1"
# (lesion slices, empty slices) of the protocol; None: chosen from the truth (protocol_slices)
PAINTED: dict[str, tuple[tuple[int, ...], tuple[int, ...]] | None] = {
    "brain1": ((12, 16), (5,)),
    "brain2": ((9,), (3,)),
    "colin27": None,
    "synthetic": None,
}
CASES = tuple(PAINTED)


# ----------------------------------------------------------------------------- the cases
def pyradiomics_data(work: Path) -> Path:
    """The ``data/`` folder of the pyradiomics 3.0.1 sdist, downloaded once into ``work``.

    Only the NRRDs of brain1 and brain2 are extracted from the archive.
    """
    folder = work / "pyradiomics" / "data"
    wanted = [f"brain{i}_{kind}.nrrd" for i in (1, 2) for kind in ("image", "label")]
    if all((folder / name).is_file() for name in wanted):
        return folder
    dl = work / "pyradiomics"
    dl.mkdir(parents=True, exist_ok=True)
    archives = list(dl.glob("pyradiomics-3.0.1.tar.gz"))
    if not archives:
        # pip reads the sdist's metadata with its build requirements installed (numpy, here
        # already, and versioneer); --no-build-isolation uses this environment's
        try:
            import versioneer  # noqa: F401
        except ImportError:
            pip = [sys.executable, "-m", "pip", "install", "-q", "versioneer"]
            subprocess.run(pip, check=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "pyradiomics"]
        cmd += ["--no-build-isolation", PYRADIOMICS, "-d", str(dl)]
        subprocess.run(cmd, check=True, capture_output=True)
        archives = list(dl.glob("pyradiomics-3.0.1.tar.gz"))
    import tarfile

    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archives[0]) as tar:
        for name in wanted:
            member = tar.getmember(f"pyradiomics-3.0.1/data/{name}")
            source = tar.extractfile(member)
            assert source is not None
            (folder / name).write_bytes(source.read())
    return folder


def build_case(name: str, work: Path, quick: bool = False) -> Path:
    """The case's scan (image + truth, no annotations yet) under ``work/scans``; built once."""
    out = work / "scans" / f"{name}{'-quick' if quick else ''}.zarr"
    if (out / "zarr.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if name in ("brain1", "brain2"):
        from napari_asymseg.io.importers import import_scan

        data = pyradiomics_data(work)
        import_scan(
            data / f"{name}_image.nrrd",
            out,
            truth=data / f"{name}_label.nrrd",
            classes=["lesion"],
            overwrite=True,
        )
    elif name == "colin27":
        from napari_asymseg.samples.sample_data import build_colin27

        build_colin27(out, overwrite=True)
    elif name == "synthetic":
        from napari_asymseg.samples.sample_data import write_sample_scan

        kwargs: dict[str, Any] = {"shape": (16, 48, 48)} if quick else {}
        write_sample_scan(out, overwrite=True, **kwargs)
    else:
        raise SystemExit(f"unknown case {name!r}: choose from {', '.join(CASES)}")
    return out


def protocol_slices(truth: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two lesion slices at a third and two thirds of the lesion's extent along z, and one
    empty slice halfway between the lesion and the far end of the scan."""
    zs = np.flatnonzero(truth.any(axis=(1, 2)))
    lo, hi = int(zs[0]), int(zs[-1])
    picks = sorted({int(zs[np.argmin(abs(zs - (lo + (hi - lo) * f)))]) for f in (1 / 3, 2 / 3)})
    depth = truth.shape[0]
    empty = (hi + depth) // 2 if depth - hi > lo else lo // 2
    empty = min(max(empty, 0), depth - 1)
    if truth[empty].any():  # the lesion reaches the border: the nearest empty slice
        free = np.flatnonzero(~truth.any(axis=(1, 2)))
        empty = int(free[np.argmin(abs(free - empty))])
    return tuple(picks), (empty,)


def paint(
    scan: Scan, name: str, slices: tuple[tuple[int, ...], tuple[int, ...]] | None = None
) -> dict[str, list[int]]:
    """Write the protocol's annotations (or ``slices``: lesion, empty) into ``scan``; the slices
    painted."""
    truth = np.asarray(scan.ground_truth[...])
    slices = slices or PAINTED.get(name) or protocol_slices(truth)
    fg, empty = slices
    ann = np.full(truth.shape, NOT_ANNOTATED, np.uint8)
    for z in fg:
        ann[z] = np.where(truth[z] > 0, code_of_class(1), BACKGROUND)
    for z in empty:
        ann[z] = BACKGROUND
    scan.write_annotations(ann)
    return {"lesion": list(fg), "empty": list(empty)}


# ----------------------------------------------------------------------------- scoring
def _counts(p: np.ndarray, t: np.ndarray) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of boolean ``p`` against ``t``."""
    return int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())


def by_place(p: np.ndarray, t: np.ndarray, lesion_slices: list[int]) -> dict[str, Any]:
    """DSC on the unpainted slices between the first and the last painted lesion slice (the
    model interpolates there) and beyond them (it extrapolates), with each part's share of the
    unpainted lesion voxels: what the single DSC mixes."""
    out: dict[str, Any] = {}
    z = np.arange(p.shape[0])
    inside = (z > min(lesion_slices)) & (z < max(lesion_slices)) if lesion_slices else z < 0
    total = max(int(t.sum()), 1)
    for name, part in (("between", inside), ("beyond", ~inside)):
        tp, fp, fn = _counts(p[part], t[part])
        out[f"dsc_{name}"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
        out[f"lesion_share_{name}"] = (tp + fn) / total
    return out


def score(
    pred: np.ndarray, truth: np.ndarray, unpainted: np.ndarray, lesion_slices: list[int]
) -> dict[str, Any]:
    """DSC, sensitivity, precision on the unpainted voxels, also split between and beyond the
    painted lesion slices (:func:`by_place`); lesions (truth components with unpainted voxels)
    found (any overlap) or missed; false-positive voxels."""
    from scipy import ndimage

    p, t = pred.astype(bool) & unpainted, truth.astype(bool) & unpainted
    tp, fp, fn = _counts(p, t)
    comps, n = ndimage.label(truth > 0)
    found = missed = 0
    for k in range(1, n + 1):
        region = (comps == k) & unpainted
        if region.any():
            if (pred.astype(bool) & region).any():
                found += 1
            else:
                missed += 1
    return {
        **by_place(p, t, lesion_slices),
        "dsc": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "false_positive_voxels": fp,
        "lesions_found": found,
        "lesions_missed": missed,
    }


# ----------------------------------------------------------------------------- the methods
def run_ours(scan: Scan, cfg: Config, model_dir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Train with ``cfg`` and predict the whole scan as the dock does; the prediction and the
    run's times and shown quality."""
    from napari_asymseg.infer.predict import PredictionDone, predict
    from napari_asymseg.train.estimate import QualityEstimate, estimate_quality
    from napari_asymseg.train.events import Finished
    from napari_asymseg.train.loop import fit

    if model_dir.exists():
        shutil.rmtree(model_dir)
    t0 = time.perf_counter()
    done: Finished | None = None
    for event in fit(scan, cfg, model_dir):
        if isinstance(event, Finished):
            done = event
    assert done is not None
    t1 = time.perf_counter()
    alone = None
    if cfg.predict.fill_between:  # the network alone too, to show what the fill adds
        no_fill = copy.deepcopy(cfg)
        no_fill.predict.fill_between = False
        for _ in predict(scan, model_dir, config=no_fill):
            pass
        alone = np.asarray(scan.result("prediction")[...])
    t_alone = time.perf_counter() - t1
    done_predict: PredictionDone | None = None
    for event in predict(scan, model_dir):  # as the dock: the prediction, then the figure
        if isinstance(event, PredictionDone):
            done_predict = event
    t2 = time.perf_counter()
    figure = done_predict.figure if done_predict is not None else None
    estimate: QualityEstimate | None = None
    if cfg.train.estimate:  # after the prediction, as the dock shows the overlay first
        for event in estimate_quality(scan, cfg):
            if isinstance(event, QualityEstimate):
                estimate = event
    pred = np.asarray(scan.result("prediction")[...])
    prob = np.asarray(scan.result("probability")[...], dtype=np.float32)
    unpainted = scan.read_annotations() == NOT_ANNOTATED
    p, on = prob[unpainted], pred[unpainted] > 0
    info = {
        "soft_dsc": float(2 * p[on].sum() / max(on.sum() + p.sum(), 1e-6)),
        "expected_fg": float(p.sum()),
        "predicted_fg": int(on.sum()),
        "train_s": t1 - t0,
        "predict_s": t2 - t1 - t_alone,
        "wall_s": t2 - t0,
        # the user's wait: the click (fit called) to the figure, without the network-alone pass
        "to_figure_s": t2 - t0 - t_alone,
        "figure": figure.dsc if figure is not None else None,
        "figure_low": figure.low if figure is not None else None,
        "figure_high": figure.high if figure is not None else None,
        "figure_s": figure.seconds if figure is not None else None,
        "far_voxels": figure.far_voxels if figure is not None else None,
        "steps": done.steps_done,
        "best_val_dsc": done.best_dsc,
        "shown": estimate.dsc if estimate is not None else None,
        "shown_sensitivity": estimate.sensitivity if estimate is not None else None,
        "shown_precision": estimate.precision if estimate is not None else None,
        "estimate_s": estimate.seconds if estimate is not None else None,
    }
    if alone is not None:
        info["alone"] = alone
    return pred, info


def forest_features(image: np.ndarray) -> np.ndarray:
    """ilastik's default feature set (sigma 1-16), per slice: ``[Z, Y, X, F]`` float32."""
    from napari_asymseg.train.forest import slice_features

    return np.stack([slice_features(s) for s in image])


def run_forest(image: np.ndarray, ann: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The ilastik-style peer on the same painted voxels."""
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    feats = forest_features(image)
    painted = ann > NOT_ANNOTATED
    x, y = feats[painted], (ann[painted] > BACKGROUND).astype(np.uint8)
    forest = RandomForestClassifier(
        n_estimators=100, class_weight="balanced", n_jobs=-1, random_state=seed
    )
    forest.fit(x, y)
    flat = feats.reshape(-1, feats.shape[-1])
    pred = np.zeros(flat.shape[0], np.uint8)
    for a in range(0, flat.shape[0], 1 << 18):  # bounded memory for the class probabilities
        pred[a : a + (1 << 18)] = forest.predict(flat[a : a + (1 << 18)])
    return pred.reshape(ann.shape), {"wall_s": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- the run
@dataclass
class Job:
    case: str
    method: str  # "ours", "forest" or "fill"
    seed: int


def config_for(args: argparse.Namespace, seed: int) -> Config:
    cfg = Config()
    data = config_to_dict(cfg)
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, field = key.partition(".")
        try:  # numbers, lists, true/false as JSON; anything else (forest, shape) as text
            data[section][field] = json.loads(value)
        except ValueError:
            data[section][field] = value
    cfg = config_from_dict(data)
    cfg.train.seed = seed
    if args.quick:
        cfg.train.steps, cfg.train.val_every = 4, 2
    return cfg


def run_fill(ann: np.ndarray, spacing) -> tuple[np.ndarray, dict[str, Any]]:
    """The fill-between peer: the painted lesion interpolated between its painted slices."""
    from napari_asymseg.annotate.interpolate import fill_between
    from napari_asymseg.errors import ScanError

    t0 = time.perf_counter()
    try:
        fill = fill_between(ann, spacing)
    except ScanError as exc:  # one painted lesion slice: nothing between to fill
        pred = ann >= code_of_class(1)
        return pred.astype(np.uint8), {"wall_s": time.perf_counter() - t0, "skipped": [str(exc)]}
    pred = (fill.codes >= code_of_class(1)) | (ann >= code_of_class(1))
    skipped = [f"{s.first}-{s.last}: {s.reason}" for s in fill.skipped]
    return pred.astype(np.uint8), {"wall_s": time.perf_counter() - t0, "skipped": skipped}


def run_job(job: Job, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    source = build_case(job.case, work, args.quick)
    copy = work / "runs" / args.tag / f"{job.case}-{job.seed}.zarr"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(source, copy)
    scan = Scan.open(copy)
    painted = paint(scan, job.case, args.slices.get(job.case))
    ann = scan.read_annotations()
    truth = np.asarray(scan.ground_truth[...]) > 0
    if job.method == "ours":
        cfg = config_for(args, job.seed)
        pred, info = run_ours(scan, cfg, copy.with_suffix(".model"))
        info["config"] = config_to_dict(cfg)
    elif job.method == "fill":
        pred, info = run_fill(ann, scan.spacing)
    else:
        pred, info = run_forest(np.asarray(scan.image[...]), ann, job.seed)
    alone = info.pop("alone", None)
    record = {
        **info,
        **score(pred > 0, truth, ann == NOT_ANNOTATED, painted["lesion"]),
        "painted": painted,
    }
    if record.get("figure") is not None:  # is the truth inside the interval shown?
        record["figure_error"] = record["figure"] - record["dsc"]
        record["truth_inside"] = record["figure_low"] <= record["dsc"] <= record["figure_high"]
    if alone is not None:  # the network without the fill between painted slices
        record["network_alone"] = score(alone > 0, truth, ann == NOT_ANNOTATED, painted["lesion"])
    if not args.keep:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(copy.with_suffix(".model"), ignore_errors=True)
    return record


def _mean_of(runs: list[dict[str, Any]], key: str) -> str:
    """The mean of ``key`` over the runs that have a finite value, or "-"."""
    m, _, n = mean_std(r.get(key) for r in runs)
    return f"{m:.2f}" if n else "-"


def summarise(records: dict[str, dict[str, Any]], cases: list[str], tag: str) -> list[list[Any]]:
    rows = []
    for case in cases:
        for method in ("ours", "alone", "forest", "fill"):
            if method == "alone":  # ours without the fill between painted slices
                runs = [
                    {**r, **r["network_alone"], "wall_s": r["wall_s"]}
                    for k, r in records.items()
                    if k.startswith(f"{case}/ours/") and r.get("network_alone")
                ]
            else:
                runs = [r for k, r in records.items() if k.startswith(f"{case}/{method}/")]
            if not runs:
                continue
            name = {"ours": tag, "alone": f"{tag}, network alone"}.get(method, method)
            cells: list[Any] = [case, name, len(runs)]
            for key in ("dsc", "sensitivity", "precision"):
                # a record read back holds None where the value was NaN (nothing predicted)
                m, s, _ = mean_std(r[key] for r in runs)
                cells.append(f"{m:.3f} ± {s:.3f}")
            cells.append(
                f"{np.mean([r['lesions_found'] for r in runs]):.1f}/"
                f"{np.mean([r['lesions_found'] + r['lesions_missed'] for r in runs]):.0f}"
            )
            cells.append(f"{np.mean([r['false_positive_voxels'] for r in runs]):.0f}")
            cells.append(_mean_of(runs, "dsc_between") + " / " + _mean_of(runs, "dsc_beyond"))
            cells.append(_mean_of(runs, "figure") if method == "ours" else "-")
            cells.append(f"{np.mean([r['wall_s'] for r in runs]):.0f}")
            rows.append(cells)
    return rows


HEADER = [
    "case",
    "method",
    "n",
    "DSC",
    "sensitivity",
    "precision",
    "lesions",
    "FP voxels",
    "between / beyond",
    "figure",
    "wall s",
]
FIGURE_HEADER = ["case", "seed", "true DSC", "figure", "likely", "inside", "click to figure s"]


def figure_rows(records: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """Per (case, seed) of ours: the truth, the quality figure shown, its interval, whether
    the truth lies inside, and the user's wait from the click to the figure."""
    rows = []
    for key, r in records.items():
        case, method, seed = key.split("/")
        if method != "ours" or r.get("figure") is None:
            continue
        rows.append(
            [case, seed, f"{r['dsc']:.3f}", f"{r['figure']:.3f}",
             f"{r['figure_low']:.2f}-{r['figure_high']:.2f}", "yes" if r["truth_inside"] else "NO",
             f"{r['to_figure_s']:.0f}"]
        )  # fmt: skip
    return rows


def parse_paint(item: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """``CASE=Z,Z/E,E`` as the (lesion slices, empty slices) of that case."""
    case, _, slices = item.partition("=")
    lesion, _, empty = slices.partition("/")
    try:
        picks = tuple(int(z) for z in lesion.split(",")), tuple(int(z) for z in empty.split(","))
    except ValueError:
        raise SystemExit(f"--paint {item!r}: expected CASE=Z,Z/E, e.g. brain1=11,17/5") from None
    if case not in PAINTED:
        raise SystemExit(f"--paint: unknown case {case!r}: choose from {', '.join(CASES)}")
    return {case: picks}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--methods",
        nargs="+",
        default=["ours", "forest", "fill"],
        choices=["ours", "forest", "fill"],
    )
    p.add_argument("--set", action="append", default=[], help="SECTION.FIELD=VALUE (JSON)")
    p.add_argument("--tag", default="defaults", help="name of this variant (records, table)")
    p.add_argument("--work", default=str(HERE / "results" / "real_scans-work"))
    p.add_argument(
        "--out", default=None, help="JSON (default benchmarks/results/real_scans[-TAG].json)"
    )
    p.add_argument(
        "--paint",
        action="append",
        default=[],
        metavar="CASE=Z,Z/E",
        help="paint other slices than the protocol's, e.g. brain1=11,17/5 (use with --tag)",
    )
    p.add_argument("--quick", action="store_true", help="tiny synthetic plumbing run")
    p.add_argument("--keep", action="store_true", help="keep the scans and models of each run")
    args = p.parse_args(argv)
    if args.quick:
        args.cases, args.seeds = ["synthetic"], [0]
    args.slices = {case: picks for item in args.paint for case, picks in parse_paint(item).items()}
    work = Path(args.work)
    records_dir = work / "records" / args.tag
    records_dir.mkdir(parents=True, exist_ok=True)
    peers = {m: work / "records" / m for m in ("forest", "fill")}
    for folder in peers.values():
        folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    records: dict[str, dict[str, Any]] = {}
    for case in args.cases:
        for seed in args.seeds:
            for method in args.methods:  # side by side: ours, then the peer, per seed
                folder = records_dir if method == "ours" else peers[method]
                path = folder / f"{case}{'-quick' if args.quick else ''}-{method}-{seed}.json"
                if path.is_file():
                    records[f"{case}/{method}/{seed}"] = json.loads(path.read_text())
                    continue
                rec = run_job(Job(case, method, seed), args)
                write_json(path, finite(rec))
                records[f"{case}/{method}/{seed}"] = rec
                print(
                    f"{case} {method} seed {seed}: DSC {rec['dsc']:.3f} sens "
                    f"{rec['sensitivity']:.3f} prec {rec['precision']:.3f} "
                    f"shown {rec.get('shown')} ({rec['wall_s']:.0f} s)",
                    flush=True,
                )
    rows = summarise(records, args.cases, args.tag)
    print(table(HEADER, rows))
    figures = figure_rows(records)
    if figures:
        print(table(FIGURE_HEADER, figures))
    result = {
        "machine": machine(),
        "runtime_s": time.perf_counter() - t0,
        "tag": args.tag,
        "settings": args.set,
        "records": finite(records),
        "table": {"header": HEADER, "rows": rows},
        "figure_table": {"header": FIGURE_HEADER, "rows": figures},
    }
    default = (
        HERE / "results" / f"real_scans{'' if args.tag == 'defaults' else '-' + args.tag}.json"
    )
    write_json(Path(args.out) if args.out else default, finite(result))
    return result


if __name__ == "__main__":
    main()
