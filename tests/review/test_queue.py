"""The review queue: both kinds of item, one ranking, answers written and remembered."""

from __future__ import annotations

import numpy as np
import pytest

from napari_asymseg.errors import ScanError
from napari_asymseg.review import queue as rq
from napari_asymseg.review.flags import flag_scan
from napari_asymseg.review.state import LEGACY_FLAGS_KEY
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED, code_of_class
from napari_asymseg.store.scan import Scan

SHAPE = (8, 32, 32)


def _scan(tmp_path, spacing=(1.0, 1.0, 1.0)) -> Scan:
    """A scan with a painted lesion on slice 1, a predicted lesion there and a big doubtful
    false alarm on slices 4-5, and a risk blob (suspected miss) on slice 6."""
    ann = np.zeros(SHAPE, np.uint8)
    ann[1] = BACKGROUND
    ann[1, 4:8, 4:8] = code_of_class(1)
    scan = Scan.create(tmp_path / "q.zarr", np.zeros(SHAPE, np.float32), spacing=spacing,
                       annotations=ann)  # fmt: skip
    pred = np.zeros(SHAPE, np.uint8)
    prob = np.zeros(SHAPE, np.float32)
    pred[1, 4:8, 4:8], prob[1, 4:8, 4:8] = 1, 0.95  # painted: not an item
    pred[4:6, 20:30, 20:30], prob[4:6, 20:30, 20:30] = 1, 0.6  # 200 voxels, doubt 0.4
    pred[2, 2:4, 20:22], prob[2, 2:4, 20:22] = 1, 0.9  # 4 voxels, doubt 0.1
    risk = np.zeros(SHAPE, np.float32)
    risk[6, 10:16, 2:8] = 0.5  # 36 voxels x 0.5: expected 18 missed
    scan.write_result("prediction", pred)
    scan.write_result("probability", prob)
    scan.write_result("risk", risk)
    return scan


def test_the_queue_interleaves_misses_and_false_alarms_by_expected_gain(tmp_path):
    queue = rq.build_queue(_scan(tmp_path))
    kinds = [(i.kind, round(i.gain, 1)) for i in queue.items]
    # the false alarms: voxels x (1 - p exp(-d / L)), L two diameters of the painted lesion
    reach = 2 * (6 * 16 / np.pi) ** (1 / 3)
    far = 200 * (
        1 - 0.6 * np.exp(-np.linalg.norm(np.subtract(queue.items[0].center, (1, 7, 7))) / reach)
    )
    near = 4 * (1 - 0.9 * np.exp(-np.sqrt(1 + 2**2 + 13**2) / reach))  # (2, 2, 20) to (1, 4, 7)
    assert kinds == [
        (rq.FALSE_ALARM, round(far, 1)),
        (rq.MISS, 18.0),
        (rq.FALSE_ALARM, round(near, 1)),
    ]
    assert [i.id for i in queue.items] == [1, 2, 3]
    big = queue.items[0]
    assert big.voxels == 200 and big.bbox == (4, 20, 20, 6, 30, 30)
    assert big.center[0] in (4, 5) and not big.answered


def test_false_alarms_are_cut_into_slabs_of_at_most_slab_mm():
    pred = np.zeros(SHAPE, np.uint8)
    pred[0:8, 10:12, 10:12] = 1  # one component through all 8 slices
    prob = np.full(SHAPE, 0.5, np.float32)
    ann = np.zeros(SHAPE, np.uint8)
    thin = rq.false_alarm_items(pred, prob, ann, (1.0, 1, 1), slab_mm=10)
    thick = rq.false_alarm_items(pred, prob, ann, (6.5, 1, 1), slab_mm=10)
    assert len(thin) == 1 and thin[0].voxels == 32
    assert len(thick) == 8 and {i.voxels for i in thick} == {4}
    ann[3] = BACKGROUND  # annotated voxels are not asked about
    assert sum(i.voxels for i in rq.false_alarm_items(pred, prob, ann, (1, 1, 1))) == 28


