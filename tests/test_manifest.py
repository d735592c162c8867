"""The npe2 manifest: every python_name imports, and the engine stays free of Qt."""

import importlib
import subprocess
import sys
from pathlib import Path

import yaml

import napari_asymseg

MANIFEST = Path(napari_asymseg.__file__).parent / "napari.yaml"


def test_every_python_name_imports():
    manifest = yaml.safe_load(MANIFEST.read_text())
    names = [c["python_name"] for c in manifest["contributions"]["commands"]]
    assert len(names) >= 3
    for name in names:
        module, attr = name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_manifest_validates_with_npe2():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(MANIFEST)
    assert pm.name == "napari-asymseg"
    assert pm.contributions.readers and pm.contributions.sample_data and pm.contributions.widgets


def test_engine_imports_without_qt():
    """Every module outside ``_qt`` imports without napari, Qt or magicgui."""
    code = (
        "import sys, pkgutil, importlib, napari_asymseg\n"
        "for m in pkgutil.walk_packages(napari_asymseg.__path__, 'napari_asymseg.'):\n"
        "    if '._qt' not in m.name and not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = [m for m in ('napari', 'qtpy', 'magicgui', 'PyQt6') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
