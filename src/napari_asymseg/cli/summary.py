"""What ``asymseg info`` (and the headless demo) say about a scan."""

from __future__ import annotations

from napari_asymseg.store.annotations import tally
from napari_asymseg.store.provenance import FILLED, GROWN, annotated_by_source


def scan_summary(scan) -> dict:
    """Shape, spacing and annotation statistics of a scan, as shown by ``asymseg info``.

    Annotated voxels count every annotation; ``filled`` says how many of them ``asymseg fill``
    wrote, ``grown`` how many ``asymseg grow`` (or the dock's click) wrote (the rest were
    painted by hand, or answered in review).
    """
    n = tally(scan.annotation_counts(), len(scan.classes))  # read slab by slab
    annotated, background, foreground = n["annotated"], n["background"], n["foreground"]
    per_class = {name: n["per_class"][k] for k, name in enumerate(scan.classes, 1)}
    by_source = annotated_by_source(scan.group)
    filled = tally(by_source.get(FILLED, {}), len(scan.classes))
    grown = tally(by_source.get(GROWN, {}), len(scan.classes))
    dicom = scan.dicom or {}
    return {
        "path": str(scan.path),
        "shape (Z, Y, X)": list(scan.shape),
        "spacing mm (Z, Y, X)": [round(s, 4) for s in scan.spacing],
        "orientation": scan.orientation,
        "dtype": str(scan.image.dtype),
        "multiscale levels": len(scan.image_levels),
        "classes": list(scan.classes),
        "annotated voxels": annotated,
        "annotated background": background,
        "annotated per class": per_class,
        "filled voxels": filled["annotated"],
        "filled per class": {
            name: filled["per_class"][k] for k, name in enumerate(scan.classes, 1)
        },
        "grown voxels": grown["annotated"],
        "grown per class": {name: grown["per_class"][k] for k, name in enumerate(scan.classes, 1)},
        "foreground fraction": round(foreground / annotated, 6) if annotated else None,
        "imbalance 1:N": round(background / foreground, 1) if foreground else None,
        "results": sorted(scan.results()),
        "quality figure": _figure(scan),
        "ground truth": scan.ground_truth is not None,
        "DICOM series": dicom.get("series_uid"),
        "DICOM images": len(dicom.get("files", [])) or None,
    }


def _figure(scan) -> str | None:
    """The stored prediction's quality figure on the unpainted voxels, as it was last shown."""
    from napari_asymseg.store.layout import QUALITY_FIGURE

    shown = scan.read_attr(QUALITY_FIGURE)
    if not shown:
        return None
    if shown.get("dsc") is None:
        return f"unknown: {shown.get('note', '')}"
    return f"DSC about {shown['dsc']:.2f} (likely {shown['low']:.2f}-{shown['high']:.2f})"


def describe(scan) -> str:
    """One line: shape, spacing and classes (what ``import`` and ``sample`` print)."""
    sp = " x ".join(f"{s:g}" for s in scan.spacing)
    line = f"shape {scan.shape}, spacing {sp} mm, classes {', '.join(scan.classes)}"
    if scan.dicom:
        d = scan.dicom
        line += f"; from {d['modality'] or 'DICOM'} series {d['series_uid']}"
    return line
