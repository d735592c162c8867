from __future__ import annotations

import numpy as np
import pytest

from napari_asymseg.store.scan import Scan


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Working copies of samples go to a temporary folder, never the user's home."""
    monkeypatch.setenv("ASYMSEG_HOME", str(tmp_path_factory.mktemp("asymseg-home")))


@pytest.fixture
def volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(100, 20, size=(12, 24, 20)).astype(np.float32)


@pytest.fixture
def labels(volume) -> np.ndarray:
    lab = np.zeros(volume.shape, np.uint8)
    lab[4:7, 8:12, 6:10] = 1
    lab[8:10, 2:5, 2:5] = 2
    return lab


@pytest.fixture
def scan(tmp_path, volume) -> Scan:
    ann = np.zeros(volume.shape, np.uint8)
    ann[5] = 1
    ann[5, 8:12, 6:10] = 2
    return Scan.create(tmp_path / "scan.zarr", volume, spacing=(3.0, 0.7, 0.7), annotations=ann)
