"""The headless main job: the same workflow as the viewer demo, written to a folder.

Without a display (a server, CI), ``asymseg demo`` opens the sample scan, reports it, exports
the annotations and the reference mask, and writes a picture of annotated slices.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_asymseg.sample_data import sample_scan
from napari_asymseg.store import Scan


def montage(scan: Scan, n: int = 4) -> np.ndarray:
    """RGB picture of ``n`` annotated slices: image in grey, annotated background tinted
    blue, annotated foreground red, and the reference outline (if any) in yellow."""
    ann = scan.read_annotations()
    annotated = np.flatnonzero((ann > 0).any(axis=(1, 2)))
    if annotated.size == 0:
        annotated = np.arange(scan.shape[0])
    picks = annotated[np.linspace(0, annotated.size - 1, min(n, annotated.size)).astype(int)]
    gt = scan.ground_truth
    tiles = []
    for z in picks:
        img = np.asarray(scan.image[z], dtype=np.float32)
        lo, hi = np.percentile(img, [1, 99.5])
        grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        a = ann[z]
        rgb[a == 1] = 0.75 * rgb[a == 1] + 0.25 * np.array([0.3, 0.5, 1.0])
        rgb[a >= 2] = 0.4 * rgb[a >= 2] + 0.6 * np.array([1.0, 0.15, 0.15])
        if gt is not None:
            g = np.asarray(gt[z]) > 0
            edge = g & ~(
                np.roll(g, 1, 0) & np.roll(g, -1, 0) & np.roll(g, 1, 1) & np.roll(g, -1, 1)
            )
            rgb[edge] = (1.0, 0.9, 0.1)
        tiles.append(rgb)
    return (np.concatenate(tiles, axis=1) * 255).astype(np.uint8)


def run_headless(out: Path) -> dict:
    """Run the demo workflow without a display; returns (and writes) a summary."""
    from PIL import Image

    from napari_asymseg.cli import scan_summary
    from napari_asymseg.export import export_mask

    out.mkdir(parents=True, exist_ok=True)
    scan = Scan.open(sample_scan())
    summary = scan_summary(scan)
    for what in ("annotations", "ground_truth"):
        export_mask(scan, out / f"{what}.nii.gz", what=what, overwrite=True)
    picture = out / "sample-slices.png"
    Image.fromarray(montage(scan)).save(picture)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"sample scan: {scan.path}")
    for key, value in summary.items():
        print(f"{key:>22}: {value}")
    print(
        f"results written to {out.resolve()} (summary.json, annotations.nii.gz, "
        f"ground_truth.nii.gz, {picture.name})"
    )
    return summary
