"""The review queue: suspected misses and suspected false alarms in one ranked list.

A clinician's few minutes go furthest where an answer corrects the most voxels. Two kinds of
item compete for them:

* a **suspected miss** is a flag of :mod:`napari_asymseg.review.flags`: a region where the
  calibrated risk map says lesion is probably missed (the flags have no state of their own:
  ``asymseg flag`` lists the queue's misses, and ``--done`` answers one). Its worth is the
  expected number of missed lesion voxels in it (the sum of the risk over its unannotated
  voxels).
* a **suspected false alarm** is a region the model calls lesion on voxels nobody annotated: a
  connected component of the prediction, cut into slabs at most :data:`SLAB_MM` thick, so
  that one item can be judged on one screen (one slice of a 6.5 mm MR, a few of a 1 mm one)
  and a large component that is part lesion, part not, becomes several answerable items. Its
  worth is the expected number of wrongly predicted voxels in it: its size times its doubt,
  one minus its mean lesion probability discounted with the distance from the painted lesion
  (:mod:`napari_asymseg.review.false_alarms`).

Both worths are in voxels an answer corrects, so the two kinds interleave in one ranking.
How it was chosen, and what was measured against it: docs/benchmarks.md (the review queue).

Answers (:func:`answer`): "not lesion" writes the item's region as background annotation;
"lesion" writes a false-alarm region as the predicted class, and on a suspected miss records
that the user painted there (it stays answered when the queue is recomputed: a region at risk
whose centre lies in its box is not asked about again). The queue and every answer are
stored in the scan (:mod:`napari_asymseg.review.state`); answered items stay in the list,
after the open ones, with their ids: an id names one item of a scan for good (new items get
new ids), so an answer given twice is refused instead of landing on another item, and so is
an answer to a queue older than the stored prediction
(:func:`~napari_asymseg.review.state.check_current`, shared with the dock). An answer whose
annotation was undone (its region is unannotated again) is forgotten when the queue is
recomputed, so the queue never claims an answer the annotations do not hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from napari_asymseg.errors import ScanError
from napari_asymseg.review import flags as review_flags
from napari_asymseg.review.false_alarms import SLAB_MM, false_alarm_items
from napari_asymseg.review.items import (
    ANSWERS,
    FALSE_ALARM,
    LESION,
    MISS,
    NOT_LESION,
    OPEN,
    Item,
)
from napari_asymseg.review.items import (
    KINDS as KINDS,
)
from napari_asymseg.review.risk_map import THRESHOLD, with_annotations
from napari_asymseg.review.state import (
    LEGACY_FLAGS_KEY,
    Queue,
    check_current,
    is_painted,
    legacy_done,
    prediction_digest,
    save_queue,
    stored_queue,
)
from napari_asymseg.review.state import (  # the stored state, named here for the queue's users
    QUEUE_KEY as QUEUE_KEY,
)
from napari_asymseg.review.state import (
    StaleQueue as StaleQueue,
)
from napari_asymseg.review.state import (
    set_answered as set_answered,
)
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED, code_of_class
from napari_asymseg.store.provenance import REVIEWED
from napari_asymseg.store.scan import Scan, read

_STRUCTURE = np.ones((3, 3, 3), bool)


# ----------------------------------------------------------------------------- building
def miss_items(flags: Sequence[review_flags.Flag]) -> list[Item]:
    """The suspected misses: the flags as queue items (a done flag is an answered item)."""
    return [
        Item(
            id=0,
            rank=0,
            kind=MISS,
            center=f.center,
            bbox=f.bbox,
            voxels=f.voxels,
            gain=f.expected_missed,
            doubt=f.max_risk,
            known_misses=f.known_misses,
            status=LESION if f.done else OPEN,
        )
        for f in flags
    ]


def as_flags(queue: Queue, spacing: Sequence[float]) -> list[review_flags.Flag]:
    """The queue's suspected misses as flags (``asymseg flag``): open ones first, in the queue's
    order, then the answered ones as ``done``; a flag's id is its item's id, its rank its place
    among the flags."""
    voxel_mm3 = float(np.prod(spacing))
    misses = [i for i in queue.items if i.kind == MISS]
    return [
        review_flags.Flag(
            id=i.id,
            rank=k + 1,
            center=i.center,
            bbox=i.bbox,
            voxels=i.voxels,
            expected_missed=i.gain,
            expected_mm3=i.gain * voxel_mm3,
            max_risk=i.doubt,
            known_misses=i.known_misses,
            status="done" if i.answered else "open",
        )
        for k, i in enumerate(misses)
    ]


def rank(items: Sequence[Item], max_items: int = 100, first_id: int = 1) -> list[Item]:
    """The ``max_items`` open items of most expected gain (misses first on a tie), then every
    answered one, ranked from 1. Items without an id (0) get new ones from ``first_id`` on, in
    rank order; the others keep theirs, so that an id never names two items of a scan."""
    ordered = sorted(items, key=lambda i: (i.answered, -i.gain, i.kind != MISS, i.center))
    kept = [i for i in ordered if not i.answered][:max_items] + [i for i in ordered if i.answered]
    out, next_id = [], first_id
    for k, i in enumerate(kept):
        if i.id == 0:
            i, next_id = replace(i, id=next_id), next_id + 1
        out.append(replace(i, rank=k + 1))
    return out


def _results(scan: Scan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prediction, foreground probability and risk map as stored; a clear error before any."""
    risk, prediction = review_flags.stored_risk_arrays(scan)
    probability = scan.result("probability")
    if probability is None:
        raise ScanError(f"{scan.path.name} has no prediction yet: predict it with a model first")
    return read(prediction), read(probability).astype(np.float32), read(risk).astype(np.float32)


