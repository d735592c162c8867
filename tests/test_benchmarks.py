"""Plumbing of the quality and risk benchmarks: each runs end to end on a tiny configuration.

The numbers of such a run mean nothing (a few training steps on a tiny scan); the tests check
that the benchmarks still drive the engine, write complete JSON, draw their figures and resume.
Together they take ~40 s on 2 idle cores.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import active_learning  # noqa: E402
import cpu_variants  # noqa: E402
import dicom_roundtrip  # noqa: E402
import false_alarm_ranking  # noqa: E402
import quality  # noqa: E402
import risk_quality  # noqa: E402
import training_throughput  # noqa: E402
from napari_asymseg.train.device import autocast_dtype  # noqa: E402


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
    assert {"machine", "args", "records", "curves", "reach"} <= set(data)
    for st in active_learning.STRATEGIES:
        run = data["records"][f"synthetic-0-{st}"]
        assert [r["actions"] for r in run["rows"]] == [0, 1, 2]  # scored after every round
        assert len(run["answers"]) == 2 and run["machine_s"] > 0
        for r in run["rows"]:
            assert 0 <= r["dsc"] <= 1
        assert run["rows"][-1]["voxels"] > 0  # the actions wrote something
        curve = data["curves"]["synthetic"][st]
        assert len(curve["mean"]) == 3 and all(math.isfinite(v) for v in curve["mean"])
    assert fig.stat().st_size > 10_000
    # a second run resumes from the cache: the same rows, no new training
    active_learning.main(args)
    assert json.loads(out.read_text())["records"] == data["records"]
    # the false-alarm ranking study runs on the same initial models
    fa = false_alarm_ranking.main(
        ["--work", str(tmp_path / "work"), "--out", str(tmp_path / "fa.json")]
    )
    assert set(fa) == {"synthetic-0"}
    for name in false_alarm_ranking.SCORES:
        assert 0 <= fa["synthetic-0"][name]["top5"]["fp_share"] <= 1


def test_the_simulated_clinician_answers_from_the_truth():
    from napari_asymseg.review import queue as rq

    ann = np.zeros((4, 20, 20), np.uint8)
    truth = np.zeros(ann.shape, bool)
    truth[1, 2:6, 2:6] = True
    pred = np.zeros(ann.shape, np.uint8)
    pred[1, 2:6, 2:6] = 1  # a true region: accepted as lesion
    pred[2, 10:14, 10:14] = 1  # a false alarm: rejected
    items = rq.false_alarm_items(pred, pred * 0.6, ann, (1.0, 1, 1))
    for item in items:
        active_learning.answer_item(item, ann, truth, pred)
    assert (ann[1, 2:6, 2:6] == 2).all() and (ann[2, 10:14, 10:14] == 1).all()
    assert active_learning.paint_box(ann, truth, 1, slice(0, 8), slice(0, 8)) == 48
    assert (ann[1, 0:8, 0:8] >= 1).all() and (ann[1, 2:6, 2:6] == 2).all()


def test_annotated_slices_are_stratified_and_nested():
    truth = np.zeros((40, 6, 6), np.uint8)
    truth[10:20, 2:4, 2:4] = 1
    small, large = (quality.annotate(truth, f, seed=3) for f in (0.1, 0.5))
    rows_small = set(np.flatnonzero(small.any(axis=(1, 2))))
    rows_large = set(np.flatnonzero(large.any(axis=(1, 2))))
    assert rows_small < rows_large  # nested: more annotation only adds slices
    # 10% of the 10 lesion slices and of the 30 others; 50% of each
    assert len(rows_small) == 1 + 3 and len(rows_large) == 5 + 15
    for ann in (small, large):
        picked = ann.any(axis=(1, 2))
        assert np.array_equal(ann[picked], truth[picked] + 1)  # whole slices, exact labels
        assert (ann == 2).any()
    assert not np.array_equal(small, quality.annotate(truth, 0.1, seed=4))


def test_quality_quick_runs_and_resumes(tmp_path, monkeypatch):
    out, fig, logit_fig = tmp_path / "q.json", tmp_path / "q.png", tmp_path / "l.png"
    args = ["--quick", "--work", str(tmp_path / "work"), "--out", str(out)]
    args += ["--figure", str(fig), "--logit-figure", str(logit_fig)]
    quality.main(args)
    data = json.loads(out.read_text())
    assert {"machine", "runtime_s", "config", "summary", "trends", "records", "tables"} <= set(data)
    assert set(data["summary"]) == {"synthetic", "colin27"}
    for dataset in data["summary"].values():
        assert dataset["fractions"] == [0.1, 0.5]
        assert set(dataset["rows"]) == {"ce", "dice", "asym_combined"}
        for per in dataset["rows"].values():
            for entry in per.values():
                assert entry["n"] == 1
                for key in ("dsc", "sensitivity"):
                    assert 0 <= entry[key]["mean"] <= 1
        ce = dataset["rows"]["ce"]["0.1"]
        assert ce["dsc_vs_ce"]["mean"] == 0  # CE against itself
        hists = dataset["histograms"]["asym_combined"]["0.1"]
        assert all(sum(hists[part]) > 0 for part in ("train_fg", "train_bg", "test_fg", "test_bg"))
        # Δ during training: at every quarter of the steps, only at the diagnostic fraction
        assert dataset["epochs"]["ce"]["0.1"]["step"] == [1, 2, 3, 4]
        assert "0.5" not in dataset["epochs"]["ce"]
    assert len(data["records"]) == 2 * 2 * 3
    assert data["progress"] == {
        "runs": 12,
        "planned": 12,
        "complete": True,
        "per_dataset": {"synthetic": 6, "colin27": 6},
    }
    same = data["summary"]["synthetic"]["rows"]["dice"]["0.5"]["same_sensitivity"]["mean"]
    assert 0 <= same <= 1  # also scored on the unannotated slices of the training volume
    assert fig.stat().st_size > 10_000 and logit_fig.stat().st_size > 10_000

    # every run is stored: a second invocation trains nothing and reports the same numbers
    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("napari_asymseg.train.loop.fit", no_training)
    quality.main(args)
    assert json.loads(out.read_text())["records"] == data["records"]

    # a results JSON re-summarised from its own records: the same runs, the same histograms
    again = tmp_path / "again.json"
    quality.main(
        ["--from-json", str(out), "--out", str(again), "--figure", str(fig)]
        + ["--logit-figure", str(logit_fig)]
    )
    redone = json.loads(again.read_text())
    assert len(redone["records"]) == len(data["records"])
    assert redone["resummarised"]["from"] == str(out)
    for d in ("synthetic", "colin27"):
        assert redone["summary"][d]["histograms"] == data["summary"][d]["histograms"]
        rows, old = redone["summary"][d]["rows"], data["summary"][d]["rows"]
        assert rows["dice"]["0.5"]["dsc"] == old["dice"]["0.5"]["dsc"]


def test_a_stored_record_gets_the_signed_logit_shift():
    """Records made before issue 33 hold |test mean| - |training mean|: test lesions on the
    wrong side of the boundary (-0.7) read as further from it than training lesions (+0.1)."""
    old = {
        "logit_shift": 0.6,  # |-0.7| - |0.1|
        "margin": {"train_fg": 0.1, "test_fg": -0.7, "train_bg": -2.0, "test_bg": -2.0},
        "epochs": [{"step": 50, "logit_shift": 0.6, "train_fg": 0.1, "test_fg": -0.7}],
    }
    new = quality.resigned(old)
    assert new["logit_shift"] == pytest.approx(-0.8)
    assert new["epochs"][0]["logit_shift"] == pytest.approx(-0.8)
    assert old["logit_shift"] == 0.6  # the stored record is not changed in place


def test_training_throughput_tiny(tmp_path):
    out = tmp_path / "tt.json"
    args = ["--patch", "16", "--shape", "24", "40", "40", "--steps", "1", "--warmup", "1"]
    args += ["--repeats", "2", "--matmul", "128", "--workers", "0", "--out", str(out)]
    training_throughput.main(args)
    data = json.loads(out.read_text())
    assert {"machine", "runtime_s", "config", "flops_per_step", "peak_flop_per_s"} <= set(data)
    columns = ["ours", "ours fp32", "MONAI loop, 0 workers"]
    if autocast_dtype(torch.device("cpu"), "auto") is not None:  # ours trains under autocast
        columns.append("MONAI loop, 0 workers, bf16 autocast")  # the peer at equal precision
    assert list(data["summary"]) == list(data["repeats"]) == columns
    assert data["peer"] == columns[-1] and data["peer_fp32"] == "MONAI loop, 0 workers"
    assert data["summary"][data["peer"]]["dtype"] == data["summary"]["ours"]["dtype"]
    assert data["repeats"][data["peer"]][0]["amp"] == data["repeats"]["ours"][0]["amp"]
    headline = data["headline"]
    assert headline["ratio_equal_precision"] == data["summary"]["ours"]["speedup_vs_peer"]
    assert len(headline["ratio_equal_precision_per_repeat"]) == 2
    # 1 mm isotropic: 3x3x3 kernels at every level, the patch as asked
    assert data["config"]["plan"]["kernels"] == [[3, 3, 3]] * 4
    assert data["config"]["plan"]["patch_size"] == [16, 16, 16]
    flops = data["flops_per_step"]
    assert 1.5 * flops["forward"] < flops["backward"] < 2.1 * flops["forward"]
    assert flops["adamw_approx"] < 1e-2 * flops["total"]  # 0.01% at 64³
    for col in columns:
        assert len(data["repeats"][col]) == 2
        s = data["summary"][col]
        assert 0 < s["s_per_step"]["min"] <= s["s_per_step"]["median"] <= s["s_per_step"]["max"]
        assert s["voxels_per_s"] > 0 and s["fraction_of_peak"] > 0  # no bound: a busy machine
        assert all(len(r["walls"]) == 1 for r in data["repeats"][col])  # one timed step each
        assert 0 < s["best_step_s"] <= s["s_per_step"]["max"] * 1.001
    assert data["summary"]["ours fp32"]["dtype"] == "float32"
    assert data["repeats"]["ours fp32"][0]["amp"] == "off"
    assert data["summary"][data["peer"]]["speedup_vs_peer"] == 1
    assert data["summary"]["MONAI loop, 0 workers"]["speedup_vs_fp32_peer"] == 1
    assert data["peak_flop_per_s"]["measured_best"]["float32"] > 0
    assert data["config"]["matmul_edges"] == {"float32": 128, "bfloat16": 128}


def test_the_headline_peer_computes_in_ours_precision_even_when_fp32_is_faster():
    """Issue 33: the headline ratio was ours in bf16 against MONAI in fp32 (2.4x), where at
    equal precision it is about 1x. The peer is the MONAI loop in ours' precision, whichever
    loop is faster; the fp32 loop stays in the JSON as ``peer_fp32``."""

    def col(seconds: float, dtype: str) -> dict:
        return {"s_per_step": {"median": seconds}, "dtype": dtype}

    summary = {
        "ours": col(1.0, "bfloat16"),
        "ours fp32": col(2.5, "float32"),
        "MONAI loop, 0 workers": col(0.9, "float32"),  # a (fictional) faster fp32 loop
        "MONAI loop, 0 workers, bf16 autocast": col(1.1, "bfloat16"),
    }
    args = training_throughput.parse(["--workers", "0"])
    cols = training_throughput.monai_columns(args, torch.bfloat16)
    assert list(cols) == ["MONAI loop, 0 workers", "MONAI loop, 0 workers, bf16 autocast"]
    peers = training_throughput.choose_peers(summary, cols)
    assert peers["peer"] == "MONAI loop, 0 workers, bf16 autocast"
    assert peers["peer_fp32"] == "MONAI loop, 0 workers"
    assert peers["headline"]["ratio_equal_precision"] == pytest.approx(1.1)
    assert peers["headline"]["ratio_vs_fp32_loop"] == pytest.approx(0.9)
    # without autocast (an AVX2-only CPU) the fp32 loop is the peer at equal precision
    fp32 = {k: v for k, v in summary.items() if "bf16" not in k}
    fp32["ours"] = col(2.0, "float32")
    plain = training_throughput.monai_columns(args, None)
    assert training_throughput.choose_peers(fp32, plain)["peer"] == "MONAI loop, 0 workers"


def test_the_monai_loop_runs_under_the_given_autocast(scan):
    from napari_asymseg.train.data import ScanData

    args = training_throughput.parse(["--patch", "8", "--batch", "2"])
    cfg = training_throughput.make_config(args, threads=1, amp="off")
    data = ScanData.from_scan(scan, cfg.data)
    plan = training_throughput.make_plan(cfg, data)
    r = training_throughput.measure_monai(data, cfg, plan, 1, 1, 0, torch.bfloat16)
    assert r["amp"] == "bfloat16" and r["s_per_step"] > 0
    assert training_throughput.measure_monai(data, cfg, plan, 1, 1, 0)["amp"] == "off"


def test_the_matmul_peak_stops_growing_at_its_time_budget():
    """A CPU that emulates bf16 (AVX2) measured 4096² for over 10 minutes: the edge now stops
    doubling once the next product would take longer than the budget."""
    rate, edge = training_throughput.matmul_flops_per_s(4096, "bfloat16", budget_s=1e-9)
    assert edge == 256 and rate > 0
    rate, edge = training_throughput.matmul_flops_per_s(1024, "float32", budget_s=60)
    assert edge == 1024 and rate > 0


def test_monai_loop_batches_follow_the_engine_pools(scan):
    from napari_asymseg.train.data import ScanData

    args = training_throughput.parse(["--patch", "8", "--batch", "3"])
    cfg = training_throughput.make_config(args, threads=1)
    data = ScanData.from_scan(scan, cfg.data)
    plan = training_throughput.make_plan(cfg, data)
    loader = training_throughput.monai_loader(data, cfg, plan, 0, 4, seed=0)
    batches = list(loader)
    assert len(batches) == 4
    for batch in batches:
        assert tuple(batch["image"].shape) == (3, 1, *plan.patch_size)
        label = batch["label"][:, 0].long()
        assert set(label.unique().tolist()) <= {-1, 0, 1}
        # every patch is centred on an annotated voxel: never a patch with nothing to learn
        assert all((label[i] >= 0).any() for i in range(3))


def test_real_scans_quick(tmp_path):
    import real_scans

    out = tmp_path / "rs.json"
    data = real_scans.main(["--quick", "--work", str(tmp_path / "work"), "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["table"]["header"] == real_scans.HEADER
    records = data["records"]
    assert set(records) == {"synthetic/ours/0", "synthetic/forest/0", "synthetic/fill/0"}
    for rec in records.values():
        assert 0 <= rec["dsc"] <= 1 and rec["lesions_found"] + rec["lesions_missed"] > 0
        assert rec["painted"]["lesion"] and rec["painted"]["empty"]
    ours = records["synthetic/ours/0"]
    assert ours["shown"] is None and ours["train_s"] > 0  # cross-validation is opt-in
    # the quality figure shown, its interval, the truth inside or not, the wait to it
    assert ours["figure_low"] <= ours["figure"] <= ours["figure_high"]
    assert ours["figure_error"] == pytest.approx(ours["figure"] - ours["dsc"], abs=1e-4)
    assert ours["truth_inside"] == (ours["figure_low"] <= ours["dsc"] <= ours["figure_high"])
    assert ours["to_figure_s"] >= ours["train_s"] > 0
    assert saved["figure_table"]["rows"][0][:2] == ["synthetic", "0"]
    fill = records["synthetic/fill/0"]  # the image-blind peer: lesion only between the slices
    assert fill["dsc_beyond"] == 0 and (fill["dsc_between"] > 0 or fill["skipped"])
    # the network alone is scored beside the prediction that includes the fill: the same
    # beyond the painted slices, never less sensitive between them
    alone = ours["network_alone"]
    assert alone["dsc_beyond"] == ours["dsc_beyond"]
    assert ours["sensitivity"] >= alone["sensitivity"]
    assert any(row[1] == "defaults, network alone" for row in saved["table"]["rows"])
    # resumable: a second run reads the records instead of training again
    again = real_scans.main(["--quick", "--work", str(tmp_path / "work"), "--out", str(out)])
    assert again["records"]["synthetic/ours/0"]["wall_s"] == ours["wall_s"]


def test_quality_figure_quick_scores_the_figure_beside_the_others(tmp_path):
    import quality_figure

    out = tmp_path / "qf.json"
    data = quality_figure.main(
        ["--quick", "--cv", "--work", str(tmp_path / "w"), "--out", str(out)]
    )
    ((key, run),) = data["runs"].items()
    assert key == "figure360/synthetic-0" and 0 <= run["true"] <= 1
    assert run["low"] <= run["figure"] <= run["high"]
    assert run["inside"] == (run["low"] <= run["true"] <= run["high"])
    assert 0 <= run["naive"] <= 1 and 0 <= run["exact"] <= 1 and "cv" in run
    summary = json.loads(out.read_text())["summary"]
    assert summary["runs"] == 1
    assert summary["max_abs_error"] == pytest.approx(abs(run["figure"] - run["true"]), abs=1e-4)


def test_protocol_slices_paint_two_lesion_slices_and_one_empty():
    import real_scans

    truth = np.zeros((30, 4, 4), np.uint8)
    truth[9:19, 1:3, 1:3] = 1
    lesion, empty = real_scans.protocol_slices(truth)
    assert lesion == (12, 15) and len(empty) == 1 and not truth[empty[0]].any()


def test_scores_split_between_and_beyond_the_painted_lesion_slices():
    import real_scans

    truth = np.zeros((10, 4, 4), bool)
    truth[2:8, 1:3, 1:3] = True  # lesion on slices 2-7; painted on 3 and 6
    pred = np.zeros_like(truth)
    pred[3:7] = truth[3:7]  # right between the painted slices, nothing beyond
    unpainted = np.ones_like(truth)
    unpainted[[3, 6]] = False
    rec = real_scans.score(pred, truth, unpainted, [3, 6])
    assert rec["dsc_between"] == 1.0 and rec["dsc_beyond"] == 0.0
    assert rec["lesion_share_between"] == rec["lesion_share_beyond"] == 0.5  # 4, 5 | 2, 7
    assert 0 < rec["dsc"] < 1


def test_summary_reads_back_records_where_nothing_was_predicted():
    import real_scans

    rec = {"dsc": 0.0, "sensitivity": 0.0, "false_positive_voxels": 0, "lesions_found": 0}
    rec |= {"lesions_missed": 1, "wall_s": 1.0, "dsc_between": None, "dsc_beyond": 0.0}
    records = {
        "brain2/ours/0": {**rec, "precision": None, "figure": None},  # NaN written as null
        "brain2/ours/1": {**rec, "precision": 0.5, "figure": 0.2},
    }
    (row,) = real_scans.summarise(records, ["brain2"], "defaults")
    assert row[5].startswith("0.500") and row[8] == "- / 0.00" and row[9] == "0.20"


def test_paint_option_names_other_slices_and_refuses_nonsense():
    import real_scans

    assert real_scans.parse_paint("brain1=11,17/5") == {"brain1": ((11, 17), (5,))}
    for bad in ("brain1=11,x/5", "liver=1,2/3"):
        with pytest.raises(SystemExit, match="--paint"):
            real_scans.parse_paint(bad)


def test_dicom_roundtrip_on_the_synthetic_scan(tmp_path):
    """The DICOM benchmark's plumbing: dcm2niix side by side, a SEG checked by dciodvfy."""
    out = tmp_path / "d.json"
    dicom_roundtrip.main(
        ["--cases", "synthetic", "--work", str(tmp_path), "--repeats", "1", "--out", str(out)]
    )
    case = json.loads(out.read_text())["cases"]["synthetic"]
    assert case["grid_max_mm"] < 1e-3 and case["values_max_abs_diff_vs_dcm2niix"] < 1e-2
    assert case["import_s"]["dcm2niix"] > 0 and case["slices"] == case["shape"][0]
    assert case["seg"]["reference"]["dciodvfy_errors"] == []
    assert case["seg"]["reference"]["read_back_equal"]


