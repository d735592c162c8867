"""Does the viewer stall while the review queue is ranked or answered? (issue 19: < 100 ms)

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/review_responsiveness.py \
        --scan /tmp/alw/initial/brain1-0.zarr --model /tmp/alw/initial/brain1-0.model

Copies the scan, predicts it with the model (outside the measurement), opens it in the viewer
with the dock, then samples the event loop with a 10 ms QTimer while the dock ranks the queue
(in its thread), and while each answer and each undo runs as a click runs it and for 200 ms
after (what it defers to later turns of the loop counts): ``--answers`` answers (Not lesion on
false alarms, Lesion on misses), then as many undos. A stall is the delay of a timer tick beyond its
interval; the time each call takes is recorded beside. Without ``--scan`` the sample scan
and a briefly trained model are used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scan", help="scan (.zarr) to review (copied first)")
    p.add_argument("--model", help="model folder to predict it with")
    p.add_argument("--answers", type=int, default=10)
    p.add_argument("--out", default="benchmarks/results/review_responsiveness.json")
    args = p.parse_args(argv)
    os.environ.setdefault("ASYMSEG_HOME", tempfile.mkdtemp(prefix="asymseg-bench-"))

    import napari
    import numpy as np
    from qtpy.QtCore import QElapsedTimer, QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_asymseg._qt.dock import AsymsegDock
    from napari_asymseg.infer.predict import predict
    from napari_asymseg.review import queue as rq
    from napari_asymseg.store.scan import Scan

    work = Path(tempfile.mkdtemp(prefix="asymseg-review-"))
    if args.scan:
        scan_path = work / Path(args.scan).name
        shutil.copytree(args.scan, scan_path)
        model = args.model
    else:
        from napari_asymseg.samples.sample_data import sample_scan
        from napari_asymseg.train.loop import fit

        scan_path = Path(sample_scan(work))
        model = str(work / "model")
        from napari_asymseg.config import Config

        cfg = Config()
        cfg.train.steps, cfg.train.estimate = 60, False
        for _ in fit(Scan.open(scan_path), cfg, model):
            pass
    for _ in predict(Scan.open(scan_path), model):
        pass

    viewer = napari.Viewer()
    dock = AsymsegDock(viewer)
    viewer.window.add_dock_widget(dock, name="asymseg")
    dock.open_scan(scan_path)
    settle = QEventLoop()
    QTimer.singleShot(1500, settle.quit)
    settle.exec()
    review = dock.review_section
    review.tune_after.setValue(0)

    clock = QElapsedTimer()
    clock.start()
    stalls: list[float] = []
    last = [clock.elapsed()]

    def tick() -> None:
        now = clock.elapsed()
        stalls.append(max(0, now - last[0] - 10))
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)

    def spin(ms: int) -> None:  # run the event loop (the deferred work, the ticks) for ms
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def stall_of(action) -> tuple[float, float]:
        """(the call's ms, the longest event-loop stall from the call to 200 ms after)"""
        spin(30)
        stalls.clear()
        last[0] = clock.elapsed()
        t = time.perf_counter()
        action()
        took = (time.perf_counter() - t) * 1000
        tick()  # the call itself blocked the loop
        spin(200)
        return took, max(stalls, default=0.0)

    timer.start()
    t0 = time.perf_counter()
    stalls.clear()
    last[0] = clock.elapsed()
    review.find_items()
    while review.worker is not None:
        QApplication.processEvents()
        time.sleep(0.002)
    rank_s = time.perf_counter() - t0
    spin(200)
    rank_stall = max(stalls) if stalls else 0.0

    answers, undos = [], []
    before = np.array(dock.annotations_layer.data, copy=True)
    for _ in range(args.answers):
        item = review.current_item()
        if item is None or item.answered:
            break
        verdict = rq.NOT_LESION if item.kind == rq.FALSE_ALARM else rq.LESION
        answers.append(stall_of(lambda v=verdict: review.answer(v)))
    for _ in range(len(answers)):
        undos.append(stall_of(review.undo_answer))
    timer.stop()
    restored = bool((np.asarray(dock.annotations_layer.data) == before).all())
    result = {
        "machine": machine(),
        "scan": str(args.scan or "sample"),
        "shape": list(dock.scan.shape),
        "items": len(review.items),
        "rank_s": rank_s,
        "rank_max_stall_ms": rank_stall,
        "answer_ms": [a for a, _ in answers],
        "answer_stall_ms": [b for _, b in answers],
        "undo_ms": [a for a, _ in undos],
        "undo_stall_ms": [b for _, b in undos],
        "answer_max_stall_ms": max((b for _, b in answers), default=0.0),
        "undo_max_stall_ms": max((b for _, b in undos), default=0.0),
        "annotations_restored_by_the_undos": restored,
    }
    stall = [b for _, b in answers]
    print(
        f"{result['scan']} {result['shape']}: {result['items']} items ranked in {rank_s:.2f} s, "
        f"longest stall {rank_stall:.0f} ms; {len(answers)} answers, longest stall "
        f"{result['answer_max_stall_ms']:.0f} ms (median {np.median(stall or [0]):.0f}); undo "
        f"longest stall {result['undo_max_stall_ms']:.0f} ms"
    )
    write_json(Path(args.out), result)
    viewer.close()
    shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
