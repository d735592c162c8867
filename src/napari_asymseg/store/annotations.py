"""The annotation code, in one place.

A scan's ``annotations`` array holds one uint8 code per voxel:

====  =====================================================
code  meaning
====  =====================================================
0     not annotated (ignored by the loss and the scores)
1     background, painted by the user
k+1   class ``k`` (``k`` = 1..K), painted by the user
====  =====================================================

Masks (predictions, ground truth, exported files) use ``0`` background and ``k`` class ``k``;
training targets use ``-1`` ignored, ``0`` background and ``k`` class ``k``. Everything that
converts between them calls this module, never a literal offset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

NOT_ANNOTATED = 0
BACKGROUND = 1
IGNORE = -1
"""The training target's value for voxels that were not annotated."""


def code_of_class(k: int) -> int:
    """The annotation code that paints class ``k`` (0 is background)."""
    return BACKGROUND + k


def class_of_code(code: int) -> int:
    """The class (0 background) of a painted annotation code; -1 for not annotated."""
    return code - BACKGROUND


def to_target(annotations: Any) -> np.ndarray:
    """Annotation codes -> training target: -1 ignored, 0 background, k class k (int16)."""
    return np.asarray(annotations).astype(np.int16) - BACKGROUND


def to_mask(annotations: Any) -> np.ndarray:
    """Annotation codes -> mask (uint8): class k where painted as k, else 0 (not annotated and
    background both become background)."""
    ann = np.asarray(annotations)
    return np.where(ann > BACKGROUND, ann - BACKGROUND, 0).astype(np.uint8)


def from_mask(mask: Any) -> np.ndarray:
    """A full mask (0 background, k class k) -> annotation codes, every voxel annotated."""
    return (np.asarray(mask).astype(np.int64) + BACKGROUND).astype(np.uint8)


def is_annotated(annotations: Any) -> np.ndarray:
    return np.asarray(annotations) != NOT_ANNOTATED


def is_foreground(annotations: Any) -> np.ndarray:
    """Voxels painted as any class (not background, not unannotated)."""
    return np.asarray(annotations) > BACKGROUND


def counts(annotations: Any, num_classes: int | None = None) -> dict[str, Any]:
    """Annotated voxels, painted background, and voxels per class (1..K) of an array.

    ``num_classes`` (K) lists every class, painted or not; otherwise only the painted ones.
    """
    values = np.bincount(np.asarray(annotations, dtype=np.uint8).ravel(), minlength=2)
    return tally(dict(enumerate(values.tolist())), num_classes)


def tally(code_voxels: Mapping[int, int], num_classes: int | None = None) -> dict[str, Any]:
    """:func:`counts` from voxels per annotation code (``Scan.annotation_counts``)."""
    per_class = {class_of_code(c): int(n) for c, n in code_voxels.items() if c > BACKGROUND and n}
    if num_classes is not None:
        per_class = {k: per_class.get(k, 0) for k in range(1, num_classes + 1)}
    background = int(code_voxels.get(BACKGROUND, 0))
    foreground = sum(per_class.values())
    return {
        "annotated": background + foreground,
        "background": background,
        "per_class": per_class,
        "foreground": foreground,
    }
