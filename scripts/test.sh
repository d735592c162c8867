#!/usr/bin/env bash
# The whole test suite from a fresh clone: set-up, lint, then pytest under a virtual display.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh test
bin="$root/.venv/bin"
echo "[test] ruff check + format"
"$bin/ruff" check .
"$bin/ruff" format --check .
echo "[test] mypy"
"$bin/mypy"
echo "[test] pytest"
export QT_API=pyqt6 PYTHONDONTWRITEBYTECODE=1
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
  exec xvfb-run -a -s "-screen 0 1600x1000x24" "$bin/python" -m pytest "$@"
fi
exec "$bin/python" -m pytest "$@"
