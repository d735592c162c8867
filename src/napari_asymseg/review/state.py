"""The review state stored in a scan: the review queue, its answers, and the checks on them.

One state for both kinds of item: the suspected misses (the flags of
:mod:`napari_asymseg.review.flags`) are the queue's ``miss`` items, so a miss answered in the
dock, by ``asymseg review`` or by ``asymseg flag --done`` is answered for all three. Building
the queue is :mod:`napari_asymseg.review.queue`; this module only reads, checks and writes
what is stored, so that the flags (which :mod:`~napari_asymseg.review.queue` builds on) can
read which misses are answered without an import cycle.

Scans written before the queue held the flags' state kept a ``flags`` list of their own with
``done`` marks; :func:`painted` still reads those marks, and the next queue built takes them
in as answered misses (:func:`legacy_done`) and then drops the old list, so no mark is lost.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from napari_asymseg.errors import ScanError
from napari_asymseg.review.items import LESION, MISS, Item
from napari_asymseg.store.scan import Scan, read

QUEUE_KEY = "queue"
LEGACY_FLAGS_KEY = "flags"
"""Where ``asymseg flag`` stored its flags before they became the queue's misses."""
STALE_FIX_CLI = "run asymseg review SCAN again, then answer"
"""The CLI's fix for a queue older than the prediction (the dock offers to rank again)."""


class StaleQueue(ScanError):
    """The stored queue was ranked on another prediction than the stored one."""


@dataclass(frozen=True)
class Queue:
    """The ranked items of a scan, and the prediction they were made from."""

    items: tuple[Item, ...]
    prediction: str  # digest of the prediction the items describe

    @property
    def open(self) -> list[Item]:
        return [i for i in self.items if not i.answered]

    def item(self, item_id: int) -> Item:
        for i in self.items:
            if i.id == item_id:
                return i
        raise ScanError(f"the review queue has no item {item_id}: see the ids with asymseg review")

    def as_dict(self) -> dict[str, Any]:
        return {"prediction": self.prediction, "items": [i.as_dict() for i in self.items]}


def prediction_digest(prediction: np.ndarray) -> str:
    """A short fingerprint of a prediction: the queue refuses answers on a newer one."""
    return hashlib.blake2b(np.ascontiguousarray(prediction).tobytes(), digest_size=8).hexdigest()


# ----------------------------------------------------------------------------- the store
def stored_queue(scan: Scan) -> Queue | None:
    """The queue last written to the scan, or None."""
    raw = scan.read_attr(QUEUE_KEY)
    if raw is None:
        return None
    try:
        return Queue(tuple(Item.from_dict(d) for d in raw["items"]), str(raw["prediction"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ScanError(
            f"the review queue stored in {scan.path.name} is damaged ({exc}): run asymseg "
            "review again"
        ) from None


def save_queue(scan: Scan, queue: Queue) -> None:
    scan.write_attr(QUEUE_KEY, queue.as_dict())


def check_current(
    scan: Scan, queue: Queue, prediction: Any = None, *, fix: str = STALE_FIX_CLI
) -> None:
    """Refuse a queue ranked on another prediction than the stored one (``prediction``, read
    from the scan if not given): its regions say what an older model called lesion, so an
    answer would paint where the current prediction may say the opposite. The CLI's answers
    and the dock's loading share this check; ``fix`` is the one line's second half."""
    if prediction is None:
        prediction = scan.result("prediction")
        if prediction is None:
            raise ScanError(
                f"{scan.path.name} has no prediction yet: predict it with a model first"
            )
        prediction = read(prediction)
    if prediction_digest(prediction) != queue.prediction:
        raise StaleQueue(
            f"the review queue of {scan.path.name} is older than its prediction: {fix}"
        )


def set_answered(scan: Scan, item: Item, status: str) -> Queue:
    """Store ``item``'s status (the dock writes the annotation itself, undoably); returns the
    queue. ``status`` OPEN takes an answer back."""
    queue = stored_queue(scan)
    if queue is None:
        raise ScanError(f"{scan.path.name} has no review queue yet: compute it first")
    queue.item(item.id)
    queue = replace(
        queue,
        items=tuple(replace(i, status=status) if i.id == item.id else i for i in queue.items),
    )
    save_queue(scan, queue)
    return queue


# ----------------------------------------------------------------------------- answered misses
def is_painted(item: Item) -> bool:
    """A suspected miss answered Lesion: the user painted it; nothing was written for it."""
    return item.kind == MISS and item.status == LESION


def painted(scan: Scan) -> list[Item]:
    """The suspected misses answered Lesion (the queue's, and the old flags' ``done`` ones):
    a region at risk whose centre lies in one of their boxes is answered, not a new flag."""
    queue = stored_queue(scan)
    return [i for i in (queue.items if queue else ()) if is_painted(i)] + legacy_done(scan)


def legacy_done(scan: Scan) -> list[Item]:
    """The flags an older ``asymseg flag --done`` marked, as misses answered Lesion (new ids
    come with the next ranking). Entries that do not parse are skipped: they name no region."""
    out = []
    for d in scan.read_attr(LEGACY_FLAGS_KEY) or []:
        try:
            if d.get("status") != "done":
                continue
            fields = Item.fields_of(d)
            out.append(
                Item(
                    id=0,
                    rank=0,
                    kind=MISS,
                    center=fields["center"],
                    bbox=fields["bbox"],
                    voxels=int(d["voxels"]),
                    gain=float(d["expected_missed"]),
                    doubt=float(d["max_risk"]),
                    known_misses=int(d.get("known_misses", 0)),
                    status=LESION,
                )
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    return out
