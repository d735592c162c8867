import json

import numpy as np

from engine_helpers import tiny_scan
from napari_asymseg.cli import main
from napari_asymseg.store import Scan

TINY = [
    "--filters",
    "8",
    "16",
    "16",
    "--patch-size",
    "8",
    "24",
    "24",
    "--lr",
    "0.01",
    "--loss",
    "ce",
    "--val-fraction",
    "0.34",
]


def test_train_predict_evaluate(tmp_path, capsys):
    scan = tiny_scan(tmp_path / "s.zarr")
    model = str(tmp_path / "m")
    assert (
        main(["train", str(scan.path), "--out", model, "--steps", "40", "--val-every", "20", *TINY])
        == 0
    )
    out = capsys.readouterr()
    assert "best validation DSC" in out.out and "step 40: val DSC" in out.out + out.err
    assert main(["predict", str(scan.path), "--model", model]) == 0
    assert Scan.open(scan.path).result("prediction") is not None
    capsys.readouterr()
    assert main(["evaluate", str(scan.path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"]["lesion"]["dsc"] > 0.5


def test_loss_params_and_preset(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    code = main(
        [
            "train",
            str(scan.path),
            "--out",
            str(tmp_path / "m"),
            "--steps",
            "2",
            "--val-every",
            "2",
            *TINY[:-4],
            "--loss",
            "asym_focal",
            "--loss-param",
            "margin=1",
            "--preset",
            "asym_combined",
        ]
    )
    assert code == 0
    from napari_asymseg.engine import load_checkpoint

    cfg = load_checkpoint(tmp_path / "m")["config"]
    assert cfg["loss"]["params"]["margin"] == 1 and cfg["regularizers"]["mixup"]


def test_bad_training_input_exit_2(tmp_path, capsys):
    scan = tiny_scan(tmp_path / "s.zarr", annotate=False)
    assert main(["train", str(scan.path), "--out", str(tmp_path / "m"), *TINY]) == 2
    assert "no annotations" in capsys.readouterr().err
    scan.write_annotations(np.ones(scan.shape, np.uint8))
    assert main(["train", str(scan.path), "--out", str(tmp_path / "m"), *TINY]) == 2
    assert "no foreground annotated" in capsys.readouterr().err
    code = main(["train", str(scan.path), "--out", str(tmp_path / "m"), "--loss-param", "x=1"])
    assert code == 2
    assert main(["evaluate", str(tmp_path / "missing.zarr")]) == 2