def test_cpu_variants_time_a_step_and_restrict_the_isa(tmp_path):
    """Each variant in its own process; the avx2 rows really run with AVX2 kernels only."""
    out = tmp_path / "cv.json"
    args = ["--isa", "native", "avx2", "--variants", "eager", "threads1"]
    cpu_variants.main([*args, "--steps", "1", "--warmup", "1", "--out", str(out)])
    results = json.loads(out.read_text())["results"]
    for isa in ("native", "avx2"):
        rows = {r["variant"]: r for r in results[isa]}
        assert set(rows) == {"eager", "threads1"} and all("error" not in r for r in rows.values())
        assert all(r["s_per_step"] > 0 for r in rows.values())
        assert rows["threads1"]["threads"] == 1 and rows["eager"]["patch"] == [40, 40, 40]
    assert {r["cpu_capability"] for r in results["avx2"]} == {"AVX2"}


def _sphere_case(radius: int = 6):
    """A Case of one sphere lesion (13 slices) for the action benchmark's arms; no scan."""
    import actions

    zz, yy, xx = np.mgrid[:20, :24, :24]
    truth = (zz - 10) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2 <= radius**2
    spacing = (1.0, 1.0, 1.0)
    return actions.Case(
        "sphere", Path("."), None, truth, spacing, actions.lesions_of(truth, spacing)
    )


