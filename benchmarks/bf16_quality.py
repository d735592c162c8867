"""Does bf16 autocast (the engine's CPU default where the processor has bf16) cost quality?
Default training on the sample scan in bf16 and in fp32, side by side over seeds.

    .venv/bin/python benchmarks/bf16_quality.py          # ~8 min on 2 cores

For each seed, the same run (default config, 120 steps) twice, alternating: ``--amp off``
(fp32) and ``--amp bf16``. Reported per precision: the best validation DSC, the sensitivity
and precision of that validation, the DSC of the whole-scan prediction against the sample's
ground truth, and the training time; mean ± spread over seeds, and the paired difference.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, machine, mean_std, run_fit, table, write_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="default: the config's")
    parser.add_argument("--out", default="benchmarks/results/bf16_quality.json")
    args = parser.parse_args()
    os.environ.setdefault("ASYMSEG_HOME", tempfile.mkdtemp(prefix="asymseg-bench-"))
    from napari_asymseg.config import Config
    from napari_asymseg.infer.predict import predict
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.samples.sample_data import sample_scan
    from napari_asymseg.store.scan import Scan

    work = Path(tempfile.mkdtemp(prefix="asymseg-bf16-"))
    scan = Scan.open(sample_scan(work, fresh=True))
    truth = np.asarray(scan.ground_truth[...]) > 0
    records: list[dict[str, Any]] = []
    for seed in args.seeds:
        for amp in ("off", "bf16"):
            cfg = Config()
            cfg.train.seed, cfg.train.amp = seed, amp
            if args.steps:
                cfg.train.steps = args.steps
            out = work / f"seed{seed}-{amp}"
            summary = run_fit(scan, cfg, out)
            best = [h for h in load_checkpoint(out)["history"] if h["best"]][-1]
            for _ in predict(scan, out):
                pass
            pred = np.asarray(scan.result("prediction")[...]) > 0
            scan_dsc = 2 * (pred & truth).sum() / max(1, pred.sum() + truth.sum())
            rec = {
                "seed": seed,
                "amp": amp,
                "seconds": summary["seconds"],
                "val_dsc": best["dsc"],
                "val_sensitivity": best["sensitivity"],
                "val_precision": best["precision"],
                "scan_dsc": float(scan_dsc),
            }
            records.append(rec)
            print(
                f"seed {seed} {amp:>4}: val DSC {rec['val_dsc']:.3f} (sens "
                f"{rec['val_sensitivity']:.3f}, prec {rec['val_precision']:.3f}), whole-scan "
                f"DSC {rec['scan_dsc']:.3f}, {rec['seconds']:.0f} s",
                flush=True,
            )
    keys = ("val_dsc", "val_sensitivity", "val_precision", "scan_dsc", "seconds")
    rows, summary_out = [], {}
    for amp in ("off", "bf16"):
        recs = [r for r in records if r["amp"] == amp]
        stats = {k: mean_std(r[k] for r in recs) for k in keys}
        summary_out[amp] = {k: {"mean": m, "std": s} for k, (m, s, _) in stats.items()}
        rows.append([amp] + [fmt(*stats[k][:2], digits=1 if k == "seconds" else 3) for k in keys])
    diffs = {
        k: mean_std(
            b[k] - a[k]
            for a, b in zip(
                [r for r in records if r["amp"] == "off"],
                [r for r in records if r["amp"] == "bf16"],
                strict=True,
            )
        )
        for k in keys
    }
    rows.append(
        ["bf16 - fp32 (paired)"]
        + [fmt(*diffs[k][:2], digits=1 if k == "seconds" else 3) for k in keys]
    )
    print()
    print(table(["amp", *keys], rows))
    write_json(
        args.out,
        {
            "machine": machine(),
            "seeds": args.seeds,
            "summary": summary_out,
            "paired_difference": {k: {"mean": m, "std": s} for k, (m, s, _) in diffs.items()},
            "records": records,
        },
        compact=["records"],
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