def test_a_false_alarm_far_from_the_painted_lesion_is_doubted_more():
    """Equal regions, equally probable: the one far from the painted lesion is worth more; with
    no painted lesion the doubt is one minus the probability."""
    pred = np.zeros((4, 64, 64), np.uint8)
    pred[2, 10:12, 10:12] = pred[2, 10:12, 50:52] = 1
    prob = np.where(pred > 0, 0.8, 0.0).astype(np.float32)
    ann = np.zeros(pred.shape, np.uint8)
    ann[2, 10:12, 4:6] = code_of_class(1)  # 4 voxels painted lesion, 5 mm from the near one
    items = sorted(rq.false_alarm_items(pred, prob, ann, (1, 1, 1)), key=lambda i: i.center[2])
    near, far = items
    assert far.voxels == near.voxels == 4
    assert 0.2 < near.doubt < far.doubt < 1.0 and far.gain > near.gain
    bare = rq.false_alarm_items(pred, prob, np.zeros_like(ann), (1, 1, 1))
    assert [round(i.doubt, 6) for i in bare] == [0.2, 0.2]
    ann[2, 10:12, 4:6] = BACKGROUND  # background paint is no lesion to be near
    assert [round(i.doubt, 6) for i in rq.false_alarm_items(pred, prob, ann, (1, 1, 1))] == [
        0.2,
        0.2,
    ]


def test_not_lesion_writes_the_region_as_background_and_is_remembered(tmp_path):
    scan = _scan(tmp_path)
    queue = rq.build_queue(scan)
    before = scan.read_annotations()
    done = rq.answer(scan, 1, rq.NOT_LESION)
    after = scan.read_annotations()
    changed = after != before
    assert changed.sum() == 200 and (after[changed] == BACKGROUND).all()
    assert changed[4:6, 20:30, 20:30].all()
    assert done.status == rq.NOT_LESION
    from napari_asymseg.store.provenance import PAINTED, REVIEWED, read_provenance

    source = read_provenance(Scan.open(scan.path).group)  # told apart from painting
    assert (source[changed] == REVIEWED).all() and (source[~changed] == PAINTED).all()
    again = rq.build_queue(Scan.open(scan.path))
    assert len(again.items) == len(queue.items)  # the answered item stays, listed last
    assert again.items[-1].status == rq.NOT_LESION and again.items[-1].center == done.center
    assert [i.kind for i in again.open] == [rq.MISS, rq.FALSE_ALARM]


def test_lesion_writes_the_predicted_class_and_a_miss_answer_is_kept(tmp_path):
    scan = _scan(tmp_path)
    rq.build_queue(scan)
    rq.answer(scan, 3, rq.LESION)
    ann = scan.read_annotations()
    assert (ann[2, 2:4, 20:22] == code_of_class(1)).all()
    before = scan.read_annotations()
    rq.answer(scan, 2, rq.LESION)  # a miss: the user paints; nothing written for them
    assert (scan.read_annotations() == before).all()
    again = rq.build_queue(scan)
    assert [i.status for i in again.items if i.kind == rq.MISS] == [rq.LESION]
    assert len(again.open) == 1


def test_not_lesion_on_a_miss_writes_its_risk_region_as_background(tmp_path):
    scan = _scan(tmp_path)
    rq.build_queue(scan)
    rq.answer(scan, 2, rq.NOT_LESION)
    ann = scan.read_annotations()
    assert (ann[6, 10:16, 2:8] == BACKGROUND).all() and (ann[6] == BACKGROUND).sum() == 36
    assert not [i for i in rq.build_queue(scan).open if i.kind == rq.MISS]


def test_an_undone_answer_is_forgotten_when_the_queue_is_recomputed(tmp_path):
    scan = _scan(tmp_path)
    rq.build_queue(scan)
    before = scan.read_annotations()
    rq.answer(scan, 1, rq.NOT_LESION)
    scan.write_annotations(before)  # the user undoes the write
    again = rq.build_queue(scan)
    assert not [i for i in again.items if i.answered]
    assert again.items[0].kind == rq.FALSE_ALARM and again.items[0].voxels == 200


def test_answers_are_refused_on_a_stale_or_missing_queue(tmp_path):
    scan = _scan(tmp_path)
    with pytest.raises(ScanError, match="no review queue yet"):
        rq.answer(scan, 1, rq.LESION)
    rq.build_queue(scan)
    with pytest.raises(ScanError, match="no item 9"):
        rq.answer(scan, 9, rq.LESION)
    with pytest.raises(ScanError, match="unknown answer"):
        rq.answer(scan, 1, "maybe")
    pred = np.zeros(SHAPE, np.uint8)
    scan.write_result("prediction", pred)  # a new prediction
    before = scan.read_annotations()
    with pytest.raises(ScanError, match="older than its prediction"):
        rq.answer(scan, 1, rq.NOT_LESION)
    assert (scan.read_annotations() == before).all()


