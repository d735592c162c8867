"""What the training curves cost napari's event loop: pyqtgraph (the dock's plots since issue
20) against the hand-drawn QPainter curves they replaced, side by side.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/plot_cost.py   # ~1 min

The peer is the QPainter module as it was at commit d5c4a3d, read from git history. For each:
the seconds to import the plotting code in a fresh process, to build the curves widget, and,
at each of 18 validations (a 360-step run), to add the point and draw the widget at the dock's
size (``QWidget.grab``, a synchronous paint). Medians over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, write_json  # noqa: E402

PEER_COMMIT = "d5c4a3d"
PLOTS = "src/napari_asymseg/_qt/plots.py"
ROOT = Path(__file__).resolve().parents[1]


def peer_module():
    """The QPainter curves of ``PEER_COMMIT``, imported from a temporary file."""
    text = subprocess.run(
        ["git", "show", f"{PEER_COMMIT}:{PLOTS}"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    if not text:
        raise SystemExit(f"git show {PEER_COMMIT}:{PLOTS} failed: run from a clone with history")
    path = Path(tempfile.mkdtemp()) / "qpainter_plots.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("qpainter_plots", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_seconds(statement: str) -> float:
    """Seconds to run ``statement`` in a fresh interpreter that has Qt loaded already."""
    code = (
        "import time; import qtpy.QtWidgets; t = time.perf_counter(); "
        f"{statement}; print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def validations(n: int = 18):
    """The values of ``n`` validations of a plausible run."""
    for k in range(1, n + 1):
        f = k / n
        yield (
            20 * k,
            {
                "dsc": 0.4 + 0.45 * f,
                "sensitivity": 0.5 + 0.4 * f,
                "precision": 0.45 + 0.4 * f,
                "train_loss": 0.9 - 0.6 * f,
                "val_loss": 0.8 - 0.4 * f,
                "logit_shift": 0.5 + 2.0 * f,
            },
        )


def measure(module) -> dict[str, float]:
    from qtpy.QtWidgets import QApplication

    t = time.perf_counter()
    widget = module.CurvesWidget()
    widget.resize(420, 300)
    widget.show()
    QApplication.processEvents()
    build = time.perf_counter() - t
    updates = []
    for step, values in validations():
        t = time.perf_counter()
        widget.add(step, values)
        widget.grab()
        updates.append(time.perf_counter() - t)
    widget.close()
    return {
        "build_ms": build * 1000,
        "update_median_ms": statistics.median(updates) * 1000,
        "update_max_ms": max(updates) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/plot_cost.json")
    args = parser.parse_args()
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    ours = importlib.import_module("napari_asymseg._qt.plots")
    peer = peer_module()
    runs: dict[str, list[dict[str, float]]] = {"pyqtgraph": [], "QPainter": []}
    for _ in range(args.repeats):  # A B A B
        runs["pyqtgraph"].append(measure(ours))
        runs["QPainter"].append(measure(peer))
    runs["pyqtgraph_import_ms"] = [import_seconds("import pyqtgraph") * 1000]
    med = {
        name: {key: statistics.median(r[key] for r in runs[name]) for key in runs[name][0]}
        for name in ("pyqtgraph", "QPainter")
    }
    rows = [
        [name, f"{m['build_ms']:.1f}", f"{m['update_median_ms']:.2f}", f"{m['update_max_ms']:.2f}"]
        for name, m in med.items()
    ]
    print(table(["", "build ms", "update + draw ms (median)", "max ms"], rows))
    ratio = med["pyqtgraph"]["update_median_ms"] / med["QPainter"]["update_median_ms"]
    print(f"pyqtgraph / QPainter, update + draw: {ratio:.2f}x")
    print(f"import pyqtgraph: {runs['pyqtgraph_import_ms'][0]:.0f} ms (once, when the dock opens)")
    write_json(
        args.out,
        {"machine": machine(), "peer": f"QPainter curves at {PEER_COMMIT}", "median": med,
         "ratio_update": ratio, "runs": runs},
    )  # fmt: skip
    print(f"written to {args.out}")
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
