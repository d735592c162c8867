"""The quality figure against the truth, and against the other ways to estimate it.

    .venv/bin/python benchmarks/quality_figure.py                  # trains what is missing
    .venv/bin/python benchmarks/quality_figure.py --cv    # cross-validation too, first seed
    .venv/bin/python benchmarks/quality_figure.py --quick --cv --work /tmp/q   # plumbing

Each run is the real-scan protocol (``real_scans.py``: 2 painted lesion slices, 1 empty slice;
brain2 has one lesion slice) trained for a fixed 360 steps with ``--keep``, so that the scan and
its model stay in ``--work`` (a second invocation only re-scores). ``--paint`` runs a case painted
on other slices (its own tag, the first seed), to check that the rule was not fitted to the
protocol's slices.
On every kept run, side by side on the same prediction (the product's, with the fill):

* the **figure** (:func:`napari_asymseg.evaluate.figure.figure`), its interval, and whether the
  true DSC on the unpainted voxels lies inside;
* the **naive expected DSC** from the network's own probabilities,
  ``2 Σ_pred p / (|pred| + Σ p)`` over the unpainted voxels;
* the DSC against the reference taken as **exact** (no uncertain outline);
* with ``--cv``, the **cross-validation** the product showed before (two more trainings).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finite, machine, table, write_json  # noqa: E402
from napari_asymseg.store.annotations import NOT_ANNOTATED  # noqa: E402
from napari_asymseg.store.scan import Scan  # noqa: E402

HERE = Path(__file__).resolve().parent
STEPS = ["--set", "train.steps=360", "--set", "train.val_every=60"]


def keep_runs(
    cases: list[str], seeds: list[int], tag: str, paint: list[str], work: str, quick: bool = False
) -> None:
    """Train (or find) the kept runs of ``tag``."""
    import real_scans

    argv = ["--cases", *cases, "--seeds", *map(str, seeds), "--methods", "ours", "--keep"]
    argv += ["--quick"] if quick else []
    argv += [*STEPS, "--tag", tag, "--work", work, "--out", str(Path(work) / f"{tag}.json")]
    for item in paint:
        argv += ["--paint", item]
    real_scans.main(argv)


def naive(scan: Scan, on: np.ndarray, unpainted: np.ndarray) -> float:
    """The expected DSC from the network's probability of foreground (no other knowledge)."""
    p = np.asarray(scan.result("probability")[...], np.float64)[unpainted]
    return float(2 * p[on[unpainted]].sum() / max(on[unpainted].sum() + p.sum(), 1e-9))


def exact(ann: np.ndarray, pred: np.ndarray, spacing) -> float:
    """The DSC against the reference taken as exact (no uncertain outline)."""
    from napari_asymseg.evaluate import figure as f

    fill = f._fill(ann, tuple(spacing))  # the protocol paints Z planes
    ref = f.reference(ann, tuple(spacing), fill)
    return f._hard((pred > 0) & (ann == NOT_ANNOTATED), ref)


def score_run(path: Path, cv: bool, steps: int = 360) -> dict[str, Any]:
    from napari_asymseg.evaluate.figure import figure

    scan = Scan.open(path, mode="r")
    ann = scan.read_annotations()
    pred = np.asarray(scan.result("prediction")[...])
    truth = np.asarray(scan.ground_truth[...]) > 0
    unpainted = ann == NOT_ANNOTATED
    on, t = (pred > 0) & unpainted, truth & unpainted
    tp, fp, fn = int((on & t).sum()), int((on & ~t).sum()), int((~on & t).sum())
    true = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    fig = figure(ann, pred, scan.spacing)
    rec: dict[str, Any] = {
        "true": true,
        "figure": fig.dsc,
        "low": fig.low,
        "high": fig.high,
        "inside": bool(fig.low <= true <= fig.high) if fig.known else None,
        "figure_s": fig.seconds,
        "far_voxels": fig.far_voxels,
        "naive": naive(scan, pred > 0, unpainted),
        "exact": exact(ann, pred, scan.spacing),
    }
    if cv:
        rec["cv"], rec["cv_s"] = cross_validate(scan, steps)
    return rec


