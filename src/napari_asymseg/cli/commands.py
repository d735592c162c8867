"""What the ``asymseg`` subcommands do (``predict`` and ``flag`` are in :mod:`.predict`).

Each ``cmd_*`` function takes the parsed arguments, calls the engine and prints one summary
line; errors propagate to :func:`napari_asymseg.cli.main.main`, which prints them as one line.
Heavy modules (torch, the engine) are imported inside the functions so that ``asymseg info``
starts without torch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from napari_asymseg.cli.summary import describe, scan_summary
from napari_asymseg.store.lock import ScanLock

DEFAULT_MODEL = "asymseg-model"
"""``asymseg train``'s model folder unless ``--out`` names one (a study: its own ``models/``)."""


def cmd_import(args: argparse.Namespace) -> None:
    from napari_asymseg.io.importers import import_scan

    # replacing a scan that another program is writing would pull it from under its feet
    with ScanLock(args.out, "asymseg import") if args.overwrite else contextlib.nullcontext():
        scan = import_scan(
            args.image,
            args.out,
            labels=args.labels,
            truth=args.truth,
            label_map=args.label_map,
            classes=args.classes.split(",") if args.classes else None,
            channel=args.channel,
            multiscale=args.multiscale,
            zarr_format=args.zarr_format,
            overwrite=args.overwrite,
            series=args.series,
        )
    print(f"wrote {scan.path}: {describe(scan)}")


def cmd_info(args: argparse.Namespace) -> None:
    from napari_asymseg.store.scan import Scan

    scan = Scan.open(args.scan, mode="r")
    info = scan_summary(scan)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>22}: {value}")


def cmd_export(args: argparse.Namespace) -> None:
    from napari_asymseg.io.exporters import export_mask
    from napari_asymseg.store.scan import Scan

    scan = Scan.open(args.scan, mode="r")
    out = export_mask(
        scan, args.out, what=args.what, overwrite=args.overwrite, modality=args.modality
    )
    print(f"wrote {out}")


