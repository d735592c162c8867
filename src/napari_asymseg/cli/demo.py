"""The headless main job: the same workflow as the viewer demo, written to a folder.

Without a display (a server, CI), ``asymseg demo`` opens the sample scan, trains a model on its
few annotated slices, predicts the whole scan (with its false-negative heatmap), ranks the
regions where lesion is probably missed, scores the prediction against the reference, exports
the masks, and writes a picture.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_asymseg.samples.sample_data import sample_scan
from napari_asymseg.store.annotations import BACKGROUND, is_annotated, is_foreground
from napari_asymseg.store.atomic import write_text, write_with
from napari_asymseg.store.scan import Scan


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    return mask & ~inner


def montage(scan: Scan, n: int = 4) -> np.ndarray:
    """RGB picture of ``n`` slices: image in grey, annotated background tinted blue,
    annotated foreground red, the reference outline yellow, the prediction outline cyan.

    With a prediction, the slices are the ones with the most reference foreground that were
    not annotated (what the model had to find on its own); otherwise annotated slices.
    """
    ann = scan.read_annotations()
    gt = scan.ground_truth
    pred = scan.result("prediction")
    annotated = is_annotated(ann).any(axis=(1, 2))
    if pred is not None and gt is not None:
        area = (np.asarray(gt[...]) > 0).sum(axis=(1, 2)) * ~annotated
        candidates = np.sort(np.argsort(area)[::-1][:n])
    else:
        candidates = np.flatnonzero(annotated) if annotated.any() else np.arange(scan.shape[0])
    picks = candidates[np.linspace(0, candidates.size - 1, min(n, candidates.size)).astype(int)]
    tiles = []
    for z in picks:
        img = np.asarray(scan.image[z], dtype=np.float32)
        lo, hi = np.percentile(img, [1, 99.5])
        grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        a = ann[z]
        bg, fg = a == BACKGROUND, is_foreground(a)
        rgb[bg] = 0.75 * rgb[bg] + 0.25 * np.array([0.3, 0.5, 1.0])
        rgb[fg] = 0.4 * rgb[fg] + 0.6 * np.array([1.0, 0.15, 0.15])
        if gt is not None:
            rgb[_outline(np.asarray(gt[z]) > 0)] = (1.0, 0.9, 0.1)
        if pred is not None:
            rgb[_outline(np.asarray(pred[z]) > 0)] = (0.1, 1.0, 1.0)
        tiles.append(rgb)
    return (np.concatenate(tiles, axis=1) * 255).astype(np.uint8)


def run_headless(out: Path, steps: int | None = None) -> dict:
    """Run the demo workflow without a display; returns (and writes) a summary."""
    from napari_asymseg.cli.summary import scan_summary
    from napari_asymseg.evaluate.scoring import evaluate_scan
    from napari_asymseg.infer.predict import predict
    from napari_asymseg.io.exporters import export_mask
    from napari_asymseg.review.flags import flag_scan

    out.mkdir(parents=True, exist_ok=True)
    scan = Scan.open(sample_scan())
    summary = scan_summary(scan)
    print(f"sample scan: {scan.path}")
    for key, value in summary.items():
        print(f"{key:>22}: {value}")
    training = _train(scan, out / "model", steps)
    if training is not None:
        summary["training"] = training
    for _ in predict(scan, out / "model"):
        pass
    flags = flag_scan(scan)
    summary["flags"] = [f.as_dict() for f in flags[:10]]
    print(f"{len(flags)} region(s) where lesion is probably missed; the top three:")
    for f in flags[:3]:
        print(f"  #{f.rank} slice {f.center[0]}: ~{f.expected_missed:.0f} voxels expected missed")
    summary["whole-scan evaluation"] = evaluate_scan(scan)["classes"]
    for what in ("prediction", "annotations", "ground_truth"):
        export_mask(scan, out / f"{what}.nii.gz", what=what, overwrite=True)
    picture = out / "sample-slices.png"
    _save_picture(scan, picture)
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


def _train(scan: Scan, model_dir: Path, steps: int | None) -> dict | None:
    """Train with the default config (``steps`` steps); the best score and the curves."""
    from napari_asymseg.config import Config
    from napari_asymseg.train.estimate import QualityEstimate, train_and_estimate
    from napari_asymseg.train.events import EpochEnd, Finished

    cfg = Config()
    if steps is not None:
        cfg.train.steps = steps
        cfg.train.val_every = max(1, min(cfg.train.val_every, steps))
    print(f"training {cfg.loss.name} for {cfg.train.steps} steps on the annotated slices ...")
    curves, training = [], None
    for event in train_and_estimate(scan, cfg, model_dir):
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
            training = {
                "best_dsc": event.best_dsc,
                "best_step": event.best_step,
                "seconds": round(event.seconds, 1),
                "curves": curves,
            }
            print("estimating the quality on unpainted slices (cross-validation) ...")
        elif isinstance(event, QualityEstimate) and training is not None:
            training["estimated_unpainted"] = {
                "dsc": event.dsc,
                "sensitivity": event.sensitivity,
                "precision": event.precision,
                "how": event.note,
            }
            print(f"  {event.line()}")
    return training


def _save_picture(scan: Scan, path: Path) -> None:
    """The montage as a PNG, 3x nearest neighbour: thin outlines stay visible, voxels honest."""
    from PIL import Image

    tiles = Image.fromarray(montage(scan))
    big = tiles.resize((tiles.width * 3, tiles.height * 3), Image.Resampling.NEAREST)
    write_with(path, lambda f: big.save(f, format="PNG"))
