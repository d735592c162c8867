"""The headless demo's picture: a few slices of the scan with the paint, the reference and the
prediction drawn on them, each tile captioned with its slice and score, and a legend.

The colours are the dock's (:mod:`napari_asymseg.io.palette`, chosen to stay apart under
colour-vision deficiency); the reference, which the dock does not show, is drawn in yellow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_asymseg.io.palette import PAINT, PAINT_BACKGROUND, PREDICTION, YELLOW, rgba
from napari_asymseg.store.annotations import BACKGROUND, is_annotated, is_foreground
from napari_asymseg.store.atomic import write_with
from napari_asymseg.store.scan import Scan

REFERENCE = YELLOW
LEGEND = (
    (PAINT, "painted lesion"),
    (PAINT_BACKGROUND, "painted background"),
    (REFERENCE, "reference (outline)"),
    (PREDICTION, "prediction (outline)"),
)
SCALE = 3  # nearest neighbour: thin outlines stay visible, voxels honest


def _rgb(hex_color: str) -> np.ndarray:
    return np.array(rgba(hex_color)[:3])


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    return mask & ~inner


def pick_slices(scan: Scan, n: int = 4) -> np.ndarray:
    """With a prediction and a reference: the ``n`` slices with the most reference lesion that
    nobody painted (what the model had to find on its own); otherwise painted slices."""
    ann = scan.read_annotations()
    gt, pred = scan.ground_truth, scan.result("prediction")
    annotated = is_annotated(ann).any(axis=(1, 2))
    if pred is not None and gt is not None:
        area = (np.asarray(gt[...]) > 0).sum(axis=(1, 2)) * ~annotated
        candidates = np.sort(np.argsort(area)[::-1][:n])
    else:
        candidates = np.flatnonzero(annotated) if annotated.any() else np.arange(scan.shape[0])
    return candidates[np.linspace(0, candidates.size - 1, min(n, candidates.size)).astype(int)]


def tile(scan: Scan, z: int, ann: np.ndarray) -> tuple[np.ndarray, str]:
    """One slice in RGB (0..1) and its caption: ``slice 12 · unpainted · DSC 0.81``."""
    img = np.asarray(scan.image[z], dtype=np.float32)
    lo, hi = np.percentile(img, [1, 99.5])
    grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    bg, fg = ann[z] == BACKGROUND, is_foreground(ann[z])
    rgb[bg] = 0.75 * rgb[bg] + 0.25 * _rgb(PAINT_BACKGROUND)
    rgb[fg] = 0.4 * rgb[fg] + 0.6 * _rgb(PAINT)
    caption = f"slice {z} · {'painted' if is_annotated(ann[z]).any() else 'unpainted'}"
    gt, pred = scan.ground_truth, scan.result("prediction")
    ref = np.asarray(gt[z]) > 0 if gt is not None else None
    mine = np.asarray(pred[z]) > 0 if pred is not None else None
    if ref is not None:
        rgb[_outline(ref)] = _rgb(REFERENCE)
    if mine is not None:
        rgb[_outline(mine)] = _rgb(PREDICTION)
    if ref is not None and mine is not None and (ref.any() or mine.any()):
        dsc = 2 * (ref & mine).sum() / (ref.sum() + mine.sum())
        caption += f" · DSC {dsc:.2f}"
    return rgb, caption


def save_picture(scan: Scan, path: Path, n: int = 4) -> list[str]:
    """Write the montage as a PNG with captions and a legend; returns the captions."""
    from PIL import Image, ImageDraw

    ann = scan.read_annotations()
    tiles = [tile(scan, int(z), ann) for z in pick_slices(scan, n)]
    strip = (np.concatenate([t for t, _ in tiles], axis=1) * 255).astype(np.uint8)
    image = Image.fromarray(strip)
    image = image.resize((image.width * SCALE, image.height * SCALE), Image.Resampling.NEAREST)
    line = 14
    canvas = Image.new("RGB", (image.width, image.height + 3 * line + 8), "black")
    canvas.paste(image, (0, line + 2))
    draw = ImageDraw.Draw(canvas)
    width = image.width // max(len(tiles), 1)
    for k, (_, caption) in enumerate(tiles):
        draw.text((k * width + 4, 1), caption, fill="white")
    x, y = 4, image.height + line + 6
    for color, name in LEGEND:
        draw.rectangle((x, y + 2, x + 10, y + 12), fill=color)
        draw.text((x + 14, y), name, fill="white")
        x += 14 + int(draw.textlength(name)) + 16
        if x > canvas.width - 140:  # next line
            x, y = 4, y + line
    write_with(path, lambda f: canvas.save(f, format="PNG"))
    return [caption for _, caption in tiles]
