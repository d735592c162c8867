#!/usr/bin/env bash
# Idempotent set-up on a Debian machine: system libraries, .venv, the plugin and its extras.
#   bash scripts/setup.sh [napari|test]
# Re-running is cheap: pip is skipped while pyproject.toml is unchanged.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extra="${1:-napari}"
py="${PYTHON:-python3}"
venv="$root/.venv"
say() { printf '[setup] %s\n' "$*" >&2; }

# --- system packages: a virtual display and the libraries Qt 6 needs to draw -------------------
apt_pkgs=(xvfb xauth libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0
          libxcb-render-util0 libxcb-shape0 libxcb-randr0 libxcb-xinerama0 libegl1 libgl1
          libdbus-1-3 libfontconfig1 libglib2.0-0)
# tests: the Colin27 sample, and the DICOM checks' independent tools (dcm2niix, dciodvfy)
[ "$extra" = test ] && apt_pkgs+=(mricron-data dcm2niix dicom3tools)
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo -n"
  say "installing system packages: ${missing[*]}"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
         $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    say "could not install ${missing[*]} (needs root); the viewer may not start without them"
  fi
fi

# --- the virtual environment ------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    say "Python >= 3.11 is needed (found $("$py" --version)); set PYTHON=/path/to/python3.11"; exit 1; }
  say "creating $venv"
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
stamp="$venv/.asymseg-$extra"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

# --- torch: never let a plain `torch>=...` pull the multi-GB CUDA build when the machine offers
# a local build (pip's find-links, e.g. a CPU wheel). Without one, pip picks what fits the
# machine, so GPU users keep their CUDA build. ASYMSEG_TORCH overrides, e.g. "torch==2.5.1".
has_torch() { "$venv/bin/python" -c 'import importlib.metadata as m; m.version("torch")' 2>/dev/null; }
if ! has_torch; then
  spec="${ASYMSEG_TORCH:-}"
  if [ -z "$spec" ]; then
    report="$(mktemp)"
    if "${pip[@]}" install -q --dry-run --no-index --no-deps --ignore-installed \
         --report "$report" torch >/dev/null 2>&1; then
      spec="torch==$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["install"][0]["metadata"]["version"])' "$report")"
      say "using the local torch build: $spec"
    fi
    rm -f "$report"
  fi
  if [ -n "$spec" ]; then "${pip[@]}" install -q "$spec"; fi
fi
constraints="$(mktemp)"
# keep the torch we have: no surprise CUDA download
"$venv/bin/python" - >"$constraints" <<'PY'
import importlib.metadata as m

try:
    print(f"torch=={m.version('torch')}")
except m.PackageNotFoundError:
    pass
PY
say "installing napari-asymseg[$extra] into $venv"
"${pip[@]}" install -q -c "$constraints" -e ".[$extra]"
rm -f "$constraints"
echo "$want" >"$stamp"
