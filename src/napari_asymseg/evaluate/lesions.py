"""Lesion-wise scores: how many lesions, which were found, which were missed, how large.

Voxel DSC hides what a clinician asks of small-lesion work: one large lesion found and three
small ones missed can score well. Here a lesion is a 26-connected component of one class (as
in the dock's prediction summary). A reference lesion is **detected** when at least one
predicted voxel of its class lies in it, and **missed** otherwise; a predicted lesion that
touches no reference lesion of its class is **false**. This is the overlap criterion of the
lesion-detection literature (e.g. the MS-lesion challenges' lesion-wise true positive rate);
each detected lesion also gets its own sensitivity (the share of its voxels predicted).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_STRUCTURE = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class Lesion:
    """One connected component: its size, volume, where it is and how far it extends."""

    voxels: int
    millilitres: float
    center: tuple[int, int, int]  # voxel (z, y, x) of its centre of mass, rounded
    extent_mm: tuple[float, float, float]  # bounding box size along z, y, x
    sensitivity: float = float("nan")  # reference lesions: share of its voxels predicted


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 26-connected components of ``mask``; (labels, count)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=_STRUCTURE)
    return labels, int(count)


def describe(
    labels: np.ndarray, count: int, spacing, covered: np.ndarray | None = None
) -> list[Lesion]:
    """A :class:`Lesion` per label 1..count; ``covered`` (bool) gives each its sensitivity."""
    from scipy import ndimage

    if count == 0:
        return []
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    centers = ndimage.center_of_mass(labels > 0, labels, np.arange(1, count + 1))
    if covered is not None:
        hits = np.bincount(labels[covered], minlength=count + 1)[1:]
    out = []
    for k, box in enumerate(ndimage.find_objects(labels)):
        assert box is not None
        extent = tuple(float((s.stop - s.start) * sp) for s, sp in zip(box, spacing, strict=True))
        n = int(sizes[k])
        out.append(
            Lesion(
                voxels=n,
                millilitres=n * voxel_ml,
                center=tuple(int(round(c)) for c in centers[k]),  # type: ignore[arg-type]
                extent_mm=extent,  # type: ignore[arg-type]
                sensitivity=int(hits[k]) / n if covered is not None else float("nan"),
            )
        )
    return out


def lesion_report(
    pred: np.ndarray, spacing, num_classes: int, ref: np.ndarray | None = None
) -> dict[int, dict[str, Any]]:
    """Per foreground class ``c`` (1..num_classes): the predicted lesions, and with ``ref`` the
    reference lesions, which were detected or missed, and the false ones.

    Returns ``{c: {"predicted": [...], "reference": [...], "detected": n, "missed": n,
    "false": n, "lesion_sensitivity": x, "lesion_precision": x}}`` (lists of dicts of
    :class:`Lesion`; the counts only with a reference).
    """
    report: dict[int, dict[str, Any]] = {}
    for c in range(1, num_classes + 1):
        p = pred == c
        p_labels, p_count = components(p)
        entry: dict[str, Any] = {
            "predicted": [asdict(x) for x in describe(p_labels, p_count, spacing)]
        }
        if ref is not None:
            r = ref == c
            r_labels, r_count = components(r)
            reference = describe(r_labels, r_count, spacing, covered=p)
            detected = sum(x.sensitivity > 0 for x in reference)
            true_pred = np.unique(p_labels[r & p])
            false = p_count - int(np.count_nonzero(true_pred))
            entry.update(
                reference=[asdict(x) | {"detected": x.sensitivity > 0} for x in reference],
                detected=int(detected),
                missed=int(r_count - detected),
                false=int(false),
                lesion_sensitivity=detected / r_count if r_count else float("nan"),
                lesion_precision=(p_count - false) / p_count if p_count else float("nan"),
            )
            # which predicted lesions are false, in the order of "predicted"
            hit = np.zeros(p_count + 1, bool)
            hit[true_pred] = True
            for k, item in enumerate(entry["predicted"], start=1):
                item["false"] = not bool(hit[k])
        report[c] = entry
    return report


def totals(entry: dict[str, Any]) -> dict[str, float]:
    """A class's sums: predicted lesions and their mL, and (with a reference) the mL missed
    and the mL of false lesions; what the CLI's line and the dock's summary say."""
    predicted = entry["predicted"]
    sums = {"predicted": len(predicted), "ml": sum(x["millilitres"] for x in predicted)}
    if "reference" in entry:
        sums["missed_ml"] = sum(x["millilitres"] for x in entry["reference"] if not x["detected"])
        sums["false_ml"] = sum(x["millilitres"] for x in predicted if x.get("false"))
    return sums


def summary_line(name: str, entry: dict[str, Any]) -> str:
    """One line of the CLI for a class: ``lesion: 5 in the reference, 4 detected, ...``."""
    t = totals(entry)
    if "detected" not in entry:
        return f"{name}: {t['predicted']} predicted lesion(s), {t['ml']:.2f} mL in all"
    return (
        f"{name}: {len(entry['reference'])} lesion(s) in the reference, {entry['detected']} "
        f"detected, {entry['missed']} missed ({t['missed_ml']:.2f} mL), {entry['false']} false "
        f"({t['false_ml']:.2f} mL); {t['predicted']} predicted, {t['ml']:.2f} mL in all"
    )
