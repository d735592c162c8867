"""Evaluate a scan's prediction (or annotations) against a reference mask."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from napari_asymseg.errors import ScanError
from napari_asymseg.evaluate.lesions import lesion_report
from napari_asymseg.evaluate.metrics import class_scores
from napari_asymseg.io.exporters import mask_from_scan
from napari_asymseg.io.importers import read_volume
from napari_asymseg.store.scan import Scan, read


def evaluate_scan(
    scan: Scan | str | os.PathLike,
    *,
    truth: str | os.PathLike | None = None,
    what: str = "prediction",
    reference_optional: bool = False,
) -> dict[str, Any]:
    """DSC, sensitivity and precision per class of ``what`` against ``truth``, and the
    lesion-wise report (:mod:`~napari_asymseg.evaluate.lesions`).

    ``truth`` is a mask file on the scan's grid (NIfTI, NRRD, TIFF...); by default the scan's
    own ``ground_truth``. With ``reference_optional`` and no reference, the report holds the
    predicted lesions only (``classes`` empty).
    """
    scan = scan if isinstance(scan, Scan) else Scan.open(scan, mode="r")
    pred = mask_from_scan(scan, what)
    if truth is not None:
        ref = read_volume(truth).data
    elif scan.ground_truth is not None:
        ref = read(scan.ground_truth)
    elif reference_optional:
        return _report(scan, what, {}, lesion_report(pred, scan.spacing, len(scan.classes)))
    else:
        raise ScanError(
            f"{scan.path.name} has no ground truth: pass --truth MASK_FILE (or --lesions for "
            "the predicted lesions alone)"
        )
    if ref.shape != pred.shape:
        raise ScanError(
            f"the reference mask is {ref.shape} but the scan is {pred.shape}: use a mask on "
            "the scan's grid"
        )
    ref = ref.astype(np.int64)
    scores = class_scores(pred, ref, scan.num_classes)
    lesions = lesion_report(pred, scan.spacing, len(scan.classes), ref)
    return _report(scan, what, scores, lesions)


def _report(scan: Scan, what: str, scores, lesions) -> dict[str, Any]:
    return {
        "scan": str(scan.path),
        "what": what,
        "lesions": {scan.classes[c - 1]: entry for c, entry in lesions.items()},
        "classes": {
            scan.classes[c - 1]: {
                "dsc": s.dsc,
                "sensitivity": s.sensitivity,
                "precision": s.precision,
                "tp": s.tp,
                "fp": s.fp,
                "fn": s.fn,
            }
            for c, s in scores.items()
        },
    }
