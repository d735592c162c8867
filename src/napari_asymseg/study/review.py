"""The review queue across a study's scans: which scan and region to look at next.

Each predicted scan has its own queue (:mod:`napari_asymseg.review.queue`), whose items are
ranked by the voxels an answer corrects (their expected gain). The study's queue puts the open
items of every scan in one list by that same measure, so a region of brain2 that an answer
corrects 300 voxels of comes before one of brain1 worth 40, and within a scan the order is the
scan's own. Answers go to the scan's queue (:func:`answer_study`), so the dock, ``asymseg
review SCAN`` and ``asymseg review STUDY`` share one review state.

A scan's stored queue is used as it is; one that is missing or older than the scan's
prediction is ranked anew (answers kept, as :func:`~napari_asymseg.review.queue.build_queue`
keeps them). Unpredicted scans have nothing to review and are left out; a missing scan folder
is skipped with a line naming it (:attr:`StudyQueue.skipped`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from napari_asymseg.errors import ClearError
from napari_asymseg.review.items import MISS, Item
from napari_asymseg.review.state import Queue, StaleQueue, check_current, stored_queue
from napari_asymseg.store.scan import Scan
from napari_asymseg.study.predict import open_study, scan_lock

if TYPE_CHECKING:
    from napari_asymseg.study.study import Study


class StudyItem(NamedTuple):
    """One open item of one scan's review queue."""

    scan: str  # the scan's name in the study
    item: Item

    def line(self, width: int = 0) -> str:
        """``brain2  #3   suspected miss         z=4    y=12   x=12     36 voxels, ...`` (the
        scan's name padded to ``width``, to line up a list)."""
        i = self.item
        z, y, x = i.center
        what = "suspected miss       " if i.kind == MISS else "suspected false alarm"
        return (
            f"{self.scan:<{width}}  #{i.id:<3} {what} z={z:<4} y={y:<4} x={x:<4} "
            f"{i.voxels:7d} voxels, expected gain {i.gain:8.1f}"
        )


class StudyQueue(list[StudyItem]):
    """The ranked open items of a study (a list), with the scans left out and why."""

    def __init__(self, items=(), skipped: list[str] | None = None, predicted: int = 0) -> None:
        super().__init__(items)
        self.skipped = list(skipped or ())  # one line per scan that could not be read
        self.predicted = predicted  # the scans with a queue


def order(items: list[StudyItem], names: list[str]) -> list[StudyItem]:
    """The items by the voxels an answer corrects, as a scan's queue orders its own (misses
    first on a tie); then by scan, in the study's order, and the scan's own rank."""
    place = {n: k for k, n in enumerate(names)}
    return sorted(
        items, key=lambda s: (-s.item.gain, s.item.kind != MISS, place[s.scan], s.item.rank)
    )


def current_queue(scan: Scan, max_items: int = 100, *, lock: str | None = None) -> Queue | None:
    """The scan's queue on its current prediction: the stored one, or ranked anew when there
    is none or it is older than the prediction (answers kept); None when not predicted."""
    from napari_asymseg.review.queue import build_queue

    if scan.result("prediction") is None:
        return None
    queue = stored_queue(scan)
    if queue is not None:
        try:
            check_current(scan, queue)
            return queue
        except StaleQueue:
            pass
    with scan_lock(scan.path, lock):
        return build_queue(scan, max_items=max_items)


def study_queue(
    study: Study | str | os.PathLike, max_items: int = 100, *, lock: str | None = None
) -> StudyQueue:
    """The ``max_items`` open review items of the study's predicted scans, ranked across them by
    the voxels an answer corrects. ``lock``: the owner each scan's write lock is taken for
    while its queue is ranked anew (none when None)."""
    study = open_study(study)
    items: list[StudyItem] = []
    skipped: list[str] = []
    predicted = 0
    for name in study.names:
        path = study.scan_path(name)
        if not path.is_dir():
            skipped.append(f"{name} skipped: its folder {path} is missing")
            continue
        try:
            queue = current_queue(Scan.open(path), max_items, lock=lock)
        except ClearError as exc:  # a damaged scan, or one another writer holds
            skipped.append(f"{name} skipped: {exc}")
            continue
        if queue is not None:
            predicted += 1
            items += [StudyItem(name, i) for i in queue.open]
    return StudyQueue(order(items, list(study.names))[:max_items], skipped, predicted)


def answer_study(
    study: Study | str | os.PathLike,
    name: str,
    item_id: int,
    verdict: str,
    *,
    lock: str | None = None,
) -> Item:
    """Answer item ``item_id`` of scan ``name``'s queue with ``verdict`` (``lesion`` or
    ``not_lesion``): :func:`napari_asymseg.review.queue.answer` on that scan."""
    from napari_asymseg.review.queue import answer

    path = open_study(study).scan_folder(name)
    with scan_lock(path, lock):
        return answer(Scan.open(path), item_id, verdict)