def build_queue(
    scan: Scan,
    *,
    threshold: float = THRESHOLD,
    min_expected: float = 1.0,
    max_items: int = 100,
    slab_mm: float = SLAB_MM,
    misses: Sequence[review_flags.Flag] | None = None,
    save: bool = True,
) -> Queue:
    """The scan's queue from its stored prediction and current annotations.

    Answers stored in an earlier queue stay, unless the annotation they wrote was undone;
    suspected misses inside a miss the user said was painted stay answered. ``misses``: the
    flags, if already found (``asymseg flag --dask``); ``min_expected``: the least expected
    missed voxels of one.
    """
    prediction, probability, risk = _results(scan)
    annotations = scan.read_annotations()
    old = stored_queue(scan)
    kept = [i for i in (old.items if old else ()) if i.answered and _still_holds(i, annotations)]
    kept += [  # the old flags' done marks, unless the queue holds them already
        i for i in legacy_done(scan) if not any(k.contains(i.center) for k in kept if is_painted(k))
    ]
    if misses is None:
        stats = review_flags.labelled_stats(
            with_annotations(risk, annotations, prediction), threshold, annotations, prediction
        )
        misses = review_flags.rank_regions(
            stats,
            spacing=scan.spacing,
            min_expected=min_expected,
            max_flags=max_items,
            done=[i for i in kept if is_painted(i)],
        )
    fresh = [i for i in miss_items(misses) if not i.answered]  # the painted ones are in kept
    alarms = false_alarm_items(prediction, probability, annotations, scan.spacing, slab_mm=slab_mm)
    first_id = max((i.id for i in old.items), default=0) + 1 if old else 1
    queue = Queue(
        tuple(rank([*fresh, *alarms, *kept], max_items=max_items, first_id=first_id)),
        prediction_digest(prediction),
    )
    if save:
        save_queue(scan, queue)
        if scan.read_attr(LEGACY_FLAGS_KEY) is not None:
            scan.write_attr(LEGACY_FLAGS_KEY, None)  # its done marks are in the queue now
    return queue


