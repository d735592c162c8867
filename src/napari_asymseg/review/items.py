"""A review queue item, and the names of its kinds and answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

MISS = "miss"
FALSE_ALARM = "false_alarm"
KINDS = (MISS, FALSE_ALARM)
OPEN, LESION, NOT_LESION = "open", "lesion", "not_lesion"
ANSWERS = (LESION, NOT_LESION)


class BoxRecord:
    """``as_dict`` / ``from_dict`` (JSON: lists for the tuples) and the box of a region's
    dataclass with a ``center`` and a ``bbox``: a flag (:mod:`napari_asymseg.review.flags`) or a
    queue item."""

    bbox: tuple[int, int, int, int, int, int]  # z0, y0, x0, z1, y1, x1 (end exclusive)

    def contains(self, point: Sequence[int]) -> bool:
        z0, y0, x0, z1, y1, x1 = self.bbox
        z, y, x = point
        return z0 <= z < z1 and y0 <= y < y1 and x0 <= x < x1

    @property
    def box(self) -> tuple[slice, slice, slice]:
        z0, y0, x0, z1, y1, x1 = self.bbox
        return slice(z0, z1), slice(y0, y1), slice(x0, x1)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        d["center"], d["bbox"] = list(d["center"]), list(d["bbox"])
        return d

    @classmethod
    def fields_of(cls, d: dict[str, Any]) -> dict[str, Any]:
        """The constructor's keywords in ``d``: unknown keys dropped, the tuples rebuilt."""
        keys = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        kwargs = {k: v for k, v in d.items() if k in keys}
        kwargs["center"] = tuple(int(v) for v in d["center"])
        kwargs["bbox"] = tuple(int(v) for v in d["bbox"])
        return kwargs


@dataclass(frozen=True)
class Item(BoxRecord):
    """One question to the user: is this region lesion?"""

    id: int
    rank: int
    kind: str  # MISS or FALSE_ALARM
    center: tuple[int, int, int]  # a voxel of the region: where the viewer goes
    bbox: tuple[int, int, int, int, int, int]  # z0, y0, x0, z1, y1, x1 (end exclusive)
    voxels: int  # unannotated voxels of the region
    gain: float  # expected voxels an answer corrects
    doubt: float  # miss: highest risk; false alarm: 1 - p exp(-d / L) (review.false_alarms)
    label: int = 1  # false alarm: the predicted class (of its centre)
    known_misses: int = 0  # miss: painted lesion voxels the model misses here
    status: str = OPEN  # OPEN, LESION or NOT_LESION

    @property
    def answered(self) -> bool:
        return self.status != OPEN

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Item:
        item = cls(**cls.fields_of(d))
        if item.kind not in KINDS or item.status not in (OPEN, *ANSWERS):
            raise ValueError(f"unknown kind {item.kind!r} or status {item.status!r}")
        return item
