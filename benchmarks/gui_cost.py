"""What the dock costs training: steps per second in the viewer against the headless engine
(ISSUE 20: within 15%), and the time from the Train click to the first overlay.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/gui_cost.py   # ~5 min

Both sides train the sample scan as shipped with the same settings (the dock's defaults, a
shorter run, no quality estimate), alternating A B A B:
* ``headless``: a child process runs the engine's ``fit`` generator in its main thread, as
  ``asymseg train`` does, without Qt;
* ``dock``: the real dock in a real napari viewer (Xvfb), Train clicked, nothing else done.
Per run: the median seconds of a training step (each ``StepEnd`` carries its own compute time,
so validations are not counted), the seconds from the first to the last step, the CPU seconds
napari's GUI thread spent meanwhile (Linux: ``/proc/self/task``), and in the dock the seconds
from the click to the first overlay. The ratio dock / headless of the step time is the result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, write_json  # noqa: E402


def thread_cpu_s(tid: int) -> float:
    """CPU seconds (user + system) a thread of this process has used; NaN off Linux."""
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_cpu_s() -> dict[str, float]:
    """CPU seconds of every thread of this process, by thread name (threads of one name
    summed; e.g. Mesa's software renderer runs in threads of its own)."""
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + thread_cpu_s(int(task.name))
    return out


def summarise(step_s: list[float], span_s: float, **extra: Any) -> dict[str, Any]:
    return {
        "steps": len(step_s),
        "median_step_s": statistics.median(step_s),
        "steps_per_s": (len(step_s) - 1) / span_s if span_s > 0 else float("nan"),
        "first_to_last_step_s": span_s,
        **extra,
    }


def headless(steps: int) -> dict[str, Any]:
    """The engine in this process's main thread, as the CLI drives it (no Qt at all)."""
    from napari_asymseg.config import Config
    from napari_asymseg.samples.sample_data import sample_scan
    from napari_asymseg.train.events import StepEnd
    from napari_asymseg.train.loop import fit

    cfg = Config()
    cfg.train.steps, cfg.train.estimate = steps, False
    step_s, times = [], []
    out = Path(tempfile.mkdtemp(prefix="asymseg-cost-")) / "model"
    for event in fit(sample_scan(), cfg, out):
        if isinstance(event, StepEnd):
            step_s.append(event.seconds)
            times.append(time.perf_counter())
    return summarise(step_s, times[-1] - times[0])


def in_dock(steps: int, napari_progress: bool = False) -> dict[str, Any]:
    """Open the viewer with the sample and the dock, click Train, wait for the prediction.
    ``napari_progress``: also keep a napari ``progress`` open and updated at every step, as
    the dock did before issue 20 (the comparison that explains the fix)."""
    from napari.utils import progress
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_asymseg._qt.demo import open_viewer
    from napari_asymseg.train.events import Finished, StepEnd

    viewer, dock = open_viewer()
    settle = QEventLoop()
    QTimer.singleShot(1500, settle.quit)  # the viewer's start-up is not measured
    settle.exec()
    section = dock.train_section
    section.settings.steps.setValue(steps)
    section.settings.estimate_box.setChecked(False)
    step_s: list[float] = []
    times: list[float] = []
    cpu: dict[str, float] = {}
    bar = progress(total=steps, desc="training") if napari_progress else None
    cpu_threads: dict[str, dict[str, float]] = {}
    original = section._on_event

    def on_event(event) -> None:
        if isinstance(event, StepEnd):
            if bar is not None:
                bar.set_description(f"training (loss {event.loss:.3f})")
                bar.update(1)
            step_s.append(event.seconds)
            times.append(time.perf_counter())
            if len(step_s) == 1:
                cpu["first"] = thread_cpu_s(os.getpid())  # the GUI thread is the main one
                cpu_threads["first"] = threads_cpu_s()
        elif isinstance(event, Finished):
            cpu["last"] = thread_cpu_s(os.getpid())
            cpu_threads["last"] = threads_cpu_s()
        original(event)

    section._on_event = on_event
    loop = QEventLoop()
    watcher = QTimer()
    watcher.setInterval(200)
    watcher.timeout.connect(
        lambda: None if section.running or dock.review_section.worker else loop.quit()
    )
    section.train_button.click()
    watcher.start()
    loop.exec()
    watcher.stop()
    if bar is not None:
        bar.close()
    span = times[-1] - times[0]
    gui_cpu = cpu["last"] - cpu["first"]
    result = summarise(
        step_s,
        span,
        gui_thread_cpu_s=gui_cpu,
        gui_thread_share=gui_cpu / span,
        first_overlay_s=section.first_overlay_s,
        threads_cpu_s={
            k: round(v - cpu_threads["first"].get(k, 0.0), 2)
            for k, v in cpu_threads["last"].items()
            if v - cpu_threads["first"].get(k, 0.0) > 0.05
        },
    )
    viewer.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/gui_cost.json")
    parser.add_argument(
        "--napari-progress",
        action="store_true",
        help="keep a napari progress bar open in the dock's runs, as before issue 20",
    )
    parser.add_argument("--headless", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["ASYMSEG_HOME"] = tempfile.mkdtemp(prefix="asymseg-cost-")
    if args.headless:
        print(json.dumps(headless(args.steps)))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {"headless": [], "dock": []}
    for rep in range(args.repeats):
        child = subprocess.run(
            [sys.executable, __file__, "--headless", "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs["headless"].append(json.loads(child.stdout.strip().splitlines()[-1]))
        os.environ["ASYMSEG_HOME"] = tempfile.mkdtemp(prefix="asymseg-cost-")  # a fresh sample
        runs["dock"].append(in_dock(args.steps, args.napari_progress))
        for name, r in runs.items():
            print(f"repeat {rep + 1} {name}: {json.dumps(r[-1])}", flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    ratio = med("dock", "median_step_s") / med("headless", "median_step_s")
    span_ratio = med("dock", "first_to_last_step_s") / med("headless", "first_to_last_step_s")
    rows = [
        [
            name,
            f"{med(name, 'median_step_s'):.3f}",
            f"{med(name, 'steps_per_s'):.2f}",
            f"{med(name, 'first_to_last_step_s'):.1f}",
            f"{med(name, 'gui_thread_share'):.0%}" if name == "dock" else "—",
            f"{med(name, 'first_overlay_s'):.1f}" if name == "dock" else "—",
        ]
        for name in runs
    ]
    header = ["", "s/step", "steps/s", "first→last step s", "GUI thread CPU", "first overlay s"]
    print(table(header, rows))
    print(f"dock / headless: step time {ratio:.3f}, first to last step {span_ratio:.3f}")
    write_json(
        args.out,
        {
            "machine": machine(),
            "steps": args.steps,
            "napari_progress": args.napari_progress,
            "ratio_step_time": ratio,
            "ratio_first_to_last_step": span_ratio,
            "runs": runs,
        },
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
