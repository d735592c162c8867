import json

import numpy as np
import torch

from engine_helpers import tiny_scan
from napari_asymseg.cli.main import main
from napari_asymseg.store.scan import Scan

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
    from napari_asymseg.model.load import load_checkpoint

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


def test_flag_writes_heatmap_and_ranked_json(tmp_path, capsys):
    scan = tiny_scan(tmp_path / "s.zarr")
    model = str(tmp_path / "m")
    # few steps and no forest teacher: a weak model that misses lesion voxels, so there is
    # something to flag
    weak = ["--steps", "6", "--unpainted", "ignore", "--p-anywhere", "0", "--no-estimate"]
    assert main(["train", str(scan.path), "--out", model, *weak, *TINY]) == 0
    # train predicts the scan, as the dock does, and prints the quality figure
    assert Scan.open(scan.path).result("prediction") is not None
    assert "quality on unpainted voxels" in capsys.readouterr().out
    assert main(["info", str(scan.path)]) == 0  # which info shows as it was last shown
    assert "quality figure" in capsys.readouterr().out
    fresh = tiny_scan(tmp_path / "fresh.zarr")
    assert main(["flag", str(fresh.path)]) == 2  # no prediction yet: a clear error
    assert "no risk map" in capsys.readouterr().err
    out = tmp_path / "flags.json"
    assert main(["flag", str(scan.path), "--model", model, "--json", str(out)]) == 0
    assert "flag(s)" in capsys.readouterr().out
    report = json.loads(out.read_text())
    flags = report["flags"]
    assert Scan.open(scan.path).result("risk") is not None
    assert flags and [f["rank"] for f in flags] == list(range(1, len(flags) + 1))
    ranked = [f["expected_missed"] for f in flags if f["known_misses"] == 0]
    assert ranked == sorted(ranked, reverse=True)
    # mark the first done (by its id, the review queue's): remembered, last in the list
    first = str(flags[0]["id"])
    assert main(["flag", str(scan.path), "--done", first, "--json", str(out)]) == 0
    again = json.loads(out.read_text())["flags"]
    status = [f["status"] for f in again]
    assert "done" in status and status == sorted(status, key=lambda s: s == "done")
    assert flags[0]["center"] in [f["center"] for f in again if f["status"] == "done"]
    assert main(["flag", str(scan.path), "--done", "99"]) == 2
    assert main(["flag", str(scan.path), "--tta"]) == 2  # flips need a model to predict with


def test_review_ranks_both_kinds_and_answers_by_id(tmp_path, capsys):
    scan = tiny_scan(tmp_path / "s.zarr")
    model = str(tmp_path / "m")
    weak = ["--steps", "6", "--unpainted", "ignore", "--p-anywhere", "0", "--no-estimate"]
    assert main(["train", str(scan.path), "--out", model, *weak, *TINY]) == 0
    out = tmp_path / "queue.json"
    assert main(["review", str(scan.path), "--model", model, "--json", str(out)]) == 0
    assert "open item(s)" in capsys.readouterr().out
    report = json.loads(out.read_text())
    items = report["items"]
    assert items and [i["rank"] for i in items] == list(range(1, len(items) + 1))
    gains = [i["gain"] for i in items]
    assert gains == sorted(gains, reverse=True)
    assert {i["kind"] for i in items} <= {"miss", "false_alarm"}
    # a known false alarm where nobody painted, on the stored prediction: answer it by id
    stored = Scan.open(scan.path)
    free = stored.read_annotations() == 0
    z = int(np.flatnonzero(free.all(axis=(1, 2)))[0])
    pred = np.zeros(stored.shape, np.uint8)
    pred[z, 2:6, 2:6] = 1
    stored.write_result("prediction", pred)
    stored.write_result("probability", pred * np.float32(0.6))
    assert main(["review", str(scan.path), "--json", str(out)]) == 0
    items = json.loads(out.read_text())["items"]
    alarm = next(i for i in items if i["kind"] == "false_alarm")
    assert alarm["voxels"] == 16 and alarm["center"][0] == z
    before = Scan.open(scan.path).read_annotations()
    capsys.readouterr()
    assert main(["review", str(scan.path), "--reject", str(alarm["id"]), "--json", str(out)]) == 0
    # the answered voxels are painted now: the quality figure of what is left, at once
    assert "quality on unpainted voxels" in capsys.readouterr().out
    assert Scan.open(scan.path).read_attr("quality_figure") is not None
    after = Scan.open(scan.path).read_annotations()
    changed = after != before
    assert changed.sum() == alarm["voxels"] and (after[changed] == 1).all()
    again = json.loads(out.read_text())["items"]
    answered = [i for i in again if i["status"] != "open"]
    assert [i["center"] for i in answered] == [alarm["center"]]
    assert answered[0]["status"] == "not_lesion" and again[-1] == answered[0]
    assert main(["review", str(scan.path), "--accept", "999"]) == 2
    # an answer is given once; answering and predicting again in one command is refused
    before = Scan.open(scan.path).read_annotations()
    assert main(["review", str(scan.path), "--accept", str(alarm["id"])]) == 2
    assert "answered already" in capsys.readouterr().err
    open_id = str(next(i["id"] for i in again if i["status"] == "open"))
    assert main(["review", str(scan.path), "--model", model, "--reject", open_id]) == 2
    assert "answer first" in capsys.readouterr().err
    assert (Scan.open(scan.path).read_annotations() == before).all()


