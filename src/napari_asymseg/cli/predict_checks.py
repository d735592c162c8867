"""What ``asymseg predict``, ``flag`` and ``review`` share, for a scan and for a study
(:mod:`.study_predict`): the prediction's settings and progress, the checks made before
anything is written, and the JSON report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from napari_asymseg.cli.commands import finish, progress
from napari_asymseg.errors import ScanError
from napari_asymseg.store.atomic import temporary_name, write_json

if TYPE_CHECKING:
    from napari_asymseg.config import Config


def prediction_config(args: argparse.Namespace, model) -> Config:
    """The model's own settings, with the prediction options given on the command line."""
    from napari_asymseg.cli.options import config_from_args
    from napari_asymseg.config import config_from_dict
    from napari_asymseg.model.load import load_checkpoint

    return config_from_args(args, config_from_dict(load_checkpoint(model)["config"]))


def show_prediction(event: object, bar):
    """Show one prediction event: the bar moves, the end prints its summary; returns the bar
    (None once the prediction is done)."""
    from napari_asymseg.infer.predict import PredictionDone, WindowDone

    if isinstance(event, WindowDone):
        bar = bar or progress(event.total, "predict")
        bar.n = event.done
        bar.refresh()
    elif isinstance(event, PredictionDone):
        finish(
            bar,
            f"prediction written to {event.scan} ({event.foreground_voxels:,} foreground "
            f"voxels, {event.seconds:.1f} s)",
        )
        if event.figure is not None:
            print(event.figure.line())
        bar = None
    return bar


def check_review_args(args: argparse.Namespace, scan, out: Path | None, answers) -> None:
    """Refuse what would fail half-way, before writing any answer or predicting (``out``: the
    report, if one is written)."""
    from napari_asymseg.review import queue as review_queue

    ids = [i for i, _ in answers]
    if len(set(ids)) != len(ids):
        raise ScanError(f"item {next(i for i in ids if ids.count(i) > 1)} is answered twice: "
                        "give each id once, with --accept or --reject")  # fmt: skip
    if answers:
        queue = review_queue.stored_queue(scan)
        if queue is None:
            raise ScanError(
                f"{scan.path.name} has no review queue yet: run asymseg review SCAN first, "
                "then answer its items"
            )
        for item_id in ids:
            if queue.item(item_id).answered:
                raise ScanError(
                    f"item {item_id} is answered already: see the open ones with asymseg "
                    "review SCAN"
                )
        if args.model:
            raise ScanError(
                "--model predicts again, which makes a new queue: answer first, then run "
                "asymseg review --model on its own"
            )
    if out is not None:
        check_writable(out)
    check_prediction_options(args)


def check_prediction_options(args: argparse.Namespace) -> None:
    """Prediction options without --model would be ignored: refuse them."""
    given = {k for k in vars(args) if k.startswith("predict.")}
    if given and not args.model:
        raise ScanError(
            f"--{sorted(given)[0].split('.')[1].replace('_', '-')} needs --model: the "
            "prediction options apply while predicting"
        )


def check_writable(path: Path) -> None:
    """Raise the error writing ``path`` would raise, without touching ``path`` itself."""
    probe = temporary_name(path)  # the atomic writer's scheme: recover() removes a leftover
    try:
        probe.open("x").close()
        probe.unlink()
    except FileExistsError:
        pass
    except OSError as exc:
        raise unwritable(path, exc) from None


def unwritable(path: Path, exc: OSError) -> ScanError:
    return ScanError(f"cannot write {path} ({exc.strerror}): choose a writable --json path")


def write_report(path: Path, obj: object) -> None:
    try:
        write_json(path, obj)
    except OSError as exc:
        raise unwritable(path, exc) from None