def cmd_sample(args: argparse.Namespace) -> None:
    from napari_asymseg.samples import sample_data

    if args.name == "colin27":
        scan = sample_data.build_colin27(args.out, overwrite=args.overwrite)
    else:
        scan = sample_data.write_sample_scan(args.out, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {scan.path}: {describe(scan)}")


def cmd_train(args: argparse.Namespace) -> None:
    from napari_asymseg.cli.options import config_from_args
    from napari_asymseg.config import PRESETS, Config, load_config
    from napari_asymseg.train.distributed import launch_from_env
    from napari_asymseg.train.estimate import train_and_estimate
    from napari_asymseg.train.loop import fit

    base = load_config(args.config) if args.config else Config()
    base = PRESETS[args.preset](base) if args.preset else base
    cfg = config_from_args(args, base)
    launch = launch_from_env()  # under torchrun: one process per rank, rank 0 reports
    # the estimate repeats the recipe in this process: not under torchrun
    train = fit if launch is not None else train_and_estimate
    source, out, study = study_source(args)
    events = train(source, cfg, out, init=args.init, resume=args.resume, overwrite=args.overwrite)
    if launch is not None and not launch.is_main:
        for _ in events:
            pass
        return
    ranks = f" x {launch.world_size} processes (torchrun)" if launch is not None else ""
    _report_training(events, ranks)
    if study is not None:  # here: one process, or torchrun's rank 0
        _make_current(study, out)


def _make_current(study: Any, out: Any) -> None:
    """A study's new run becomes its current model, when it lies in the study's ``models/``
    (``--out`` elsewhere: a model the user keeps apart, the current one stays)."""
    from napari_asymseg.train import runs

    if Path(out).resolve().parent != runs.model_root(study).resolve():
        return
    runs.set_current(study, out)
    print(f"the study's current model: {out} (asymseg predict {study} predicts every scan)")


def study_source(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """What ``asymseg train`` trains on (one scan, several, or a study folder), the model
    folder (a study's own ``models/`` unless ``--out`` names one) and the study, if one."""
    from napari_asymseg.study.study import is_study
    from napari_asymseg.train import runs
    from napari_asymseg.train.distributed import launch_from_env

    scans = args.scan if isinstance(args.scan, list) else [args.scan]
    source = scans[0] if len(scans) == 1 else scans
    if len(scans) != 1 or not is_study(scans[0]):
        return source, args.out, None
    if args.out == DEFAULT_MODEL and launch_from_env() is not None:
        from napari_asymseg.train.distributed import DistributedError

        # each process would pick its own new folder (the clocks of machines differ)
        raise DistributedError(
            f"under torchrun name the run's folder, the same for every process: --out "
            f"{runs.model_root(scans[0]) / 'run-NAME'}"
        )
    out = args.out if args.out != DEFAULT_MODEL else runs.new_model_dir(scans[0])
    return source, out, scans[0]


def _report_training(events: Iterable[object], ranks: str) -> None:
    """Print the training events: a start line, a progress bar, one line per validation, then
    the estimate of the quality on unpainted slices."""
    from napari_asymseg.infer.predict import PredictionDone, WindowDone
    from napari_asymseg.train.estimate import FoldDone, QualityEstimate
    from napari_asymseg.train.events import EpochEnd, Finished, Notice, Started, StepEnd

    bar = None
    for event in events:
        if isinstance(event, StepEnd) and bar is None:  # the estimate's folds train
            bar = progress(None, "estimating quality (cross-validation)", unit="step")
        if isinstance(event, WindowDone):
            if bar is None:
                bar = progress(event.total, "predict", unit="slice")
            bar.n = event.done
            bar.refresh()
        elif isinstance(event, PredictionDone):
            finish(bar, f"prediction saved: {event.summary()}")
            bar = None
            if event.figure is not None:
                print(event.figure.line())
        elif isinstance(event, FoldDone):
            line = f"fold {event.fold} of {event.folds}: DSC {event.dsc:.3f} on its left-out slices"
            (bar.write if bar is not None else print)(line)
        elif isinstance(event, QualityEstimate):
            finish(bar, event.line())
            bar = None
        elif isinstance(event, Started):
            print(
                f"training on {event.device}{ranks} (amp {event.amp}), {event.parameters:,} "
                f"parameters, patch {event.patch_size}, {event.train_voxels:,} training and "
                f"{event.val_voxels:,} validation voxels",
                file=sys.stderr,
            )
            bar = progress(event.steps, "train", initial=event.start_step)
        elif isinstance(event, StepEnd) and bar is not None:
            if bar.total is not None and bar.total != event.steps:  # --minutes planned the run
                bar.total = event.steps
            bar.update(1)
            bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        elif isinstance(event, EpochEnd):
            (bar.write if bar is not None else print)(event.line())
        elif isinstance(event, Notice):
            (bar.write if bar is not None else print)(f"note: {event.message}", file=sys.stderr)
        elif isinstance(event, Finished):
            scored = f"best validation DSC {event.best_dsc:.3f} at step {event.best_step} "
            finish(
                bar,
                (scored if event.best_dsc == event.best_dsc else "trained ")
                + f"({event.seconds:.0f} s); model in {event.model_dir}",
            )
            bar = None


def cmd_bundle(args: argparse.Namespace) -> None:
    from napari_asymseg.model.bundle import export_bundle

    out = export_bundle(
        args.model,
        args.out,
        onnx=args.onnx,
        torchscript=args.torchscript,
        zip=args.zip,
        overwrite=args.overwrite,
    )
    meta = json.loads((out / "configs" / "metadata.json").read_text()) if out.is_dir() else None
    check = (meta or {}).get("asymseg", {}).get("onnx_check") or {}
    note = (
        f" (ONNX matches torch within {check['max_abs_diff']:.1e})" if check.get("checked") else ""
    )
    print(f"model bundle written to {out}{note}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from napari_asymseg.evaluate.lesions import summary_line
    from napari_asymseg.evaluate.scoring import evaluate_scan

    report = evaluate_scan(
        args.scan, truth=args.truth, what=args.what, reference_optional=args.lesions
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, scores in report["classes"].items():
        print(
            f"{name}: DSC {scores['dsc']:.4f}  sensitivity {scores['sensitivity']:.4f}  "
            f"precision {scores['precision']:.4f}"
        )
    for name, entry in report["lesions"].items():
        print(summary_line(name, entry))
        if args.lesions:
            _print_lesions(entry)


def _print_lesions(entry: dict) -> None:
    """One line per lesion: the reference's (detected or missed), then the false ones."""

    def line(kind: str, x: dict) -> str:
        z, y, x_ = x["center"]
        ez, ey, ex = x["extent_mm"]
        found = f"  {x['sensitivity']:.0%} of it predicted" if kind == "detected" else ""
        return (f"  {kind:9} {x['millilitres']:8.3f} mL  {x['voxels']:7,} voxels  at z {z} y "
                f"{y} x {x_}  {ez:.0f} x {ey:.0f} x {ex:.0f} mm{found}")  # fmt: skip

    for x in entry.get("reference", []):
        print(line("detected" if x["detected"] else "missed", x))
    for x in entry["predicted"]:
        if "reference" not in entry or x.get("false"):
            print(line("false" if "reference" in entry else "predicted", x))


def cmd_demo(args: argparse.Namespace) -> None:
    headless = args.headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless:
        from napari_asymseg.cli.demo import run_headless

        run_headless(Path(args.out), steps=args.steps)
    else:
        from napari_asymseg._qt.demo import run_viewer

        run_viewer()


def progress(total: int | None, desc: str, initial: int = 0, unit: str | None = None):
    """A tqdm bar on stderr (silent when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        initial=initial,
        unit=unit or ("step" if desc == "train" else "slice"),
        dynamic_ncols=True,
        disable=None,
    )


def finish(bar, line: str) -> None:
    """Close the progress bar (if one was shown), then print the command's summary line."""
    if bar is not None:
        bar.close()
    print(line)
