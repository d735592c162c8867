"""``asymseg flag`` and ``asymseg review`` share one review state: the queue's (a stored
prediction, no training: fast)."""

import json

import numpy as np

from napari_asymseg.cli.main import main
from napari_asymseg.review import queue as rq
from napari_asymseg.store.scan import Scan

SHAPE = (8, 32, 32)


def _scan(tmp_path) -> Scan:
    """Two suspected misses (risk blobs on slices 2 and 6) and one suspected false alarm."""
    scan = Scan.create(tmp_path / "s.zarr", np.zeros(SHAPE, np.float32))
    pred = np.zeros(SHAPE, np.uint8)
    prob = np.zeros(SHAPE, np.float32)
    pred[4, 20:30, 20:30], prob[4, 20:30, 20:30] = 1, 0.6
    risk = np.zeros(SHAPE, np.float32)
    risk[6, 10:16, 2:8] = 0.5  # expected 18 missed
    risk[2, 2:6, 2:6] = 0.5  # expected 8 missed
    scan.write_result("prediction", pred)
    scan.write_result("probability", prob)
    scan.write_result("risk", risk)
    return scan


def _flags(scan, tmp_path, *extra) -> list[dict]:
    out = tmp_path / "flags.json"
    assert main(["flag", str(scan.path), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())["flags"]


def _queue(scan, tmp_path, *extra) -> list[dict]:
    out = tmp_path / "queue.json"
    assert main(["review", str(scan.path), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())["items"]


def test_flags_are_the_queues_misses_with_its_ids(tmp_path, capsys):
    scan = _scan(tmp_path)
    flags = _flags(scan, tmp_path)
    queue = rq.stored_queue(Scan.open(scan.path))
    misses = [i for i in queue.items if i.kind == rq.MISS]
    assert [f["id"] for f in flags] == [i.id for i in misses] and len(flags) == 2
    assert [f["rank"] for f in flags] == [1, 2] and flags[0]["expected_missed"] == 18
    assert f"#{flags[0]['id']:<3}" in capsys.readouterr().out  # the id --done takes
    assert scan.read_attr("flags") is None  # no second state


def test_a_flag_marked_done_is_no_open_queue_item(tmp_path):
    scan = _scan(tmp_path)
    first = _flags(scan, tmp_path)[0]
    again = _flags(scan, tmp_path, "--done", str(first["id"]))
    assert [f["status"] for f in again] == ["open", "done"] and again[1]["id"] == first["id"]
    items = _queue(scan, tmp_path)
    (answered,) = [i for i in items if i["status"] != "open"]
    assert answered["id"] == first["id"] and answered["status"] == "lesion"
    assert _flags(scan, tmp_path, "--done", str(first["id"]))[1]["status"] == "done"  # again: ok


def test_an_answered_queue_item_is_no_open_flag(tmp_path):
    scan = _scan(tmp_path)
    items = _queue(scan, tmp_path)
    miss = next(i for i in items if i["kind"] == "miss")
    _queue(scan, tmp_path, "--accept", str(miss["id"]))
    flags = _flags(scan, tmp_path)
    assert [(f["id"], f["status"]) for f in flags if f["status"] == "done"] == [
        (miss["id"], "done")
    ]
    assert miss["id"] not in [f["id"] for f in flags if f["status"] == "open"]


def test_flag_done_refuses_false_alarms_unknown_ids_and_a_stale_queue(tmp_path, capsys):
    scan = _scan(tmp_path)
    items = _queue(scan, tmp_path)
    alarm = next(i for i in items if i["kind"] == "false_alarm")
    miss = next(i for i in items if i["kind"] == "miss")
    capsys.readouterr()
    assert main(["flag", str(scan.path), "--done", str(alarm["id"])]) == 2
    assert "suspected false alarm, not a flag" in capsys.readouterr().err
    assert main(["flag", str(scan.path), "--done", "99"]) == 2
    assert "has no flag 99" in capsys.readouterr().err
    scan.write_result("prediction", np.zeros(SHAPE, np.uint8))  # predicted again since
    assert main(["flag", str(scan.path), "--done", str(miss["id"])]) == 2
    assert "older than its prediction" in capsys.readouterr().err
    assert not rq.stored_queue(Scan.open(scan.path)).item(miss["id"]).answered
