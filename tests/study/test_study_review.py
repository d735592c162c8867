"""The review queue across a study's scans: ranked by the voxels an answer corrects, answered
into the right scan."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_asymseg.errors import ScanError
from napari_asymseg.review import queue as rq
from napari_asymseg.store.annotations import BACKGROUND, NOT_ANNOTATED
from napari_asymseg.store.scan import Scan
from napari_asymseg.study.review import StudyItem, answer_study, study_queue
from study_helpers import fake_results, small_study


@pytest.fixture
def study(tmp_path):
    """brain1: a miss worth 18 voxels and a false alarm of 30; brain2: a miss worth 50 and a
    false alarm of 8; brain3: not predicted."""
    study = small_study(tmp_path)
    fake_results(Scan.open(study.scan_path("brain1")), miss_voxels=36, alarm_voxels=30)
    fake_results(Scan.open(study.scan_path("brain2")), miss_voxels=100, alarm_voxels=8)
    return study


def test_items_are_ranked_by_voxels_across_scans(study):
    queue = study_queue(study)
    assert all(isinstance(s, StudyItem) for s in queue)
    gains = [s.item.gain for s in queue]
    assert gains == sorted(gains, reverse=True) and len(queue) == 4
    # brain2's miss (50), brain1's false alarm (30 voxels, doubtful), brain1's miss (18), then
    # brain2's small false alarm: interleaved by worth, not scan by scan
    assert [(s.scan, s.item.kind) for s in queue] == [
        ("brain2", rq.MISS),
        ("brain1", rq.FALSE_ALARM),
        ("brain1", rq.MISS),
        ("brain2", rq.FALSE_ALARM),
    ]
    assert queue[0].item.gain == pytest.approx(50.0)
    assert {s.scan for s in queue} == {"brain1", "brain2"}  # brain3 is not predicted
    assert queue.predicted == 2 and queue.skipped == []
    # the same measure as each scan's own queue: its items keep their order and their ids
    for name in ("brain1", "brain2"):
        own = rq.stored_queue(Scan.open(study.scan_path(name))).open
        assert [s.item for s in queue if s.scan == name] == own
    line = queue[0].line()
    assert line.startswith("brain2  #") and "suspected miss" in line and "100 voxels" in line


def test_max_items_keeps_the_most_worth_across_scans(study):
    queue = study_queue(study, max_items=2)
    assert [s.item.gain for s in queue] == [s.item.gain for s in study_queue(study)[:2]]


def test_answering_through_the_study_writes_to_that_scan(study):
    before = Scan.open(study.scan_path("brain1")).read_annotations()
    alarm = next(
        s for s in study_queue(study) if s.scan == "brain2" and s.item.kind == rq.FALSE_ALARM
    )
    done = answer_study(study, "brain2", alarm.item.id, rq.NOT_LESION)
    assert done.status == rq.NOT_LESION

    brain2 = Scan.open(study.scan_path("brain2"))
    ann = brain2.read_annotations()
    assert ann[alarm.item.center] == BACKGROUND  # the false alarm's region, written as background
    assert rq.stored_queue(brain2).item(alarm.item.id).answered
    np.testing.assert_array_equal(Scan.open(study.scan_path("brain1")).read_annotations(), before)
    assert (alarm.scan, alarm.item.id) not in {(s.scan, s.item.id) for s in study_queue(study)}
    with pytest.raises(ScanError, match="answered already"):
        answer_study(study, "brain2", alarm.item.id, rq.LESION)
    with pytest.raises(ScanError, match="no scan brain9"):
        answer_study(study, "brain9", 1, rq.LESION)


def test_a_queue_older_than_the_prediction_is_ranked_again_answers_kept(study):
    first = study_queue(study)
    miss = next(s for s in first if s.scan == "brain1" and s.item.kind == rq.MISS)
    answer_study(study, "brain1", miss.item.id, rq.LESION)  # painted there: nothing written
    scan = Scan.open(study.scan_path("brain1"))
    pred = scan.result("prediction")[...]
    pred[12, 2:4, 2:4] = 1  # a new prediction
    scan.write_result("prediction", pred)
    with pytest.raises(rq.StaleQueue):
        rq.answer(scan, 1, rq.LESION)
    queue = study_queue(study)
    rq.check_current(scan, rq.stored_queue(scan))  # ranked anew on the new prediction
    assert rq.stored_queue(scan).item(miss.item.id).status == rq.LESION  # the answer stayed
    assert miss.item.id not in {s.item.id for s in queue if s.scan == "brain1"}


def test_a_missing_scan_is_skipped_with_one_line(study):
    shutil.rmtree(study.scan_path("brain2"))
    queue = study_queue(study)
    assert {s.scan for s in queue} == {"brain1"}
    assert len(queue.skipped) == 1
    assert queue.skipped[0].startswith("brain2 skipped: ") and "missing" in queue.skipped[0]
    with pytest.raises(ScanError, match="missing"):
        answer_study(study, "brain2", 1, rq.LESION)


def test_unpredicted_scans_are_left_alone(tmp_path):
    study = small_study(tmp_path)
    queue = study_queue(study)
    assert list(queue) == [] and queue.predicted == 0 and queue.skipped == []
    assert rq.stored_queue(Scan.open(study.scan_path("brain1"))) is None  # nothing written
    assert Scan.open(study.scan_path("brain3")).read_annotations().max() == NOT_ANNOTATED
