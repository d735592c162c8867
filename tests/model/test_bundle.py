"""Model bundles: export, reload (torch, TorchScript, ONNX, MONAI), predict, fine-tune, errors."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.cli.main import main
from napari_asymseg.errors import ScanError
from napari_asymseg.infer.predict import predict
from napari_asymseg.model.bundle import BUNDLE_FORMAT, export_bundle, is_bundle, load_bundle
from napari_asymseg.model.checkpoint import model_from_checkpoint
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.loop import fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    scan = tiny_scan(root / "s.zarr")
    list(fit(scan, tiny_config(steps=20, val_every=10), root / "m"))
    bundle = export_bundle(root / "m", root / "tiny-bundle")
    return root, scan, bundle


def _outputs(net, shape=(1, 1, 8, 24, 24)):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, net.eval()(x)


def test_bundle_layout_and_metadata(trained):
    root, scan, bundle = trained
    for f in (
        "configs/metadata.json",
        "configs/inference.json",
        "configs/asymseg.json",
        "models/model.pt",
        "models/model.ts",
        "models/model.onnx",
        "docs/README.md",
    ):
        assert (bundle / f).is_file(), f
    assert is_bundle(bundle) and not is_bundle(root / "m")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert {"monai_version", "pytorch_version", "network_data_format", "task"} <= set(meta)
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"]["1"] == "lesion"
    assert meta["asymseg"]["bundle_format"] == BUNDLE_FORMAT
    assert meta["asymseg"]["onnx_check"]["max_abs_diff"] <= 1e-4
    info = json.loads((bundle / "configs" / "asymseg.json").read_text())
    ckpt = load_checkpoint(root / "m")
    # network, loss and its parameters, regularisers, patch, normalisation... (as JSON)
    assert info["config"] == json.loads(json.dumps(ckpt["config"]))
    assert info["config"]["loss"]["name"] == "ce" and "data" in info["config"]
    assert info["classes"] == ["lesion"] and info["seed"] == ckpt["seed"]
    assert info["annotations_hash"] == ckpt["annotations_hash"]
    assert info["validation"]["dsc"] == ckpt["best_dsc"] and len(info["history"]) == 2
    assert {"torch", "monai", "napari-asymseg"} <= set(info["versions"])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_bundle_reloads_to_the_same_network(trained):
    root, _, bundle = trained
    original, _, _ = model_from_checkpoint(load_checkpoint(root / "m"))
    reloaded, cfg, _ = model_from_checkpoint(load_checkpoint(bundle))
    x, expected = _outputs(original)
    assert torch.equal(reloaded.eval()(x), expected)
    # TorchScript, on a size other than the traced one
    x2, expected2 = _outputs(original, (2, 1, 16, 48, 32))
    scripted = torch.jit.load(str(bundle / "models" / "model.ts"))
    assert torch.allclose(scripted(x2), expected2, atol=1e-5)
    # MONAI's bundle parser builds the same network without the plugin
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    assert torch.equal(net.eval()(x), expected)


def test_onnx_matches_torch_within_1e4(trained):
    import onnxruntime as ort

    root, _, bundle = trained
    original, _, _ = model_from_checkpoint(load_checkpoint(root / "m"))
    session = ort.InferenceSession(str(bundle / "models" / "model.onnx"))
    for shape in ((1, 1, 8, 24, 24), (2, 1, 16, 40, 32)):
        x, expected = _outputs(original, shape)
        (got,) = session.run(None, {"image": x.numpy()})
        assert np.abs(got - expected.numpy()).max() <= 1e-4


def test_bundle_predicts_like_the_model_in_a_fresh_process(trained, tmp_path):
    root, scan, bundle = trained
    list(predict(scan, root / "m"))
    expected = Scan.open(scan.path).result("prediction")[...]
    probability = Scan.open(scan.path).result("probability")[...]
    zipped = export_bundle(root / "m", tmp_path / "tiny", zip=True)
    for model in (bundle, zipped):
        Scan.open(scan.path).write_result("prediction", np.zeros(scan.shape, np.uint8))
        code = subprocess.run(
            [
                sys.executable,
                "-m",
                "napari_asymseg.cli",
                "predict",
                str(scan.path),
                "--model",
                model,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert code.returncode == 0, code.stderr
        again = Scan.open(scan.path)
        np.testing.assert_array_equal(again.result("prediction")[...], expected)
        np.testing.assert_array_equal(again.result("probability")[...], probability)


def test_bundle_can_be_fine_tuned(trained, tmp_path):
    root, scan, bundle = trained
    events = list(fit(scan, tiny_config(steps=4, val_every=4), tmp_path / "ft", init=bundle))
    assert events[-1].steps_done == 4
    assert main(["bundle", str(tmp_path / "ft"), str(tmp_path / "ft-bundle"), "--no-onnx"]) == 0
    assert not (tmp_path / "ft-bundle" / "models" / "model.onnx").exists()


def _copy(bundle, dest):
    import shutil

    shutil.copytree(bundle, dest)
    return dest


def test_damaged_or_foreign_bundles_are_clear_errors(trained, tmp_path):
    _, _, bundle = trained
    bad = _copy(bundle, tmp_path / "flipped")
    data = bytearray((bad / "models" / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "models" / "model.pt").write_bytes(bytes(data))
    with pytest.raises(ScanError, match="checksum"):
        load_bundle(bad)

    missing = _copy(bundle, tmp_path / "missing")
    (missing / "configs" / "asymseg.json").unlink()
    with pytest.raises(ScanError, match="asymseg.json is missing"):
        load_checkpoint(missing)

    newer = _copy(bundle, tmp_path / "newer")
    meta = json.loads((newer / "configs" / "metadata.json").read_text())
    meta["asymseg"]["bundle_format"] = BUNDLE_FORMAT + 1
    (newer / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ScanError, match="newer napari-asymseg"):
        load_bundle(newer)

    foreign = _copy(bundle, tmp_path / "foreign")
    meta.pop("asymseg")
    (foreign / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ScanError, match="not one made by napari-asymseg"):
        load_bundle(foreign)

    other = _copy(bundle, tmp_path / "other-net")
    info = json.loads((other / "configs" / "asymseg.json").read_text())
    info["config"]["model"]["filters"] = [4, 8, 8]
    (other / "configs" / "asymseg.json").write_text(json.dumps(info))
    with pytest.raises(ScanError, match="does not fit this version"):
        model_from_checkpoint(load_checkpoint(other))

    truncated = tmp_path / "truncated.zip"
    whole = export_bundle(bundle, tmp_path / "whole", zip=True)
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ScanError, match="not a zip file|damaged"):
        load_checkpoint(truncated)

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(ScanError, match="unsafe path"):
        load_checkpoint(evil)


def test_bundle_cli_refuses_to_overwrite(trained, tmp_path, capsys):
    root, _, bundle = trained
    assert main(["bundle", str(root / "m"), str(bundle)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["bundle", str(tmp_path / "nothing"), str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_the_documented_example_runs(trained, tmp_path, monkeypatch):
    """docs/export.md's recipe for using a bundle without the plugin works as written."""
    import re
    import shutil
    from pathlib import Path

    root, scan, bundle = trained
    doc = (Path(__file__).parents[2] / "docs" / "export.md").read_text()
    code = re.findall(r"```python\n(.*?)```", doc, re.S)[-1]
    shutil.copytree(bundle, tmp_path / "case01-bundle")
    np.save(tmp_path / "scan.npy", np.asarray(scan.image[...]))
    monkeypatch.chdir(tmp_path)
    env: dict = {}
    exec(compile(code, "docs/export.md", "exec"), env)
    list(predict(scan, root / "m"))
    expected = Scan.open(scan.path).result("prediction")[...]
    assert np.mean(env["mask"] == expected) > 0.999  # same model, same window, same blending
    assert env["patch_logits"].shape[:2] == (1, 2)


def test_the_bundle_carries_the_quality_figure_of_the_trained_scan(tmp_path):
    from napari_asymseg.infer.predict import PredictionDone, predict

    scan = tiny_scan(tmp_path / "s.zarr")
    list(fit(scan, tiny_config(steps=4, val_every=2), tmp_path / "m"))
    before = export_bundle(tmp_path / "m", tmp_path / "before", onnx=False, torchscript=False)
    assert json.loads((before / "configs" / "asymseg.json").read_text())["quality"] is None
    done = [e for e in predict(scan, tmp_path / "m") if isinstance(e, PredictionDone)][0]
    other = tiny_scan(tmp_path / "other.zarr", seed=1)
    list(predict(other, tmp_path / "m"))  # another scan: its figure stays with that scan
    after = export_bundle(tmp_path / "m", tmp_path / "after", onnx=False, torchscript=False)
    quality = json.loads((after / "configs" / "asymseg.json").read_text())["quality"]
    assert done.figure is not None and quality["dsc"] == done.figure.dsc
    assert quality["scan"] == str(scan.path) and quality["low"] <= quality["high"]