def test_no_prediction_and_a_damaged_queue_are_clear_errors(tmp_path):
    scan = Scan.create(tmp_path / "e.zarr", np.zeros(SHAPE, np.float32))
    with pytest.raises(ScanError, match="no risk map yet"):
        rq.build_queue(scan)
    scan.write_attr(rq.QUEUE_KEY, {"items": [{"id": 1}], "prediction": "x"})
    with pytest.raises(ScanError, match="damaged"):
        rq.stored_queue(scan)


def test_answer_writes_match_the_region_and_leave_annotated_voxels_alone(tmp_path):
    scan = _scan(tmp_path)
    queue = rq.build_queue(scan, save=False)
    item = queue.items[0]
    ann = scan.read_annotations()
    ann[4, 20:30, 20:25] = BACKGROUND  # painted meanwhile: not overwritten
    pred = np.asarray(scan.result("prediction"))
    (z, y, x), codes = rq.answer_writes(item, rq.LESION, pred, ann)
    assert z.size == 150 and (ann[z, y, x] == NOT_ANNOTATED).all()
    assert (codes == code_of_class(1)).all()


def test_the_cut_to_max_items_keeps_every_answer():
    def item(gain, status=rq.OPEN):
        return rq.Item(0, 0, rq.FALSE_ALARM, (0, 0, int(gain)), (0, 0, 0, 1, 1, 1), 1, gain,
                       0.5, status=status)  # fmt: skip

    ranked = rq.rank([item(1, rq.NOT_LESION), *(item(g) for g in range(2, 12))], max_items=3)
    assert [i.gain for i in ranked] == [11, 10, 9, 1] and ranked[-1].answered
    assert [i.id for i in ranked] == [1, 2, 3, 4]


def test_ids_name_one_item_for_good_and_an_answer_is_given_once(tmp_path):
    scan = _scan(tmp_path)
    first = rq.build_queue(scan)
    rq.answer(scan, 1, rq.NOT_LESION)
    with pytest.raises(ScanError, match="answered already"):
        rq.answer(scan, 1, rq.LESION)
    again = rq.build_queue(scan)
    assert again.item(1).status == rq.NOT_LESION  # the answered item keeps its id
    new_ids = [i.id for i in again.items if not i.answered]
    assert min(new_ids) > max(i.id for i in first.items)  # new items, new ids


def test_a_miss_answered_in_the_queue_is_a_done_flag_and_never_asked_again(tmp_path):
    """One review state: the flags are the queue's misses, with its ids and its answers."""
    scan = _scan(tmp_path)
    queue = rq.build_queue(scan)
    miss = next(i for i in queue.items if i.kind == rq.MISS)
    (flag,) = rq.as_flags(queue, scan.spacing)
    assert (flag.id, flag.center, flag.status) == (miss.id, miss.center, "open")
    rq.answer(scan, miss.id, rq.LESION)  # asymseg flag --done, or review --accept
    assert [f.status for f in flag_scan(scan)] == ["done"]
    again = rq.build_queue(scan)
    assert not [i for i in again.open if i.kind == rq.MISS]
    assert [f.status for f in rq.as_flags(again, scan.spacing)] == ["done"]
    assert rq.as_flags(again, scan.spacing)[0].id == miss.id


def test_the_old_flags_done_marks_move_into_the_queue(tmp_path):
    scan = _scan(tmp_path)
    (flag,) = flag_scan(scan)
    scan.write_attr(LEGACY_FLAGS_KEY, [{**flag.as_dict(), "status": "done"}])
    queue = rq.build_queue(scan)
    (painted,) = [i for i in queue.items if i.kind == rq.MISS]
    assert painted.status == rq.LESION and painted.center == flag.center and painted.id > 0
    assert scan.read_attr(LEGACY_FLAGS_KEY) is None  # moved, not copied: one state
    assert not [i for i in rq.build_queue(scan).open if i.kind == rq.MISS]
    assert [f.status for f in flag_scan(scan)] == ["done"]


def test_the_stale_check_is_one_function_for_every_caller(tmp_path):
    scan = _scan(tmp_path)
    queue = rq.build_queue(scan)
    rq.check_current(scan, queue)  # current: no error
    scan.write_result("prediction", np.zeros(SHAPE, np.uint8))
    with pytest.raises(ScanError, match="older than its prediction: run asymseg review SCAN"):
        rq.check_current(scan, queue)
    with pytest.raises(ScanError, match="older than its prediction: rank again"):
        rq.check_current(scan, queue, fix="rank again")
