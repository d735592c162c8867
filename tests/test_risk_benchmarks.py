"""Plumbing of the risk benchmarks: each runs end to end on a tiny configuration.

The numbers of such a run mean nothing (a few training steps on a tiny scan); the test checks
that the benchmarks still drive the engine, write complete JSON and draw their figures.
Both together take ~15 s on 2 idle cores.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import active_learning  # noqa: E402
import risk_quality  # noqa: E402


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield obj


def test_risk_quality_quick(tmp_path):
    out, fig = tmp_path / "rq.json", tmp_path / "rq.png"
    risk_quality.main(
        ["--quick", "--work", str(tmp_path / "work"), "--out", str(out), "--figure", str(fig)]
    )
    data = json.loads(out.read_text())
    assert {"machine", "runtime_s", "config", "summary", "chosen", "volumes"} <= set(data)
    assert {"processor", "cpu_count", "torch", "date", "command"} <= set(data["machine"])
    assert set(data["summary"]) == {"synthetic-other", "synthetic-same"}
    for dataset in data["summary"].values():
        for mode in ("plain", "tta"):
            methods = dataset[mode]["methods"]
            assert {"1 - max prob", "entropy", "1 - max prob |bg", "entropy |bg"} <= set(methods)
            kappa = None if mode == "plain" else risk_quality.KAPPA
            default = risk_quality.method_name(mode, "platt", 1.5, kappa)
            assert math.isfinite(methods[default]["auprc"]["mean"])
            assert math.isfinite(methods[default]["missed_ratio"]["mean"])
    n_risk = len(risk_quality.SIGMAS) * len(risk_quality.CALIBRATIONS)
    tta = data["summary"]["synthetic-other"]["tta"]["methods"]
    grid = [n for n in tta if n.startswith("risk") and "only" not in n and "zeroed first" not in n]
    assert len(grid) == n_risk * len(risk_quality.KAPPAS)
    assert risk_quality.method_name("tta", "platt", 3.0, 0.0, True, True) in tta
    assert {"best_mean_auprc", "best_worst_case_lift"} <= set(data["chosen"]["plain"])
    assert all(math.isfinite(x) for x in _numbers(data["summary"]) if x is not None)
    assert fig.stat().st_size > 10_000


def test_active_learning_quick(tmp_path):
    out, fig = tmp_path / "al.json", tmp_path / "al.png"
    args = ["--quick", "--work", str(tmp_path / "work"), "--out", str(out), "--figure", str(fig)]
    active_learning.main(args)
    data = json.loads(out.read_text())
    assert {"machine", "runtime_s", "config", "summary", "seeds"} <= set(data)
    strategies = data["config"]["strategies"]
    assert strategies == ["flags", "entropy", "random"]
    seed = data["seeds"][0]
    for st in strategies:
        rounds = seed["strategies"][st]
        assert [r["round"] for r in rounds] == [1, 2]
        assert all(r["new_voxels"] > 0 for r in rounds)  # every box reveals something new
        for r in rounds:
            for key in ("dsc", "sensitivity", "precision"):
                assert 0 <= r["held_out"][key] <= 1
        curve = data["summary"]["held_out"][st]["dsc"]
        assert len(curve["mean"]) == 3 and all(math.isfinite(v) for v in curve["mean"])
    goal = data["summary"]["goal"]["held_out"]["flags"]
    assert {"random_final_dsc", "fraction_of_added", "met"} <= set(goal)
    assert fig.stat().st_size > 10_000
    # a second run resumes from the cache: same rounds, no new training
    again = active_learning.main(args)
    assert again["seeds"][0]["strategies"] == data["seeds"][0]["strategies"]