def test_training_again_never_replaces_a_model_unasked(tmp_path, capsys):
    first = tiny_scan(tmp_path / "a.zarr")
    second = tiny_scan(tmp_path / "b.zarr", seed=1)
    model = tmp_path / "m"
    run = ["--out", str(model), "--steps", "2", "--val-every", "2", *TINY]
    assert main(["train", str(first.path), *run]) == 0
    before = (model / "best.pt").read_bytes()
    capsys.readouterr()
    # the default --out is shared by every scan: a second scan's training must not replace it
    assert main(["train", str(second.path), *run]) == 2
    err = capsys.readouterr().err
    assert f"{model} already holds a model (best.pt)" in err and "--overwrite" in err
    assert err.count("\n") == 1  # one line, no traceback
    assert (model / "best.pt").read_bytes() == before
    # asked for: the earlier run's files are gone, the new model is the second scan's
    assert main(["train", str(second.path), *run, "--overwrite"]) == 0
    saved = torch.load(model / "best.pt", weights_only=True)
    assert saved["scan"] == str(second.path)


def test_train_on_a_study_learns_every_annotated_scan_into_its_models(tmp_path, capsys):
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.study.study import Study
    from napari_asymseg.train import runs

    for i in range(3):
        tiny_scan(tmp_path / "src" / f"p{i}.zarr", seed=i, annotate=i < 2)
    study = Study.init(tmp_path / "study")
    study.add(sorted((tmp_path / "src").iterdir()))
    assert main(["train", str(study.path), "--steps", "4", "--val-every", "2", *TINY]) == 0
    out = capsys.readouterr()
    assert "preparing scan 2 of 2: p1.zarr" in out.err
    current = runs.current_model(study.path)
    assert current is not None and current.parent == study.models
    assert f"the study's current model: {current}" in out.out
    learned = [s["scan"] for s in load_checkpoint(current)["scans"]]
    assert learned == [str(study.scan_path("p0")), str(study.scan_path("p1"))]
    # a scan of the study is predicted with the study's current model
    assert runs.current_model(study.scan_path("p2")) == current


def test_train_on_scans_named_together(tmp_path, capsys):
    from napari_asymseg.model.load import load_checkpoint

    a, b = tiny_scan(tmp_path / "a.zarr"), tiny_scan(tmp_path / "b.zarr", seed=1)
    model = tmp_path / "m"
    args = ["train", str(a.path), str(b.path), "--out", str(model), "--steps", "4"]
    assert main([*args, "--val-every", "2", *TINY]) == 0
    assert len(load_checkpoint(model)["scans"]) == 2
    assert main(["train", str(a.path), str(a.path), "--out", str(tmp_path / "n"), *TINY]) == 2
    assert "a.zarr listed twice: name each scan once" in capsys.readouterr().err
