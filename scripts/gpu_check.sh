#!/usr/bin/env bash
# The GPU check (issue 22): one prepared script for a lent accelerator, at most ~8 minutes.
#   bash scripts/gpu_check.sh [OUT_DIR]        (default: $OUT, else gpu-check/)
# 1. the CUDA tests (tests/train/test_cuda.py: AMP quality, CPU/GPU agreement, memory given
#    back, the out-of-memory fallback, NCCL DDP, the dock on CUDA where napari is installed);
# 2. training throughput against the MONAI loop, on the GPU, side by side;
# 3. prediction throughput against MONAI's sliding_window_inference, on the GPU, 256x512x512;
# 4. the peak GPU (and host) memory predicting a 512³ scan, ours against MONAI's.
# Writes summary.md (a table), the benchmarks' JSON and the logs under OUT_DIR. Without CUDA it
# says so in one line and exits 0. Packages the machine lacks may travel as wheels in .whl/
# (installed into /tmp/site first); the sources are used from src/ when the package is not
# installed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-${OUT:-gpu-check}}"
py="${PYTHON:-}"
[ -z "$py" ] && { [ -x .venv/bin/python ] && py=.venv/bin/python || py=python3; }
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing to check"
  exit 0
fi
mkdir -p "$out"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$py" -c 'import napari_asymseg' 2>/dev/null || export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 ASYMSEG_HOME="$(mktemp -d)"
"$py" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"gpu_check: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}")' | tee "$out/device.txt"

marks="cuda"
"$py" -c 'import napari, pytestqt' 2>/dev/null || marks="cuda and not viewer"
display=()
if [ "$marks" = cuda ] && [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
  display=(xvfb-run -a -s "-screen 0 1600x1000x24")
fi
status=0
timeout 210 "${display[@]}" "$py" -m pytest tests/train/test_cuda.py -m "$marks" -q \
  -p no:cacheprovider \
  --junitxml "$out/cuda-tests.xml" 2>&1 | tee "$out/cuda-tests.log" || status=1
timeout 75 "$py" benchmarks/training_throughput.py --device cuda --repeats 2 --steps 8 \
  --workers 0 --matmul 8192 --out "$out/training_throughput.json" 2>&1 \
  | tee "$out/training.log" || status=1
timeout 75 "$py" benchmarks/prediction.py --device cuda --shape 256 512 512 --repeats 2 \
  --out "$out/prediction.json" 2>&1 | tee "$out/prediction.log" || status=1
timeout 100 "$py" benchmarks/prediction_memory.py --device cuda --size 512 \
  --out "$out/prediction_memory.json" 2>&1 | tee "$out/memory.log" || status=1
"$py" - "$out" <<'PY' | tee "$out/summary.md"
import json, re, sys
from pathlib import Path

out = Path(sys.argv[1])
print(f"# GPU check: {(out / 'device.txt').read_text().strip().removeprefix('gpu_check: ')}\n")
log = (out / "cuda-tests.log").read_text() if (out / "cuda-tests.log").exists() else ""
tally = re.findall(r"(\d+) (passed|failed|skipped|error)", log)
print("CUDA tests: " + (", ".join(f"{n} {w}" for n, w in tally) or "did not run"))
rows = []
tt = out / "training_throughput.json"
if tt.exists():
    d = json.loads(tt.read_text())
    for col, s in d["summary"].items():
        rows.append(["training: " + col, f"{s['s_per_step']['median']:.4f} s/step", f"{s['speedup_vs_peer']:.2f}x", s["dtype"]])
pr = out / "prediction.json"
if pr.exists():
    d = json.loads(pr.read_text())
    for col, sec in d["median_seconds"].items():
        rows.append([f"prediction {'x'.join(map(str, d['shape']))}: {col}", f"{sec:.2f} s", f"{sec / d['median_seconds']['ours']:.2f}x (ours faster by)", d["ours_precision"]])
pm = out / "prediction_memory.json"
if pm.exists():
    d = json.loads(pm.read_text())
    for r in d["runs"]:
        if "failed" not in r:
            rows.append([f"memory 512³: {r['kind']}", f"GPU +{r['gpu_above_baseline_mib']:.0f} MiB", f"host +{r['above_baseline_mib']:.0f} MiB", f"{r['seconds']:.1f} s"])
print("\n| run | time | vs peer | precision |\n|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(map(str, r)) + " |")
PY
exit $status
