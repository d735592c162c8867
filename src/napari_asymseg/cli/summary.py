"""cli.summary."""

from __future__ import annotations


def scan_summary(scan) -> dict:
    """Shape, spacing and annotation statistics of a scan, as shown by ``asymseg info``."""
    counts = scan.annotation_counts()
    annotated = sum(c for v, c in counts.items() if v > 0)
    foreground = sum(c for v, c in counts.items() if v > 1)
    per_class = {name: counts.get(k + 2, 0) for k, name in enumerate(scan.classes)}
    return {
        "path": str(scan.path),
        "shape (Z, Y, X)": list(scan.shape),
        "spacing mm (Z, Y, X)": [round(s, 4) for s in scan.spacing],
        "orientation": scan.orientation,
        "dtype": str(scan.image.dtype),
        "multiscale levels": len(scan.image_levels),
        "classes": list(scan.classes),
        "annotated voxels": annotated,
        "annotated background": counts.get(1, 0),
        "annotated per class": per_class,
        "foreground fraction": round(foreground / annotated, 6) if annotated else None,
        "imbalance 1:N": round(counts.get(1, 0) / foreground, 1) if foreground else None,
        "results": sorted(scan.results()),
        "ground truth": scan.ground_truth is not None,
    }


def _describe(scan) -> str:
    sp = " x ".join(f"{s:g}" for s in scan.spacing)
    return f"shape {scan.shape}, spacing {sp} mm, classes {', '.join(scan.classes)}"
