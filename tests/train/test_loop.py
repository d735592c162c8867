import math

import numpy as np
import pytest
import torch

from engine_helpers import out_of_memory_above, tiny_config, tiny_scan
from napari_asymseg.errors import ScanError, TrainingError
from napari_asymseg.infer.predict import PredictionDone, WindowDone, predict
from napari_asymseg.model.checkpoint import BEST, CHECKPOINT, model_from_checkpoint
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.store.scan import Scan
from napari_asymseg.train import runs, state
from napari_asymseg.train.device import autocast_dtype, cpu_has_native_bf16, select_device
from napari_asymseg.train.events import EpochEnd, Finished, Notice, Started, StepEnd
from napari_asymseg.train.loop import fit
from napari_asymseg.train.validate import volume_logits


def run(gen):
    return list(gen)


def test_training_learns(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    events = run(fit(scan, tiny_config(steps=60, val_every=20), tmp_path / "m"))
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    losses = [e.loss for e in events if isinstance(e, StepEnd)]
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    vals = [e for e in events if isinstance(e, EpochEnd)]
    assert [v.step for v in vals] == [20, 40, 60]
    assert vals[-1].dsc > 0.6 and vals[-1].dsc >= vals[0].dsc
    assert all(np.isfinite(v.logit_shift) for v in vals)
    assert sum(vals[-1].val_hist) > 0 and sum(vals[-1].train_hist) > 0
    assert events[-1].best_dsc == max(v.dsc for v in vals)
    ckpt = load_checkpoint(tmp_path / "m")
    assert ckpt["annotations_hash"] and ckpt["config"]["train"]["steps"] == 60
    assert {"torch", "monai", "napari-asymseg"} <= set(ckpt["versions"])


def test_cancel_stops_at_once_and_keeps_best(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    gen = fit(scan, tiny_config(steps=1000, val_every=5), tmp_path / "m")
    steps = 0
    for event in gen:
        if isinstance(event, StepEnd):
            steps = event.step
            if steps == 7:
                break
    gen.close()  # the cancel: returns at once, no further step runs
    assert steps == 7
    assert (tmp_path / "m" / BEST).is_file()
    assert load_checkpoint(tmp_path / "m")["step"] == 5
    summary = runs.read_summary(tmp_path / "m")  # the run says it was cancelled, and where
    assert summary["status"] == runs.CANCELLED and summary["steps_done"] == 7
    assert summary["best_step"] == 5 and summary["kind"] == "new"


def test_resume_continues_from_checkpoint(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    run(fit(scan, tiny_config(steps=10, val_every=5), tmp_path / "m"))
    events = run(fit(scan, tiny_config(steps=20, val_every=5), tmp_path / "m", resume=True))
    assert events[0].start_step == 10
    steps = [e.step for e in events if isinstance(e, StepEnd)]
    assert steps == list(range(11, 21))
    assert load_checkpoint(tmp_path / "m" / CHECKPOINT)["step"] == 20


def test_resume_refuses_other_annotations(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    run(fit(scan, tiny_config(steps=5, val_every=5), tmp_path / "m"))
    ann = scan.read_annotations()
    ann[0] = 1
    scan.write_annotations(ann)
    with pytest.raises(ScanError, match="other annotations"):
        run(fit(scan, tiny_config(steps=10, val_every=5), tmp_path / "m", resume=True))


def test_fine_tune_starts_from_the_model(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    first = run(fit(scan, tiny_config(steps=40, val_every=20), tmp_path / "a"))
    cfg = tiny_config(steps=5, val_every=5)
    cfg.model.filters = (4, 8, 8)  # ignored: fine-tuning keeps the network it starts from
    tuned = run(fit(scan, cfg, tmp_path / "b", init=tmp_path / "a"))
    fresh = run(fit(scan, tiny_config(steps=5, val_every=5), tmp_path / "c"))
    loss = lambda evs: np.mean([e.loss for e in evs if isinstance(e, StepEnd)])  # noqa: E731
    assert loss(tuned) < loss(fresh)
    assert tuned[0].parameters == first[0].parameters


def test_no_foreground_is_a_clear_error(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr", annotate=False)
    with pytest.raises(ScanError, match="no annotations"):
        run(fit(scan, tiny_config(), tmp_path / "m"))
    ann = np.zeros(scan.shape, np.uint8)
    ann[3] = 1
    scan.write_annotations(ann)
    with pytest.raises(ScanError, match="no foreground annotated"):
        run(fit(scan, tiny_config(), tmp_path / "m"))


def test_nan_loss_is_reported(tmp_path, monkeypatch):
    scan = tiny_scan(tmp_path / "s.zarr")

    class NanLoss(torch.nn.Module):
        def forward(self, logits, target):
            return logits.sum() * float("nan")

    monkeypatch.setattr(state, "build_loss", lambda name, **kw: NanLoss())
    with pytest.raises(TrainingError, match="lower the learning rate"):
        run(fit(scan, tiny_config(), tmp_path / "m"))


def test_a_loss_that_blows_up_keeps_the_last_good_model(tmp_path, monkeypatch, capsys):
    """NaN after 12 good steps: a one-line error naming the learning rate (exit code 2 in the
    CLI), and the checkpoint and best model of step 10 stay, finite and loadable."""
    from napari_asymseg.cli.main import main

    scan = tiny_scan(tmp_path / "s.zarr")
    calls = {"n": 0}

    class LateNan(torch.nn.Module):
        def forward(self, logits, target):
            calls["n"] += logits.requires_grad  # training steps only, not validation
            target = target[:, 0] if target.dim() == logits.dim() else target
            ce = torch.nn.functional.cross_entropy(logits, target.long(), ignore_index=-1)
            return ce * float("nan") if calls["n"] > 12 else ce

    monkeypatch.setattr(state, "build_loss", lambda name, **kw: LateNan())
    out = tmp_path / "m"
    argv = ["train", str(scan.path), "--out", str(out), "--steps", "30", "--val-every", "5"]
    assert main(argv + ["--filters", "8", "16", "16", "--patch-size", "8", "24", "24"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("asymseg: error")]
    assert len(lines) == 1 and "step 13" in lines[0] and "learning rate" in lines[0]
    for name in ("checkpoint.pt", "best.pt"):
        ckpt = load_checkpoint(out / name)
        assert ckpt["step"] == 10
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_out_of_memory_falls_back_to_a_smaller_batch(tmp_path, monkeypatch):
    scan = tiny_scan(tmp_path / "s.zarr")
    tried = out_of_memory_above(monkeypatch, max_batch=1)
    cfg = tiny_config(steps=4, val_every=4)
    cfg.train.batch_size = 4
    events = list(fit(scan, cfg, tmp_path / "m"))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert notices[0].startswith("the GPU ran out of memory at batch 4: continuing with batch 2")
    assert "batch 1" in notices[1] and len(notices) == 2
    assert tried[:3] == [4, 2, 1] and set(tried[3:]) == {1}
    done = events[-1]
    assert isinstance(done, Finished) and done.steps_done == 4  # every step was trained
    assert cfg.train.batch_size == 4  # the caller's config is not touched


def test_out_of_memory_at_batch_one_on_the_cpu_is_a_clear_error(tmp_path, monkeypatch):
    scan = tiny_scan(tmp_path / "s.zarr")
    out_of_memory_above(monkeypatch, max_batch=0)
    cfg = tiny_config(steps=4, val_every=4)
    cfg.train.batch_size = 2
    with pytest.raises(TrainingError, match="smaller patch size"):
        run(fit(scan, cfg, tmp_path / "m"))


@pytest.mark.parametrize("option", ["adversarial", "mixup", "sam", "sam_a", "smoothing"])
def test_regularisers_train(tmp_path, option):
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=4, val_every=4)
    if option in ("adversarial", "mixup"):
        setattr(cfg.regularizers, option, True)
    elif option == "smoothing":
        cfg.regularizers.label_smoothing = (0.0, 0.1)
    else:
        cfg.regularizers.sam = option
    events = run(fit(scan, cfg, tmp_path / "m"))
    assert all(np.isfinite(e.loss) for e in events if isinstance(e, StepEnd))


def test_predict_streams_into_the_store(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    run(fit(scan, tiny_config(steps=60, val_every=30), tmp_path / "m"))
    events = run(predict(scan, tmp_path / "m"))
    windows = [e for e in events if isinstance(e, WindowDone)]
    assert windows[-1].done == windows[-1].total == scan.shape[0]
    assert isinstance(events[-1], PredictionDone)
    reopened = Scan.open(scan.path)
    pred = reopened.result("prediction")[...]
    prob = reopened.result("probability")[...]
    assert pred.dtype == np.uint8 and prob.dtype == np.float16
    gt = reopened.ground_truth[...]
    dsc = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
    assert dsc > 0.6
    # two classes: the label is the foreground probability thresholded at 0.5
    assert np.mean(pred == (prob.astype(np.float32) > 0.5)) > 0.999
    # the summary the dock shows: lesions (26-connected) and their volume
    from scipy import ndimage

    done = events[-1]
    assert done.lesions == ndimage.label(pred > 0, structure=np.ones((3, 3, 3)))[1] > 0
    assert done.millilitres == pytest.approx((pred > 0).sum() * np.prod(scan.spacing) / 1000)
    assert done.summary() == f"{done.lesions} lesion(s), {done.millilitres:.2f} mL in all"


def test_cancelled_prediction_keeps_old_results(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    run(fit(scan, tiny_config(steps=5, val_every=5), tmp_path / "m"))
    old = np.zeros(scan.shape, np.uint8)
    old[0, 0, 0] = 1
    scan.write_result("prediction", old)
    gen = predict(scan, tmp_path / "m")
    next(gen)
    gen.close()
    np.testing.assert_array_equal(Scan.open(scan.path).result("prediction")[...], old)
    assert not [p for p in (scan.path / "results").iterdir() if p.name.startswith(".")]


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type in (expected, "mps")
    native = torch.bfloat16 if cpu_has_native_bf16() else None
    assert autocast_dtype(torch.device("cpu"), "auto") == native
    assert autocast_dtype(torch.device("cpu"), "off") is None
    assert autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ScanError, match="CUDA is not available"):
            select_device("cuda")


def test_broken_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / BEST).write_bytes(b"garbage")
    with pytest.raises(ScanError, match="damaged"):
        load_checkpoint(tmp_path / "m")
    with pytest.raises(ScanError, match="no model at"):
        load_checkpoint(tmp_path / "nothing")


def test_same_seed_same_run(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=4, val_every=4)
    cfg.train.deterministic = True
    losses = []
    for name in ("a", "b"):
        events = run(fit(scan, cfg, tmp_path / name))
        losses.append([e.loss for e in events if isinstance(e, StepEnd)])
    assert losses[0] == losses[1]
    assert not torch.are_deterministic_algorithms_enabled()  # the setting is restored


def test_bf16_autocast_trains(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    cfg = tiny_config(steps=3, val_every=3)
    cfg.train.amp = "bf16"
    events = run(fit(scan, cfg, tmp_path / "m"))
    assert events[0].amp == "bfloat16"
    assert all(np.isfinite(e.loss) for e in events if isinstance(e, StepEnd))


def test_without_validation_the_latest_model_is_kept(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr", annotate=False)
    ann = np.zeros(scan.shape, np.uint8)
    ann[4] = scan.ground_truth[4] + 1  # one annotated slice: nothing to hold out
    scan.write_annotations(ann)
    cfg = tiny_config(steps=10, val_every=5)
    events = run(fit(scan, cfg, tmp_path / "m"))
    assert events[0].val_voxels == 0
    assert load_checkpoint(tmp_path / "m")["step"] == 10
    assert cfg.train.steps == 10 and cfg.model.filters == (8, 16, 16)  # caller's config intact


def test_prediction_writes_the_risk_map(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    events = run(fit(scan, tiny_config(steps=40, val_every=20), tmp_path / "m"))
    fits = [e.calibration for e in events if isinstance(e, EpochEnd)]
    assert fits[-1] is not None and fits[-1]["scale"] > 0  # Platt fit on the held-out slices
    assert load_checkpoint(tmp_path / "m")["history"][-1]["calibration"] == fits[-1]
    run(predict(scan, tmp_path / "m"))
    reopened = Scan.open(scan.path)
    r = reopened.result("risk")[...].astype(np.float32)
    pred = reopened.result("prediction")[...]
    ann = reopened.read_annotations()
    assert r.shape == scan.shape and r.dtype == np.float32
    assert ((r >= 0) & (r <= 1)).all()
    assert (r[pred > 0] == 0).all()  # a predicted lesion voxel cannot be a false negative
    known = (ann >= 2) & (pred == 0)
    assert (r[known] == 1).all()  # exact where the user annotated a missed lesion
    assert (r[(ann != 0) & ~known] == 0).all()


def test_prediction_with_flips_uses_their_spread(tmp_path):
    scan = tiny_scan(tmp_path / "s.zarr")
    run(fit(scan, tiny_config(steps=10, val_every=10), tmp_path / "m"))
    ckpt = load_checkpoint(tmp_path / "m")
    net, cfg, plan = model_from_checkpoint(ckpt)
    image = np.random.default_rng(0).normal(size=scan.shape).astype(np.float32)
    spread: list[torch.Tensor] = []
    cfg.predict.tta = True
    logits = volume_logits(net, image, plan, cfg, torch.device("cpu"), None, spread=spread)
    assert len(spread) == 1 and spread[0].shape == scan.shape
    assert (spread[0] >= 0).all() and spread[0].max() > 0
    cfg.predict.tta = False
    plain: list[torch.Tensor] = []
    volume_logits(net, image, plan, cfg, torch.device("cpu"), None, spread=plain)
    assert plain == [] and logits.shape == (1, 2, *scan.shape)


def test_fine_tune_is_never_worse_than_its_start(tmp_path, monkeypatch):
    scan = tiny_scan(tmp_path / "s.zarr")
    run(fit(scan, tiny_config(steps=40, val_every=20), tmp_path / "a"))
    start = load_checkpoint(tmp_path / "a")
    cfg = tiny_config(steps=4, val_every=2)
    cfg.train.lr = 5.0  # a destructive rate: every step makes the model worse
    events = run(fit(scan, cfg, tmp_path / "b", init=tmp_path / "a"))
    vals = [e for e in events if isinstance(e, EpochEnd)]
    assert vals[0].step == 0 and vals[0].best  # the starting model, scored first
    tuned = load_checkpoint(tmp_path / "b")
    if all(v.dsc <= vals[0].dsc for v in vals[1:]):
        assert tuned["best_step"] == 0
        for k, v in start["model"].items():
            assert torch.equal(tuned["model"][k], v)
    assert tuned["best_dsc"] == max(v.dsc for v in vals) >= vals[0].dsc
    summary = runs.read_summary(tmp_path / "b")  # its baseline: where it started
    assert summary["status"] == runs.FINISHED and summary["kind"] == "fine-tune"
    assert summary["baseline_dsc"] == pytest.approx(vals[0].dsc)
    assert events[-1].baseline_dsc == pytest.approx(vals[0].dsc)


def test_a_new_run_scores_the_current_model_on_its_own_held_out_slices(tmp_path):
    """compare: the model current before the run, scored on the new run's held-out voxels
    before training, so that the two are compared on the same slices."""
    scan = tiny_scan(tmp_path / "s.zarr")
    first = run(fit(scan, tiny_config(steps=40, val_every=20), tmp_path / "a"))[-1]
    cfg = tiny_config(steps=2, val_every=2)
    events = run(fit(scan, cfg, tmp_path / "b", compare=tmp_path / "a"))
    done = events[-1]
    assert 0.0 <= done.baseline_dsc <= 1.0
    assert done.baseline_dsc == pytest.approx(first.best_dsc, abs=1e-6)  # same held-out slices
    assert runs.read_summary(tmp_path / "b")["baseline_dsc"] == pytest.approx(done.baseline_dsc)
    cfg.data.normalisation = "window"  # a model that reads the image otherwise: not compared
    other = run(fit(scan, cfg, tmp_path / "c", compare=tmp_path / "a"))[-1]
    assert math.isnan(other.baseline_dsc)
    assert runs.read_summary(tmp_path / "c")["baseline_dsc"] is None


def test_resume_writes_the_best_model_a_kill_left_out(tmp_path):
    """A kill between a validation's two saves (checkpoint.pt first, then best.pt) leaves
    best.pt one validation behind: resuming writes the best model from the checkpoint."""
    scan = tiny_scan(tmp_path / "s.zarr")
    run(fit(scan, tiny_config(steps=5, val_every=5), tmp_path / "old"))
    run(fit(scan, tiny_config(steps=10, val_every=5), tmp_path / "m"))
    last = load_checkpoint(tmp_path / "m" / CHECKPOINT)
    if last["best_step"] != 10:
        pytest.skip("the second validation was not the best: nothing to repair")
    (tmp_path / "old" / BEST).replace(tmp_path / "m" / BEST)  # best.pt as the kill left it
    assert load_checkpoint(tmp_path / "m")["step"] == 5
    run(fit(scan, tiny_config(steps=10, val_every=5), tmp_path / "m", resume=True))
    repaired = load_checkpoint(tmp_path / "m")
    assert repaired["step"] == 10
    for k, v in last["model"].items():
        assert torch.equal(repaired["model"][k], v)


def test_a_validation_with_nothing_held_out_is_said_without_nans():
    from napari_asymseg.train.events import EpochEnd

    # one painted lesion slice: nothing held out, every score NaN (the dock said "DSC nan ...")
    quiet = EpochEnd(step=23, epoch=1, train_loss=0.41234, best=True)
    assert quiet.line() == "step 23: training loss 0.4123 (nothing held out)"
    scored = EpochEnd(step=40, epoch=2, dsc=0.8, sensitivity=0.7, precision=0.9,
                      logit_shift=-0.25, best=True)  # fmt: skip
    assert scored.line() == (
        "step 40: val DSC 0.800, sensitivity 0.700, precision 0.900, logit shift -0.25  (best)"
    )
