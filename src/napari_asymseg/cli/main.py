"""The ``asymseg`` command: the same engine as the dock, for scripts and headless machines.

Every bad input ends in one line on stderr (``asymseg: error: ...``) and exit code 2, never
a traceback; the message names the problem and the fix.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from napari_asymseg import __version__
from napari_asymseg.cli.summary import _describe, scan_summary
from napari_asymseg.errors import ClearError, ScanError, error_message
from napari_asymseg.store.lock import ScanLock

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own errors: usage line + exit 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"asymseg: error: {message}\n")


def _label_map(text: str) -> dict[int, int]:
    """Parse ``37:1,38:1`` into ``{37: 1, 38: 1}``."""
    try:
        pairs = [item.split(":") for item in text.split(",") if item.strip()]
        mapping = {int(src): int(dst) for src, dst in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad --label-map {text!r}: write SOURCE:CLASS pairs, e.g. 37:1,38:1"
        ) from None
    if not mapping or min(mapping.values()) < 0 or max(mapping.values()) > 254:
        raise argparse.ArgumentTypeError("--label-map classes must lie in 0..254")
    return mapping


def _number_in(low: float, high: float, cast: type = float, *, open_low: bool = False):
    """An argparse type: a number of ``cast`` in [low, high] ((low, high] with open_low)."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not (low < value if open_low else low <= value) or value > high:
            bracket = "(" if open_low else "["
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a{'' if cast is float else ' whole'} number in "
                f"{bracket}{low:g}, {high:g}]"
            )
        return value

    return parse


def _cmd_import(args: argparse.Namespace) -> None:
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
        )
    print(f"wrote {scan.path}: {_describe(scan)}")


def _cmd_info(args: argparse.Namespace) -> None:
    from napari_asymseg.store.scan import Scan

    scan = Scan.open(args.scan, mode="r")
    info = scan_summary(scan)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>22}: {value}")


def _cmd_export(args: argparse.Namespace) -> None:
    from napari_asymseg.io.exporters import export_mask
    from napari_asymseg.store.scan import Scan

    scan = Scan.open(args.scan, mode="r")
    out = export_mask(scan, args.out, what=args.what, overwrite=args.overwrite)
    print(f"wrote {out}")


