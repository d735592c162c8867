"""Models load without running code: a checkpoint or bundle whose pickle would is refused."""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
import torch

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.cli.main import main
from napari_asymseg.errors import ScanError
from napari_asymseg.model.bundle import export_bundle
from napari_asymseg.model.checkpoint import (
    BEST,
    CHECKPOINT,
    model_from_checkpoint,
    plain,
    save_atomic,
)
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.loop import fit


class WritesAFile:
    """Unpickling this writes ``target``: what a shared checkpoint could do with any code."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.target, "this ran on load"))


class CallsExec:
    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').write('this ran on load')",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoint")
    scan = tiny_scan(root / "s.zarr")
    list(fit(scan, tiny_config(steps=4, val_every=2), root / "m"))
    return root / "m"


def _evil(tmp_path, trained, payload=WritesAFile, name="evil.pt"):
    """A checkpoint that looks right and would write ``pwned.txt`` when unpickled."""
    target = tmp_path / "pwned.txt"
    ckpt = load_checkpoint(trained)
    ckpt["history"] = [*ckpt["history"], {"note": payload(target)}]
    torch.save(ckpt, tmp_path / name)
    return tmp_path / name, target


def test_a_trained_model_holds_only_plain_values_and_loads(trained):
    for name in (BEST, CHECKPOINT):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(trained / name) == []
    ckpt = load_checkpoint(trained)
    assert type(ckpt["versions"]["torch"]) is str
    net, cfg, _ = model_from_checkpoint(ckpt)
    assert cfg.loss.name == "ce" and sum(p.numel() for p in net.parameters()) > 0


def test_older_checkpoints_with_numpy_scalars_and_torch_version_still_load(trained, tmp_path):
    ckpt = load_checkpoint(trained)
    ckpt["versions"]["torch"] = torch.__version__  # a TorchVersion, as earlier versions saved
    ckpt["history"][-1]["dsc"] = np.float64(0.75)
    ckpt["history"][-1]["epoch"] = np.int64(2)
    torch.save(ckpt, tmp_path / "old.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "old.pt")
    back = load_checkpoint(tmp_path / "old.pt")
    assert back["history"][-1]["dsc"] == 0.75 and back["versions"]["torch"] == torch.__version__
    model_from_checkpoint(back)

    save_atomic(ckpt, tmp_path / "new.pt")  # the saver writes plain values only
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "new.pt") == []
    again = load_checkpoint(tmp_path / "new.pt")
    assert type(again["history"][-1]["dsc"]) is float and type(again["history"][-1]["epoch"]) is int
    assert type(again["versions"]["torch"]) is str


def test_plain_keeps_tensors_and_state_dict_metadata():
    state = torch.nn.BatchNorm3d(2).state_dict()
    out = plain({"model": state, "h": [np.float32(1.5), (np.int64(3), "x")], "n": None})
    assert out["model"] is state and hasattr(out["model"], "_metadata")
    assert out["h"] == [1.5, (3, "x")] and type(out["h"][1][0]) is int and out["n"] is None


@pytest.mark.parametrize("payload", [WritesAFile, CallsExec])
def test_a_checkpoint_that_would_run_code_is_refused(trained, tmp_path, payload):
    evil, target = _evil(tmp_path, trained, payload)
    with pytest.raises(ScanError) as info:
        load_checkpoint(evil)
    message = str(info.value)
    assert "not a safe model file" in message and "\n" not in message
    assert ("getattr" if payload is WritesAFile else "exec") in message  # what it would call
    assert "load only models you trust" in message
    assert not target.exists()  # nothing ran

    folder = tmp_path / "model-folder"  # the same as a model folder's best model
    folder.mkdir()
    shutil.copy(evil, folder / BEST)
    with pytest.raises(ScanError, match="not a safe model file"):
        load_checkpoint(folder)
    assert not target.exists()


def test_a_damaged_checkpoint_is_still_called_damaged(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ScanError, match="damaged") as info:
        load_checkpoint(tmp_path / "junk.pt")
    assert "not a safe" not in str(info.value)


def test_predict_refuses_a_malicious_model_and_writes_nothing(trained, tmp_path, scan, capsys):
    evil, target = _evil(tmp_path, trained)
    before = sorted(p.relative_to(scan.path) for p in scan.path.rglob("*"))
    assert main(["predict", str(scan.path), "--model", str(evil)]) == 2
    err = capsys.readouterr().err
    assert "not a safe model file" in err and err.count("\n") == 1
    assert not target.exists()
    assert Scan.open(scan.path).result("prediction") is None
    assert sorted(p.relative_to(scan.path) for p in scan.path.rglob("*")) == before

    assert main(["train", str(scan.path), "--init", str(evil), "--out", str(tmp_path / "t")]) == 2
    assert "not a safe model file" in capsys.readouterr().err and not target.exists()


def _evil_bundle(trained, tmp_path):
    """A bundle whose weights would write ``pwned.txt``, with a matching checksum."""
    bundle = export_bundle(trained, tmp_path / "b", onnx=False, torchscript=False)
    target = tmp_path / "pwned.txt"
    weights = bundle / "models" / "model.pt"
    torch.save({"weight": torch.zeros(1), "x": WritesAFile(target)}, weights)
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["asymseg"]["files_sha256"]["models/model.pt"] = hashlib.sha256(
        weights.read_bytes()
    ).hexdigest()
    meta_file.write_text(json.dumps(meta))
    zipped = tmp_path / "b.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in sorted(bundle.rglob("*")):
            if f.is_file():
                zf.write(f, pathlib.Path("b") / f.relative_to(bundle))
    return bundle, zipped, target


def test_a_bundle_whose_weights_would_run_code_is_refused(trained, tmp_path, scan, capsys):
    bundle, zipped, target = _evil_bundle(trained, tmp_path)
    for source in (bundle, zipped):
        with pytest.raises(ScanError, match="not a safe model file") as info:
            load_checkpoint(source)
        assert "\n" not in str(info.value) and not target.exists()
        assert main(["predict", str(scan.path), "--model", str(source)]) == 2
        err = capsys.readouterr().err
        assert "not a safe model file" in err and err.count("\n") == 1
    assert not target.exists()
    assert Scan.open(scan.path).result("prediction") is None
    with pytest.raises(ScanError, match="not a safe model file"):  # nor is it re-exported
        export_bundle(bundle, tmp_path / "again")
    assert not (tmp_path / "again").exists() and not target.exists()
