#!/usr/bin/env bash
# The wheels scripts/gpu_check.sh needs on a lent GPU machine that has torch but nothing can be
# fetched (the H200 image: Python 3.12, torch, numpy, scipy, scikit-image, onnx, pytest...).
#   bash scripts/gpu_wheels.sh          # here, where PyPI is reachable: fills .whl/ (~25 MB)
# Then carry ".whl" with the device run; gpu_check.sh installs them into /tmp/site. The
# versions are the ones this project's CI runs; the list is what the CUDA tests and the GPU
# benchmarks import beyond that image (found with python -X importtime on the test modules).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-.venv/bin/python}"
pkgs=(monai==1.6.1 zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
      nibabel==5.4.2 pydicom==3.0.2 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
      referencing==0.37.0 rpds-py==2026.9.1)
platforms=()
for n in 28 27 17; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
mkdir -p .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d .whl "${pkgs[@]}"
du -sh .whl