def _cmd_sample(args: argparse.Namespace) -> None:
    from napari_asymseg.samples import sample_data

    if args.name == "colin27":
        scan = sample_data.build_colin27(args.out, overwrite=args.overwrite)
    else:
        scan = sample_data.write_sample_scan(args.out, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {scan.path}: {_describe(scan)}")


def _cmd_train(args: argparse.Namespace) -> None:
    from napari_asymseg.cli.options import config_from_args
    from napari_asymseg.config import PRESETS, Config, load_config
    from napari_asymseg.train.distributed import launch_from_env
    from napari_asymseg.train.events import EpochEnd, Finished, Notice, Started, StepEnd
    from napari_asymseg.train.loop import fit

    base = load_config(args.config) if args.config else Config()
    base = PRESETS[args.preset](base) if args.preset else base
    cfg = config_from_args(args, base)
    launch = launch_from_env()  # under torchrun: one process per rank, rank 0 reports
    events = fit(args.scan, cfg, args.out, init=args.init, resume=args.resume)
    if launch is not None and not launch.is_main:
        for _ in events:
            pass
        return
    ranks = f" x {launch.world_size} processes (torchrun)" if launch is not None else ""
    bar = None
    for event in events:
        if isinstance(event, Started):
            print(
                f"training on {event.device}{ranks} (amp {event.amp}), {event.parameters:,} "
                f"parameters, patch {event.patch_size}, {event.train_voxels:,} training and "
                f"{event.val_voxels:,} validation voxels",
                file=sys.stderr,
            )
            bar = _progress(event.steps, "train", initial=event.start_step)
        elif isinstance(event, StepEnd) and bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        elif isinstance(event, EpochEnd):
            line = (
                f"step {event.step}: val DSC {event.dsc:.3f}, sensitivity "
                f"{event.sensitivity:.3f}, precision {event.precision:.3f}, logit shift "
                f"{event.logit_shift:+.2f}{'  (best)' if event.best else ''}"
            )
            (bar.write if bar is not None else print)(line)
        elif isinstance(event, Notice):
            (bar.write if bar is not None else print)(f"note: {event.message}", file=sys.stderr)
        elif isinstance(event, Finished):
            if bar is not None:
                bar.close()
            print(
                f"best validation DSC {event.best_dsc:.3f} at step {event.best_step} "
                f"({event.seconds:.0f} s); model in {event.model_dir}"
            )


def _cmd_predict(args: argparse.Namespace) -> None:
    with ScanLock(args.scan, "asymseg predict"):  # one writer per scan
        _predict(args)


def _predict(args: argparse.Namespace) -> None:
    from napari_asymseg.cli.options import config_from_args
    from napari_asymseg.config import config_from_dict
    from napari_asymseg.infer.predict import PredictionDone, WindowDone, predict
    from napari_asymseg.model.load import load_checkpoint

    base = config_from_dict(load_checkpoint(args.model)["config"])
    cfg = config_from_args(args, base)
    bar = None
    if args.dask:
        from napari_asymseg.infer.scaleout import predict_dask

        events = predict_dask(args.scan, args.model, config=cfg, address=args.dask)
    else:
        events = predict(args.scan, args.model, config=cfg)
    for event in events:
        if isinstance(event, WindowDone):
            bar = bar or _progress(event.total, "predict")
            bar.n = event.done
            bar.refresh()
        elif isinstance(event, PredictionDone):
            if bar is not None:
                bar.close()
            print(
                f"prediction written to {event.scan} ({event.foreground_voxels:,} foreground "
                f"voxels, {event.seconds:.1f} s)"
            )


def _cmd_flag(args: argparse.Namespace) -> None:
    with ScanLock(args.scan, "asymseg flag"):  # one writer per scan
        _flag(args)


def _flag(args: argparse.Namespace) -> None:
    from napari_asymseg.review import flags as review_flags
    from napari_asymseg.store.scan import Scan

    scan = Scan.open(args.scan)
    given = {k for k in vars(args) if k.startswith("predict.")}
    out = Path(args.json) if args.json else scan.path.with_name(scan.path.stem + "-flags.json")
    # refuse what would fail after the prediction before spending minutes on it
    known = {f.id for f in review_flags.stored_flags(scan)}
    unknown = sorted(set(args.done or ()) - known)
    if unknown:
        raise ScanError(
            f"{scan.path.name} has no flag {unknown[0]}: see the ids with asymseg flag SCAN"
        )
    _check_writable(out)
    if args.model:
        if "predict.tta" not in given:  # flip averaging sharpens the risk map (benchmarks)
            setattr(args, "predict.tta", True)
        _predict(args)
    elif given:
        raise ScanError(
            f"--{sorted(given)[0].split('.')[1].replace('_', '-')} needs --model: the "
            "prediction options apply while predicting"
        )
    if args.done:
        for flag_id in args.done:
            review_flags.set_status(scan, flag_id, "done")
    if args.dask:
        from napari_asymseg.infer.scaleout import flag_dask

        flags = flag_dask(
            scan,
            address=args.dask,
            threshold=args.threshold,
            min_expected=args.min_voxels,
            max_flags=args.max_flags,
        )
    else:
        flags = review_flags.flag_scan(
            scan, threshold=args.threshold, min_expected=args.min_voxels, max_flags=args.max_flags
        )
    report = {
        "scan": str(scan.path),
        "spacing": list(scan.spacing),
        "threshold": args.threshold,
        "expected_missed_voxels": sum(f.expected_missed for f in flags if not f.done),
        "flags": [f.as_dict() for f in flags],
    }
    _write_json_atomic(out, report)
    print(f"{len(flags)} flag(s); heatmap in {scan.path.name}/results/risk, list in {out}")
    for f in flags[:10]:
        z, y, x = f.center
        print(
            f"  #{f.rank:<3} z={z:<4} y={y:<4} x={x:<4} expected missed "
            f"{f.expected_missed:8.1f} voxels ({f.expected_mm3:8.1f} mm3)  max risk "
            f"{f.max_risk:.2f}" + ("  [done]" if f.done else "")
        )


def _check_writable(path: Path) -> None:
    """Raise the error writing ``path`` would raise, without touching ``path`` itself."""
    probe = path.with_name(f".{path.name}.probe")
    try:
        probe.open("x").close()
        probe.unlink()
    except FileExistsError:
        pass
    except OSError as exc:
        raise _unwritable(path, exc) from None


def _unwritable(path: Path, exc: OSError) -> ScanError:
    return ScanError(f"cannot write {path} ({exc.strerror}): choose a writable --json path")


def _write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _unwritable(path, exc) from None


def _cmd_bundle(args: argparse.Namespace) -> None:
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


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from napari_asymseg.evaluate.scoring import evaluate_scan

    report = evaluate_scan(args.scan, truth=args.truth, what=args.what)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, scores in report["classes"].items():
        print(
            f"{name}: DSC {scores['dsc']:.4f}  sensitivity {scores['sensitivity']:.4f}  "
            f"precision {scores['precision']:.4f}"
        )


def _progress(total: int, desc: str, initial: int = 0):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        initial=initial,
        unit="step" if desc == "train" else "slice",
        dynamic_ncols=True,
        disable=None,
    )