def test_actions_fill_is_one_action_after_a_pair_and_beats_painting():
    import actions

    case = _sphere_case()
    (lesion,) = case.lesions
    paint = actions.arm_paint(case, lesion, 20)
    fill = actions.arm_fill(case, lesion, 20)
    # painting: one slice per action, the largest (central) slice first
    assert paint["actions"][0] == "paint z10" and len(paint["curve"]) == len(paint["actions"])
    assert paint["curve"] == sorted(paint["curve"])
    # fill: two paints give a pair, then fill + accept is the third action
    assert fill["actions"][:3] == [fill["actions"][0], fill["actions"][1], "fill + accept"]
    assert fill["dsc@3"] > paint["dsc@3"] and fill["noc"] < paint["noc"] <= 20
    assert fill["reached"] and fill["curve"][fill["noc"] - 1] >= actions.LEVEL
    assert actions.summary([0.1, 0.2], ["a", "b"], 2)["noc"] == 2  # never reached: the cap


def test_actions_click_goes_to_the_centre_of_the_largest_error():
    import actions

    case = _sphere_case()
    (lesion,) = case.lesions
    seg = np.zeros(lesion.truth.shape, bool)
    first = actions.next_click(lesion, seg, case.spacing)
    centre = np.array([10, 12, 12]) - lesion.origin
    assert first.inside and np.abs(np.array(first.at) - lesion.origin - centre).max() <= 1
    seg = lesion.truth.copy()
    seg[:, :3] = True  # a false positive slab larger than anything missed
    click = actions.next_click(lesion, seg, case.spacing)
    assert not click.inside and click.y - lesion.origin[1] < 3
    assert actions.next_click(lesion, lesion.truth.copy(), case.spacing) is None


