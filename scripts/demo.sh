#!/usr/bin/env bash
# The main job from a fresh clone: set-up, then napari with the dock and the sample scan.
# Without a display it runs the same workflow headless and says where the results are.
#   bash scripts/demo.sh [--headless] [--out DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh napari
export QT_API=pyqt6
exec "$root/.venv/bin/asymseg" demo "$@"