def _cmd_demo(args: argparse.Namespace) -> None:
    headless = args.headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless:
        from napari_asymseg.cli.demo import run_headless

        run_headless(Path(args.out), steps=args.steps)
    else:
        from napari_asymseg._qt.demo import run_viewer

        run_viewer()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``asymseg`` parser. The options of ``train`` and ``predict`` come from the config
    schema and the loss registry, which import torch (seconds); they are only built when
    ``command`` needs them (or is unknown), so ``asymseg info`` starts in a blink."""
    parser = _Parser(
        prog="asymseg",
        description="Annotate-and-train segmentation of small structures in 3D scans.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("import", help="import a NIfTI/NRRD/MHA/TIFF/OME-Zarr image as a scan")
    p.add_argument("image", help="image file (.nii, .nii.gz, .nrrd, .mha, .tif, .ome.zarr)")
    p.add_argument("out", help="the new scan directory, e.g. case01.zarr")
    p.add_argument(
        "--labels",
        help="label file on the same grid: imported as dense annotations "
        "(0 -> annotated background, k -> class k)",
    )
    p.add_argument("--truth", help="label file kept as ground truth for evaluation only")
    p.add_argument(
        "--label-map",
        type=_label_map,
        metavar="SRC:CLASS,...",
        help="keep and renumber source labels, e.g. 37:1,38:1 (others -> background)",
    )
    p.add_argument("--classes", help="comma-separated foreground class names (default class1..)")
    p.add_argument("--channel", type=int, help="channel / time point to take from a 4D image")
    p.add_argument(
        "--multiscale",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="store an OME-Zarr pyramid (default: for images over 256^3 voxels)",
    )
    p.add_argument(
        "--zarr-format",
        type=int,
        choices=(2, 3),
        default=3,
        help="zarr format of the new scan (default 3)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing scan at OUT")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("info", help="print a scan's shape, spacing and annotation statistics")
    p.add_argument("scan", help="scan directory (.zarr)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("export", help="export a mask to NIfTI (source affine), TIFF or OME-Zarr")
    p.add_argument("scan", help="scan directory (.zarr)")
    p.add_argument("out", help="output file: .nii.gz, .nii, .tif or .ome.zarr")
    p.add_argument(
        "--what",
        choices=("prediction", "annotations", "ground_truth"),
        default="prediction",
        help="which mask to export (default prediction)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file at OUT")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("sample", help="write a sample scan: synthetic lesions, or Colin27")
    p.add_argument(
        "name",
        choices=("lesions", "colin27"),
        help="lesions: synthetic scan; colin27: brain + AAL hippocampus (needs the "
        "Debian package mricron-data)",
    )
    p.add_argument("out", help="the new scan directory")
    p.add_argument(
        "--seed",
        type=_number_in(0, math.inf, int),
        default=0,
        help="seed of the synthetic scan (default 0)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing scan at OUT")
    p.set_defaults(func=_cmd_sample)

    from napari_asymseg.config import PRESETS  # plain dataclasses: cheap
    from napari_asymseg.review.risk_map import THRESHOLD

    full = command in (None, "train", "predict", "flag")
    if full:
        from napari_asymseg.cli.options import add_config_options
        from napari_asymseg.model.losses import LOSSES

    p = sub.add_parser(
        "train",
        help="train or fine-tune a model on a scan's annotations",
        description="Train a 3D segmentation model on the annotated voxels of a scan. Losses: "
        + (", ".join(LOSSES) if full else "see asymseg train --help")
        + ". Every option below comes from the config schema; the config is saved with the "
        "model.",
    )
    p.add_argument("scan", help="scan directory (.zarr) with annotations")
    p.add_argument("--out", default="asymseg-model", help="model folder (default asymseg-model)")
    p.add_argument("--init", help="model folder, checkpoint or bundle to fine-tune from")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="start from this JSON config (a bundle's configs/asymseg.json repeats its run); "
        "the options below override it",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="asym_combined: Li et al.'s asymmetric margin+focal loss with adversarial "
        "training and mixup",
    )
    p.add_argument(
        "--loss-param",
        action="append",
        metavar="KEY=VALUE",
        help="a loss parameter, e.g. --loss-param margin=1 (repeatable)",
    )
    if full:
        add_config_options(p, ("data", "model", "loss", "regularizers", "train"))
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("predict", help="predict a scan with a trained model (streamed)")
    p.add_argument("scan", help="scan directory (.zarr)")
    p.add_argument(
        "--model", required=True, help="model folder, checkpoint or bundle (folder or zip)"
    )
    _prediction_options(p, full)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "flag",
        help="write the false-negative heatmap and the ranked under-segmentation flags",
        description="Rank the regions where the model probably misses foreground. With "
        "--model the scan is predicted first (with test-time flips); otherwise the stored "
        "risk map of the last prediction is used, made exact on the current annotations.",
    )
    p.add_argument("scan", help="scan directory (.zarr)")
    p.add_argument("--model", help="predict with this model first (folder, checkpoint or bundle)")
    p.add_argument(
        "--threshold",
        type=_number_in(0, 1, open_low=True),
        default=THRESHOLD,
        help=f"risk at or above which a voxel is flagged (default {THRESHOLD})",
    )
    p.add_argument(
        "--min-voxels",
        type=_number_in(0, math.inf),
        default=1.0,
        help="drop flags expected to miss fewer voxels than this (default 1)",
    )
    p.add_argument(
        "--max-flags",
        type=_number_in(1, math.inf, int),
        default=100,
        help="at most this many (default 100)",
    )
    p.add_argument(
        "--done",
        type=int,
        action="append",
        metavar="ID",
        help="mark the stored flag ID as dealt with before ranking again (repeatable)",
    )
    p.add_argument("--json", help="flags file (default: SCAN-flags.json beside the scan)")
    _prediction_options(p, full)  # --tta defaults to on here: flips sharpen the risk map
    p.set_defaults(func=_cmd_flag)

    p = sub.add_parser(
        "bundle",
        help="export a trained model as a bundle: weights, TorchScript, ONNX, config, metrics",
        description="Write a self-describing model bundle in MONAI's layout (configs/, models/, "
        "docs/). asymseg predict --model and asymseg train --init accept the bundle (folder "
        "or zip) in place of a model folder.",
    )
    p.add_argument("model", help="model folder, checkpoint or bundle")
    p.add_argument("out", help="the bundle folder to write (with --zip: OUT.zip)")
    p.add_argument("--zip", action="store_true", help="write one zip file instead of a folder")
    p.add_argument(
        "--onnx",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include models/model.onnx, checked with onnxruntime (default on)",
    )
    p.add_argument(
        "--torchscript",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include models/model.ts (default on)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at OUT")
    p.set_defaults(func=_cmd_bundle)

    p = sub.add_parser("evaluate", help="DSC, sensitivity and precision of a prediction")
    p.add_argument("scan", help="scan directory (.zarr) with a prediction")
    p.add_argument("--truth", help="reference mask file (default: the scan's ground truth)")
    p.add_argument(
        "--what",
        choices=("prediction", "annotations"),
        default="prediction",
        help="mask to evaluate (default prediction)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "demo", help="open napari with the dock and the sample scan (headless without a display)"
    )
    p.add_argument("--headless", action="store_true", help="run without a display")
    p.add_argument("--out", default="asymseg-demo", help="headless results folder")
    p.add_argument("--steps", type=int, help="training steps of the headless run")
    p.set_defaults(func=_cmd_demo)
    return parser


def _prediction_options(p: argparse.ArgumentParser, full: bool) -> None:
    """The prediction options (from the config schema, when built) and ``--device``."""
    if full:
        from napari_asymseg.cli.options import add_config_options

        add_config_options(p, ("predict",))
    p.add_argument(
        "--device",
        dest="train.device",
        default=argparse.SUPPRESS,
        help="auto, cpu, cuda, cuda:N or mps (default: the model's)",
    )
    p.add_argument(
        "--dask",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run as a dask graph over the scan's chunks: on the dask.distributed scheduler "
        "at ADDRESS (e.g. tcp://host:8786; the workers must see the scan and model at the "
        "same paths), or on a local cluster of one worker per core when ADDRESS is left out",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asymseg`` console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    # ScanError and TrainingError (ClearError), config checks (ValueError), a full disk or a
    # read-only folder (OSError): one line each, from the same wording as the dock's
    except (ClearError, argparse.ArgumentTypeError, ValueError, OSError) as exc:
        print(f"asymseg: error: {error_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("asymseg: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