def test_actions_quick(tmp_path):
    import actions

    out = tmp_path / "actions.json"
    args = ["--quick", "--work", str(tmp_path / "work"), "--out", str(out)]
    data = actions.main(args)
    saved = json.loads(out.read_text())
    assert {"machine", "settings", "note", "tables", "records", "goal"} <= set(saved)
    assert "overstate" in saved["note"]
    assert set(data["records"]) == {f"synthetic/{arm}" for arm in actions.ARMS}
    for arm in actions.ARMS:
        for les in data["records"][f"synthetic/{arm}"]["lesions"]:
            assert 1 <= les["noc"] <= 6 and len(les["curve"]) == len(les["actions"]) <= 6
            assert all(0 <= d <= 1 for d in les["curve"])
    loop = data["records"]["synthetic/loop"]
    for les in loop["lesions"]:  # paint 2 slices (fill when they have a gap), train, answers
        assert les["actions"][0].startswith("paint z") and "train" in les["actions"][:4]
    assert loop["seconds"]["train + predict (synthetic)"][0] > 0
    kinds = {row[0] for row in saved["tables"]["seconds"]["rows"]}
    assert {"paint", "train + predict (synthetic)"} <= kinds
    assert any(k.startswith("grow") for k in kinds)
    # resumable: the second run reads the records
    again = actions.main(args)
    assert again["records"]["synthetic/loop"]["wall_s"] == loop["wall_s"]