def _still_holds(item: Item, annotations: np.ndarray) -> bool:
    """Whether the annotations still hold what answering ``item`` wrote (not undone)."""
    if is_painted(item):
        return True  # nothing was written: the user painted, and may paint on
    return bool(annotations[item.center] != NOT_ANNOTATED)


# ----------------------------------------------------------------------------- answers
def region_of(
    item: Item,
    prediction: np.ndarray,
    annotations: np.ndarray,
    risk: np.ndarray | None = None,
    threshold: float = THRESHOLD,
) -> np.ndarray:
    """The voxels an answer to ``item`` writes, as a mask of its box: the unannotated voxels
    connected to its centre that the model calls lesion (false alarm) or that are at risk
    (miss). Only the box is read: the arrays may be zarr arrays or a labels layer's data."""
    from scipy import ndimage

    box = item.box
    free = np.asarray(annotations[box]) == NOT_ANNOTATED
    if item.kind == FALSE_ALARM:
        candidate = (np.asarray(prediction[box]) > 0) & free
    else:
        if risk is None:
            raise ValueError("a miss item's region needs the risk map")
        candidate = (np.asarray(risk[box]) >= threshold) & free
    labels, _ = ndimage.label(candidate, structure=_STRUCTURE)
    local = tuple(c - s.start for c, s in zip(item.center, box, strict=True))
    at = labels[local]
    if at == 0:
        return np.zeros(candidate.shape, bool)
    return labels == at


def answer_writes(
    item: Item,
    verdict: str,
    prediction: np.ndarray,
    annotations: np.ndarray,
    risk: np.ndarray | None = None,
    threshold: float = THRESHOLD,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """What answering ``item`` with ``verdict`` writes into the annotations: voxel indices
    (z, y, x arrays; empty when nothing is written) and their annotation codes (background,
    or the class the model predicts there)."""
    if verdict not in ANSWERS:
        raise ScanError(f"unknown answer {verdict!r}: use {' or '.join(ANSWERS)}")
    if item.kind == MISS and verdict == LESION:
        empty = np.zeros(0, np.intp)
        return (empty, empty, empty), np.zeros(0, np.uint8)  # the user paints it
    mask = region_of(item, prediction, annotations, risk, threshold)
    z, y, x = np.nonzero(mask)
    lo = [s.start for s in item.box]
    indices = (z + lo[0], y + lo[1], x + lo[2])
    if verdict == NOT_LESION:
        return indices, np.full(z.size, BACKGROUND, np.uint8)
    classes = np.maximum(np.asarray(prediction[item.box])[mask], 1)
    lookup = np.array([code_of_class(k) for k in range(int(classes.max(initial=1)) + 1)])
    return indices, lookup[classes].astype(np.uint8)


def answer(scan: Scan, item_id: int, verdict: str, *, threshold: float = THRESHOLD) -> Item:
    """Answer a stored item: write its annotation into the scan and store the answer.

    Refuses when the queue is older than the scan's prediction (recompute it first).
    """
    queue = stored_queue(scan)
    if queue is None:
        raise ScanError(f"{scan.path.name} has no review queue yet: run asymseg review first")
    item = queue.item(item_id)
    if item.answered:
        raise ScanError(
            f"item {item_id} of {scan.path.name} is answered already "
            f"({item.status.replace('_', ' ')}): see the open ones with asymseg review SCAN"
        )
    prediction, _probability, risk = _results(scan)
    check_current(scan, queue, prediction)
    annotations = scan.read_annotations()
    (z, y, x), codes = answer_writes(item, verdict, prediction, annotations, risk, threshold)
    if z.size:
        annotations[z, y, x] = codes
        z0, z1 = int(z.min()), int(z.max()) + 1
        # kept apart from painting (store/provenance.py): a review answer wrote these voxels
        scan.write_annotations(annotations[z0:z1], region=(slice(z0, z1),), source=REVIEWED)
    done = replace(item, status=verdict)
    save_queue(
        scan, replace(queue, items=tuple(done if i.id == item_id else i for i in queue.items))
    )
    return done