def cross_validate(scan: Scan, steps: int) -> tuple[float, float]:
    from napari_asymseg.config import Config
    from napari_asymseg.train.estimate import QualityEstimate, estimate_quality

    cfg = Config()
    cfg.train.steps, cfg.train.val_every = steps, max(1, steps // 6)
    t0 = time.perf_counter()
    found = [e for e in estimate_quality(scan, cfg) if isinstance(e, QualityEstimate)]
    return found[-1].dsc, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["brain1", "brain2", "colin27", "synthetic"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    p.add_argument("--tag", default="figure360")
    p.add_argument(
        "--paint",
        action="append",
        default=[],
        metavar="CASE=Z,Z/E",
        help="also a case painted on other slices (as real_scans.py; its own tag, first seed)",
    )
    p.add_argument("--cv", action="store_true", help="cross-validation too (2 trainings a run)")
    p.add_argument("--work", default=str(HERE / "results" / "real_scans-work"))
    p.add_argument("--out", default=str(HERE / "results" / "quality_figure.json"))
    p.add_argument("--quick", action="store_true", help="tiny synthetic plumbing run")
    args = p.parse_args(argv)
    if args.quick:
        args.cases, args.seeds, args.paint = ["synthetic"], [0], []
    keep_runs(args.cases, args.seeds, args.tag, [], args.work, args.quick)
    tags = [args.tag]
    for item in args.paint:  # each other painting its own tag, first seed
        case, _, slices = item.partition("=")
        tags.append(f"{args.tag}-{case}-{slices.split('/')[0].replace(',', '-')}")
        keep_runs([case], [args.seeds[0]], tags[-1], [item], args.work)
    runs: dict[str, dict[str, Any]] = {}
    for tag in tags:
        for path in sorted((Path(args.work) / "runs" / tag).glob("*.zarr")):
            case = path.stem.rsplit("-", 1)[0]
            if case in args.cases:
                cv = args.cv and tag == args.tag and path.stem.endswith(f"-{args.seeds[0]}")
                runs[f"{tag}/{path.stem}"] = score_run(path, cv, 4 if args.quick else 360)
                print(path.stem, {k: round(v, 3) for k, v in runs[f"{tag}/{path.stem}"].items()
                                  if isinstance(v, float)}, flush=True)  # fmt: skip
    known = [r for r in runs.values() if r["inside"] is not None]
    summary = {
        "runs": len(runs),
        "within_0.10": sum(abs(r["figure"] - r["true"]) <= 0.10 for r in known),
        "max_abs_error": max((abs(r["figure"] - r["true"]) for r in known), default=None),
        "truth_inside": sum(bool(r["inside"]) for r in known),
        "naive_max_abs_error": max((abs(r["naive"] - r["true"]) for r in known), default=None),
        "exact_max_abs_error": max((abs(r["exact"] - r["true"]) for r in known), default=None),
        "cv_max_abs_error": max(
            (abs(r["cv"] - r["true"]) for r in known if r.get("cv") is not None), default=None
        ),
    }
    header = ["run", "true DSC", "figure", "likely", "inside", "naive", "exact", "cv"]
    rows = [
        [k, f"{r['true']:.3f}", f"{r['figure']:.3f}", f"{r['low']:.2f}-{r['high']:.2f}",
         "yes" if r["inside"] else "NO", f"{r['naive']:.3f}", f"{r['exact']:.3f}",
         f"{r['cv']:.3f}" if r.get("cv") is not None else "-"]
        for k, r in runs.items()
    ]  # fmt: skip
    print(table(header, rows))
    print(summary)
    result = {"machine": machine(), "summary": summary, "runs": runs,
              "table": {"header": header, "rows": rows}}  # fmt: skip
    write_json(Path(args.out), finite(result))
    return result


if __name__ == "__main__":
    main()