def test_study_scale_quick_measures_memory_in_child_processes(tmp_path):
    """Issue 36's scale benchmark: a 4-scan study built once, trained on and predicted in
    child processes (their peak memory), and the 2-scan study's time per step against one
    scan's, interleaved."""
    import study_scale

    out, work = tmp_path / "ss.json", tmp_path / "work"
    data = study_scale.main(["--quick", "--work", str(work), "--out", str(out)])
    saved = json.loads(out.read_text())
    keys = {"machine", "n", "shape", "patch", "study", "train", "predict", "step_ratio", "goals"}
    assert keys <= set(saved)
    assert saved["n"] == 4 and saved["patch_fixed_by"] == "cfg.data.patch_size"
    assert saved["study"]["annotated"] == 4  # every scan painted by the protocol
    for run in (saved["train"], saved["predict"]):
        # the child's own peak: above what importing torch and the package took
        assert run["peak_rss_mb"] >= run["imports_peak_mb"] > 50
    assert saved["train"]["prepare_s"] > 0 and saved["train"]["train_s"] > 0
    assert saved["predict"]["predicted"] == 4 and saved["predict"]["skipped"] == []
    ratio = data["step_ratio"]
    assert set(ratio["raw_s"]) == {"one scan", "2-scan study"}
    assert all(len(run) == 4 for runs in ratio["raw_s"].values() for run in runs)
    one, two = ratio["median_s"]["one scan"], ratio["median_s"]["2-scan study"]
    assert ratio["ratio"] == pytest.approx(two / one)
    assert saved["goals"]["step_ratio_met"] == (saved["step_ratio"]["ratio"] <= 1.2)
    # the study is built once: a second run reuses it
    said: list[str] = []
    args = study_scale.parse(["--quick", "--work", str(work)])
    folder, built = study_scale.build(args, said.append)
    assert said == [f"reusing the study in {folder}"] and built == saved["study"]


