"""The README's headline numbers against the committed benchmark results (issue 33).

Every number the README quotes from a benchmark must be the one its committed JSON in
``benchmarks/results/`` holds. When a benchmark is re-run (it rewrites its JSON) or a sentence
is edited, a number that no longer matches fails here: fix the sentence to the JSON, or
remove the claim.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = ROOT / "benchmarks" / "results"


def result(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def paragraph(marker: str) -> str:
    """The one README paragraph (blank-line separated) that contains ``marker``."""
    paragraphs = [" ".join(p.split()) for p in README.split("\n\n")]  # one line each
    found = [p for p in paragraphs if marker in p]
    assert len(found) == 1, f"{len(found)} README paragraphs contain {marker!r}"
    return found[0]


def signed(text: str) -> str:
    """The README writes minus as U+2212."""
    return text.replace("−", "-")


def two(x: float) -> str:
    return f"{x:.2f}"


def test_every_results_json_the_readme_names_exists():
    named = set(re.findall(r"`(?:benchmarks/results/)?([\w-]+\.json)`", README))
    assert named, "the README names no results JSON"
    assert {n for n in named if not (RESULTS / n).is_file()} == set()


def test_the_longest_stall_is_the_committed_one():
    data = result("gui_responsiveness")
    text = paragraph("event-loop stall")
    quoted = sorted(int(ms) for ms in re.findall(r"(\d+) ms", text) if ms != "100")
    measured = sorted(round(data[k]["max_ms"]) for k in ("whole_run", "training_steps"))
    assert quoted == measured
    if max(measured) > 100:  # a missed goal is said, not hidden
        assert "not always within the 100 ms" in text


def test_the_training_speed_headline_is_at_equal_precision():
    data = result("training_throughput")
    summary, headline = data["summary"], data["headline"]
    peer = data["peer"]
    # the peer computes in the precision ours trains in (the MONAI loop under the same autocast)
    assert summary[peer]["dtype"] == summary["ours"]["dtype"]
    assert headline["ratio_equal_precision"] == summary["ours"]["speedup_vs_peer"]
    text = paragraph("MONAI's plain training loop")
    ratios = re.findall(r"(\d+\.\d+)×", text)
    # the first ratio quoted is the headline: ours against the peer at equal precision
    assert ratios[0] == two(headline["ratio_equal_precision"])
    # the CPU it was measured on is named, as the JSON records it
    assert "Xeon" in data["machine"]["cpu"] and "Intel Xeon" in text
    assert "amx_bf16" in data["machine"]["cpu_isa"] and "AMX" in text

    # then bf16's own gain, for ours and for MONAI's loop (fp32 time / bf16 time)
    def median(col: str) -> float:
        return summary[col]["s_per_step"]["median"]

    assert ratios[1] == two(median("ours fp32") / median("ours"))
    assert ratios[2] == two(median(data["peer_fp32"]) / median(peer))


def test_the_avx2_ratio_is_the_committed_one():
    data = result("training_throughput-avx2")
    text = paragraph("AVX2-only")
    assert f"{data['summary']['ours']['speedup_vs_peer']:.2f}×" in text


def test_prediction_ratios_and_memory_are_the_committed_ones():
    pred, memory = result("prediction"), result("prediction_memory")
    text = paragraph("sliding_window_inference")
    # equal precision first, then against MONAI's fp32
    assert re.findall(r"(\d+\.\d+)×", text)[:2] == [
        two(pred["speedup_vs_monai_bf16"]),
        two(pred["speedup_vs_monai_fp32"]),
    ]
    # peak - baseline: the stored difference is rounded to 5 digits (3793.5 for 3793.49)
    above = {r["kind"]: r["peak_mib"] - r["baseline_mib"] for r in memory["runs"]}
    assert f"{above['ours']:.0f} MiB above the baseline" in text
    assert f"{above['monai']:,.0f} MiB" in text


def test_the_first_overlay_is_the_committed_range():
    runs = result("gui_cost")["runs"]["dock"]
    seconds = [r["first_overlay_s"] for r in runs]
    text = paragraph("first live overlay")
    assert f"{min(seconds):.1f}–{max(seconds):.1f} s" in text
    if max(seconds) > 10:
        assert "over the 10 s goal" in text


def test_the_real_scan_dscs_are_the_committed_ones():
    data = result("real_scans-planned-figure")
    mean = {(r[0], r[1]): r[3].split(" ")[0] for r in data["table"]["rows"]}  # "0.753 ± 0.005"
    text = paragraph("real-scan benchmark")
    quoted = re.findall(r"\d\.\d{3}", text)
    cases = ("brain1", "colin27", "synthetic")
    expected = [
        *(mean[(c, "planned-figure")] for c in cases),
        *(mean[(c, "forest")] for c in cases),
        *(mean[(c, "fill")] for c in cases),
        *(mean[(c, "planned-figure, network alone")] for c in cases),
        mean[("brain2", "planned-figure")],
        mean[("brain2", "forest")],
    ]
    assert quoted == expected
    assert "neither finds the lesion" in text  # brain2's miss is said
    assert data["machine"]["cpu"] in text  # "Intel(R) Xeon(R) Processor"


def test_the_quality_figure_and_the_wait_are_the_committed_ones():
    import math

    data = result("real_scans-planned-figure")
    runs = [r for k, r in data["records"].items() if "/ours/" in k]
    text = paragraph("quality figure shown after every prediction")
    worst = max(abs(r["figure"] - r["dsc"]) for r in runs)
    assert f"by {math.ceil(worst * 1000) / 1000:.3f} at most on all {len(runs)}" in text
    inside = sum(bool(r["truth_inside"]) for r in runs)
    assert f"inside its interval on {inside} of {len(runs)}" in text
    waits = [r["to_figure_s"] for r in runs]
    assert f"took {min(waits):.0f}-{max(waits):.0f} s from the click" in text


def test_the_asymmetric_claims_are_the_committed_ones():
    data = result("quality")
    text = signed(paragraph("asymmetric mixup"))
    twins = {d: data["trends"][d]["asym_vs_sym"] for d in ("synthetic", "colin27")}
    others = [t[k]["sensitivity"] for t in twins.values() for k in t if k != "asym_mixup"]
    assert all(g > 0 for g in others)
    assert f"+{min(others):.2f} to +{max(others):.2f}" in text
    mixup = [twins[d]["asym_mixup"]["sensitivity"] for d in ("synthetic", "colin27")]
    assert f"+{mixup[0]:.3f} and +{mixup[1]:.3f}" in text
    lost = sum(
        data["summary"][d]["rows"]["asym_mixup"][f]["sensitivity"]["mean"]
        < data["summary"][d]["rows"]["mixup"][f]["sensitivity"]["mean"]
        for d in ("synthetic", "colin27")
        for f in map(str, data["summary"][d]["fractions"])
    )
    assert f"lower in {lost} of the 8" in text

    def margins(row: str) -> list[float]:
        rows = data["summary"]["synthetic"]["rows"][row]
        return [rows[f]["test_fg_margin"]["mean"] for f in rows]

    for row in ("asym_combined", "ce"):
        m = margins(row)
        assert f"{max(m):.2f} to {min(m):.2f}" in text
    # the claim: on the wrong side with CE and every asymmetric technique, on the lesion side
    # with the reweighting losses
    for row in ("ce", "asym_large_margin", "asym_focal", "asym_adversarial", "asym_mixup"):
        assert max(margins(row)) < 0, row
    for row in ("dice", "gdl", "wce"):
        assert min(margins(row)) > 0, row


def test_the_logit_shift_in_the_json_is_signed():
    """The quality JSON's Δ is the signed difference of its stored mean margins (issue 33:
    the magnitudes made test lesions on the wrong side look further from the boundary)."""
    records = result("quality")["records"]
    for r in records:
        m = r["margin"]
        assert r["logit_shift"] == pytest.approx(m["test_fg"] - m["train_fg"], rel=1e-4, abs=2e-4)


def test_the_benchmarks_page_quotes_the_same_headlines():
    """docs/benchmarks.md quotes the committed stall and the equal-precision ratio too."""
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    whole = result("gui_responsiveness")["whole_run"]["max_ms"]
    assert f"**{whole:.0f} ms**" in page
    assert "77–98 ms" not in page.split("no longer describes the product")[-1]
    ratio = result("training_throughput")["headline"]["ratio_equal_precision"]
    assert f"**{ratio:.2f}×**" in page


def test_the_study_sentence_is_the_committed_one():
    records = result("studies")["records"]

    def point(series: str, k: int, loss: str = "dice_asym_focal") -> dict:
        return next(r for r in records if (r["series"], r["k"], r["loss"]) == (series, k, loss))

    text = paragraph("A model for the next patient")
    one, eight = point("synthetic-painted", 1), point("synthetic-painted", 8)
    rise = f"from {two(one['dsc'])} with one annotated scan to {two(eight['dsc'])} with eight"
    assert rise in text
    assert f"{two(one['forest']['dsc'])} and {two(eight['forest']['dsc'])}" in text
    painted, full = point("brain1-brain2-painted", 1), point("brain1-brain2-full", 1)
    assert f"DSC {two(painted['dsc'])} painted on 2 slices, {two(full['dsc'])}" in text
    scale = result("study_scale")
    assert f"{scale['train']['peak_rss_mb'] / 1000:.2f} GB" in text
    assert f"{scale['predict']['peak_rss_mb'] / 1000:.2f} GB" in text
