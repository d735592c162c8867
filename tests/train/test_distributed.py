"""Training under torchrun: environment detection, refusals, and real 2-process runs (gloo, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.cli.main import main
from napari_asymseg.errors import ClearError
from napari_asymseg.infer.predict import predict as engine_predict
from napari_asymseg.model.bundle import export_bundle, load_bundle
from napari_asymseg.model.checkpoint import BEST, CHECKPOINT, model_from_checkpoint
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.distributed import (
    BACKEND_ENV,
    DistributedError,
    Launch,
    backend_for,
    launch_from_env,
    rank_device,
    session,
)
from napari_asymseg.train.loop import fit

TORCHRUN_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")
TINY = [
    *("--filters", "8", "16", "16"),
    *("--patch-size", "8", "24", "24"),
    *("--lr", "0.01", "--loss", "ce", "--val-fraction", "0.34"),
    *("--threads", "1", "--device", "cpu", "--amp", "off"),
]


# ------------------------------------------------------------------------------ detection
def test_launch_from_env():
    assert launch_from_env({}) is None
    assert launch_from_env({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) is None
    assert launch_from_env({"WORLD_SIZE": "", "RANK": "3"}) is None
    got = launch_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert got == Launch(rank=3, local_rank=1, world_size=4) and not got.is_main
    assert launch_from_env({"WORLD_SIZE": "2", "RANK": "0"}) == Launch(0, 0, 2)  # LOCAL = RANK
    assert launch_from_env({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}).is_main
    for env in (
        {"WORLD_SIZE": "two", "RANK": "0"},
        {"WORLD_SIZE": "2"},
        {"WORLD_SIZE": "2", "RANK": "2"},
        {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"},
    ):
        with pytest.raises(DistributedError) as info:
            launch_from_env(env)
        assert isinstance(info.value, ClearError) and "\n" not in str(info.value)
        assert "torchrun" in str(info.value)


def test_backend_and_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 1)
    assert backend_for(cpu, {}) == "gloo" and backend_for(cuda, {}) == "nccl"
    assert backend_for(cuda, {BACKEND_ENV: "Gloo"}) == "gloo"
    with pytest.raises(DistributedError, match="nccl needs CUDA"):
        backend_for(cpu, {BACKEND_ENV: "nccl"})
    two = Launch(1, 1, 2)
    assert rank_device(two, "cpu") == cpu
    if not torch.cuda.is_available():
        assert rank_device(two, "auto") == cpu
        with pytest.raises(DistributedError, match="CUDA is not available"):
            rank_device(two, "cuda")
    for name, match in (("cuda:1", "LOCAL_RANK"), ("mps", "LOCAL_RANK"), ("tpu", "unknown")):
        with pytest.raises(DistributedError, match=match):
            rank_device(two, name)


def test_single_process_is_unchanged(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    with session("auto") as world:
        assert world is None
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())


def test_cli_refuses_a_shared_device_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    scan = tiny_scan(tmp_path / "s.zarr")
    code = main(["train", str(scan.path), "--out", str(tmp_path / "m"), "--device", "mps"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "use --device cuda" in err
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------ real runs
def _torchrun(cwd, *args: str, nproc: int = 2, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", "napari_asymseg.cli", "train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def ddp_model(tmp_path_factory):
    """A model trained by two gloo processes, and a single-process one of the same config."""
    root = tmp_path_factory.mktemp("ddp")
    scan = tiny_scan(root / "s.zarr")
    proc = _torchrun(root, "s.zarr", "--out", "m", "--steps", "4", "--val-every", "2", *TINY)
    single = tiny_config(steps=2, val_every=2)
    single.train.threads, single.train.amp = 1, "off"
    list(fit(scan, single, root / "single"))
    return root, scan, proc


@pytest.mark.slow
def test_torchrun_trains_a_plain_model_folder(ddp_model, tmp_path):
    root, scan, proc = ddp_model
    out = _ok(proc)
    # rank 0 reports, the other trains quietly
    assert "x 2 processes (torchrun)" in out and out.count("best validation DSC") == 1
    assert out.count("step 4: val DSC") == 1
    assert (root / "m" / BEST).is_file() and (root / "m" / CHECKPOINT).is_file()
    assert not list((root / "m").glob(".tmp-*"))  # every write completed
    ddp, one = load_checkpoint(root / "m"), load_checkpoint(root / "single")
    assert set(ddp) == set(one)
    assert ddp["model"].keys() == one["model"].keys()  # no "module." prefixes
    assert all(ddp["model"][k].shape == one["model"][k].shape for k in one["model"])
    assert set(load_checkpoint(root / "m" / CHECKPOINT)) == set(
        load_checkpoint(root / "single" / CHECKPOINT)
    )
    assert ddp["step"] == 4 and [h["step"] for h in ddp["history"]] == [2, 4]
    assert ddp["config"]["train"]["device"] == "cpu"  # as given: no rank's own device
    model, cfg, plan = model_from_checkpoint(ddp)
    assert type(model) is type(model_from_checkpoint(one)[0])
    # predicting and bundling treat it like any other model folder
    list(engine_predict(Scan.open(scan.path), root / "m"))
    assert Scan.open(scan.path).result("prediction") is not None
    bundle = export_bundle(root / "m", tmp_path / "bundle", onnx=False)
    assert load_bundle(bundle)["model"].keys() == one["model"].keys()


@pytest.mark.slow
def test_torchrun_resume_and_fine_tune_with_regularisers(ddp_model):
    """Several forwards per step (adversarial + mixup) and SAM's two steps under DDP."""
    root, _scan, proc = ddp_model
    _ok(proc)
    resumed = _torchrun(
        root, "s.zarr", "--out", "m", "--resume", "--steps", "6", "--val-every", "2",
        "--preset", "asym_combined", *TINY,
    )  # fmt: skip
    assert "step 6: val DSC" in _ok(resumed)
    ckpt = load_checkpoint(root / "m" / CHECKPOINT)
    assert ckpt["step"] == 6 and [h["step"] for h in ckpt["history"]] == [2, 4, 6]
    tuned = _torchrun(
        root, "s.zarr", "--out", "tuned", "--init", "m", "--steps", "2", "--val-every", "2",
        "--sam", "sam", *TINY,
    )  # fmt: skip
    assert "step 0: val DSC" in _ok(tuned)  # the starting model is scored first
    assert [h["step"] for h in load_checkpoint(root / "tuned")["history"]][0] == 0