def test_studies_quick_scores_unseen_scans_beside_the_forest(tmp_path):
    import studies

    work = tmp_path / "work"
    data = studies.main(["--quick", "--work", str(work)])
    records = data["records"]
    assert [(r["series"], r["k"], r["loss"]) for r in records] == [
        ("synthetic-painted", 1, "dice_asym_focal"),
        ("synthetic-painted", 2, "dice_asym_focal"),
    ]
    for rec in records:
        assert 0 <= rec["dsc"] <= 1 and len(rec["per_scan"]) == 1
        assert rec["forest"] is not None and 0 <= rec["forest"]["dsc"] <= 1
        # Li et al.'s diagnostic: unseen lesion margin minus the training patches' margin
        assert rec["logit_shift"] == pytest.approx(rec["unseen_margin"] - rec["train_margin"])
    # the study of 2 scans learned from both, painted by the protocol (2 lesion slices)
    from napari_asymseg.model.load import load_checkpoint

    ckpt = load_checkpoint(work / "models" / "synthetic-painted-2-dice_asym_focal")
    assert len(ckpt["scans"]) == 2
    assert data["table"]["rows"][1][:3] == ["synthetic-painted", 2, "dice_asym_focal"]
    # the table of what was run, without running anything
    again = studies.main(["--quick", "--work", str(work), "--cached-only"])
    assert [r["train_s"] for r in again["records"]] == [r["train_s"] for r in records]
