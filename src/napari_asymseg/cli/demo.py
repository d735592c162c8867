"""The headless main job: the same workflow as the viewer demo, written to a folder.

Without a display (a server, CI), ``asymseg demo`` opens the sample scan, trains a model on its
few annotated slices, predicts the whole scan (with its false-negative heatmap), ranks the
regions where lesion is probably missed, scores the prediction against the reference, exports
the masks, and writes a picture.
"""

from __future__ import annotations

import json
from pathlib import Path

from napari_asymseg.cli.picture import save_picture
from napari_asymseg.samples.sample_data import sample_scan
from napari_asymseg.store.atomic import write_text
from napari_asymseg.store.scan import Scan


def run_headless(out: Path, steps: int | None = None) -> dict:
    """Run the demo workflow without a display; returns (and writes) a summary."""
    from napari_asymseg.cli.summary import scan_summary
    from napari_asymseg.evaluate.scoring import evaluate_scan
    from napari_asymseg.io.exporters import export_mask
    from napari_asymseg.review.flags import flag_scan

    out.mkdir(parents=True, exist_ok=True)
    scan = Scan.open(sample_scan())
    summary = scan_summary(scan)
    print(f"sample scan: {scan.path}")
    for key, value in summary.items():
        print(f"{key:>22}: {value}")
    training = _train(scan, out / "model", steps)  # trains, predicts, and the figure
    if training is not None:
        summary["training"] = training
    flags = flag_scan(scan)
    summary["flags"] = [f.as_dict() for f in flags[:10]]
    print(f"{len(flags)} region(s) where lesion is probably missed; the top three:")
    for f in flags[:3]:
        print(f"  #{f.rank} slice {f.center[0]}: ~{f.expected_missed:.0f} voxels expected missed")
    summary["whole-scan evaluation"] = evaluate_scan(scan)["classes"]
    for what in ("prediction", "annotations", "ground_truth"):
        export_mask(scan, out / f"{what}.nii.gz", what=what, overwrite=True)
    picture = out / "sample-slices.png"
    summary["picture"] = save_picture(scan, picture)
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    scores = summary["whole-scan evaluation"][scan.classes[0]]
    print(
        f"whole scan against the reference: DSC {scores['dsc']:.3f}, sensitivity "
        f"{scores['sensitivity']:.3f}, precision {scores['precision']:.3f}"
    )
    print(
        f"results written to {out.resolve()} (summary.json, model/, prediction.nii.gz, "
        f"annotations.nii.gz, ground_truth.nii.gz, {picture.name})"
    )
    return summary


def run_length(cfg) -> str:
    """``300 steps``, or for a planned run ``about 2 min (steps planned for this machine)``."""
    if cfg.train.steps:
        return f"{cfg.train.steps} steps"
    return f"about {cfg.train.minutes:g} min (steps planned for this machine)"


def _train(scan: Scan, model_dir: Path, steps: int | None) -> dict | None:
    """Train with the default config (``steps`` steps) and predict the scan; the best score,
    the curves and the quality figure on the unpainted voxels."""
    from napari_asymseg.config import Config
    from napari_asymseg.infer.predict import PredictionDone
    from napari_asymseg.train.estimate import train_and_estimate
    from napari_asymseg.train.events import EpochEnd, Finished

    cfg = Config()
    if steps is not None:
        cfg.train.steps = steps
        cfg.train.val_every = max(1, min(cfg.train.val_every, steps))
    print(f"training {cfg.loss.name} for {run_length(cfg)} on the annotated slices ...")
    curves, training = [], None
    # the demo's own results folder: each run of the demo replaces its model (documented)
    for event in train_and_estimate(scan, cfg, model_dir, overwrite=True):
        if isinstance(event, EpochEnd):
            curves.append(
                {
                    "step": event.step,
                    "dsc": event.dsc,
                    "sensitivity": event.sensitivity,
                    "precision": event.precision,
                    "train_loss": event.train_loss,
                }
            )
            print(f"  step {event.step}: training loss {event.train_loss:.4f}")
        elif isinstance(event, Finished):
            print(f"  trained {event.steps_done} steps in {event.seconds:.0f} s")
            training = {
                "best_dsc": event.best_dsc,
                "best_step": event.best_step,
                "seconds": round(event.seconds, 1),
                "curves": curves,
            }
            print("predicting the scan ...")
        elif isinstance(event, PredictionDone) and training is not None:
            figure = event.figure
            if figure is not None:
                training["quality_figure"] = figure.as_dict()
                print(f"  {figure.line()}")
    return training