def _two_scan_study(folder):
    from napari_asymseg.study.study import Study

    for k, name in enumerate(("brain1", "brain2")):
        tiny_scan(folder / "sources" / f"{name}.zarr", seed=k)
    study = Study.init(folder / "study")
    study.add([folder / "sources" / f"{n}.zarr" for n in ("brain1", "brain2")])
    return study


def test_cli_under_torchrun_asks_a_study_run_for_its_folder(tmp_path, monkeypatch, capsys):
    """Each process would name its own new run folder (on several machines, by its own clock):
    under torchrun a study's run is named with --out, before any process starts work."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    study = _two_scan_study(tmp_path)
    code = main(["train", str(study.path), "--device", "cpu", "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"--out {study.models / 'run-NAME'}" in err
    assert not study.models.exists() or not list(study.models.iterdir())


@pytest.mark.slow
def test_torchrun_trains_one_model_on_a_study(tmp_path):
    """Issue 36: ``train STUDY`` under 2 processes. Each rank prepares the study's scans in its
    own temporary folder (removed at the end); rank 0 alone writes the one model folder, whose
    checkpoint lists both scans, and makes it the study's current model."""
    from napari_asymseg.train.runs import current_model

    study = _two_scan_study(tmp_path)
    scratch = tmp_path / "tmp"  # the ranks' working folders go here
    scratch.mkdir()
    proc = _torchrun(
        tmp_path, "study", "--out", "study/models/run-ddp", "--steps", "4", "--val-every", "2",
        *TINY, TMPDIR=str(scratch),
    )  # fmt: skip
    out = _ok(proc)
    assert "x 2 processes (torchrun)" in out
    assert out.count("preparing scan 2 of 2") == 1  # rank 0 reports, the other prepares quietly
    run = study.models / "run-ddp"
    assert (run / BEST).is_file() and (run / CHECKPOINT).is_file()
    assert not list(run.glob(".tmp-*"))
    assert sorted(p.name for p in study.models.iterdir()) == [
        ".prepared",
        "current.json",
        "run-ddp",
    ]
    # the ranks share the study's prepared scans: one entry a scan, no half-written one
    kept = sorted(p.name.rsplit("-", 1)[0] for p in (study.models / ".prepared").iterdir())
    assert kept == ["brain1", "brain2"]
    assert current_model(study.path) == run and out.count("the study's current model") == 1
    assert not list(scratch.glob("asymseg-study-*"))  # every rank removed its prepared scans
    ckpt = load_checkpoint(run)
    # recorded as the command named them (here relative to its working folder)
    learned = sorted((tmp_path / entry["scan"]).resolve() for entry in ckpt["scans"])
    assert learned == [study.scan_path(n).resolve() for n in ("brain1", "brain2")]
    assert ckpt["step"] == 4 and [h["step"] for h in ckpt["history"]] == [2, 4]
    list(engine_predict(Scan.open(study.scan_path("brain2")), run))
    assert Scan.open(study.scan_path("brain2")).result("prediction") is not None
