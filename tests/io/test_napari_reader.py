import numpy as np
import pytest
import zarr

from napari_asymseg.io.napari_reader import get_reader, is_scan, read_scan, sample_lesions
from napari_asymseg.store.scan import Scan


def roles(layers):
    return {
        kwargs["metadata"]["asymseg"]["role"]: (data, kwargs, kind) for data, kwargs, kind in layers
    }


def test_reader_accepts_scans_only(tmp_path, scan, volume):
    assert get_reader(str(scan.path)) is read_scan
    assert get_reader([str(scan.path)]) is read_scan
    assert get_reader([str(scan.path), str(scan.path)]) is None
    assert get_reader(str(tmp_path / "missing.zarr")) is None
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    assert get_reader(str(tmp_path / "plain.zarr")) is None  # left to other readers
    (tmp_path / "broken.zarr").mkdir()
    (tmp_path / "broken.zarr" / "zarr.json").write_text("{")
    assert not is_scan(tmp_path / "broken.zarr")


def test_layers_and_scale(scan):
    layers = roles(read_scan(str(scan.path)))
    assert set(layers) == {"image", "annotations"}
    image, kwargs, kind = layers["image"]
    assert kind == "image" and kwargs["scale"] == (3.0, 0.7, 0.7)
    assert not kwargs["multiscale"]
    lo, hi = kwargs["contrast_limits"]
    assert lo < 100 < hi
    ann, kwargs, kind = layers["annotations"]
    assert kind == "labels" and isinstance(ann, np.ndarray)  # in memory: painting is instant
    np.testing.assert_array_equal(ann, scan.read_annotations())
    assert kwargs["scale"] == (3.0, 0.7, 0.7)
    assert kwargs["metadata"]["asymseg"]["scan"] == str(scan.path)


def test_results_become_layers(scan):
    pred = np.zeros(scan.shape, np.uint8)
    pred[5, 8:12, 6:10] = 1
    scan.write_result("prediction", pred)
    scan.write_result("probability", pred * 0.8)
    scan.write_result("risk", np.zeros(scan.shape, np.float32))
    layers = roles(read_scan(str(scan.path)))
    assert layers["prediction"][2] == "labels"
    assert layers["probability"][1]["blending"] == "additive"
    assert layers["risk"][1]["contrast_limits"] == (0.0, 0.5)
    np.testing.assert_array_equal(np.asarray(layers["prediction"][0]), pred)


def test_multiscale_scan_layers(tmp_path):
    image = np.random.default_rng(0).normal(size=(4, 256, 256)).astype(np.float32)
    scan = Scan.create(tmp_path / "m.zarr", image, spacing=(5, 0.7, 0.7), multiscale=True)
    data, kwargs, _ = roles(read_scan(scan.path))["image"]
    assert kwargs["multiscale"] and isinstance(data, list) and len(data) > 1
    assert data[0].shape == image.shape


def test_sample_data_contribution_is_a_working_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYMSEG_HOME", str(tmp_path / "home"))
    layers = roles(sample_lesions())
    path = layers["image"][1]["metadata"]["asymseg"]["scan"]
    assert path.startswith(str(tmp_path / "home"))
    ann = layers["annotations"][0]
    assert (ann >= 2).any() and (ann == 0).any()  # sparse: some lesion, much unannotated
    assert layers["image"][1]["scale"] == pytest.approx((2.0, 0.8, 0.8))
