"""The npe2 manifest: every python_name imports and npe2 accepts the file.

That the engine imports without Qt is held in test_architecture.py."""

import importlib
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
