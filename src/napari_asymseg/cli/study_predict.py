"""``asymseg predict STUDY`` and ``asymseg review STUDY``: a whole study at once.

``predict`` runs every scan of the study through the single-scan path (the study's current
model unless ``--model`` names another; ``--dask`` as for one scan), each scan under its own
lock while it is predicted. A scan that cannot be predicted is named in one warning line and
the others go on; a missing scan folder is only a warning, any other failure ends the command
with exit code 2 after the rest are done.

``review`` lists the open items of every predicted scan ranked by the voxels an answer
corrects (:mod:`napari_asymseg.study.review`); ``--scan NAME --accept/--reject ID`` answers
items of one scan, as ``asymseg review SCAN`` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_asymseg.cli.predict_checks import (
    check_prediction_options,
    check_review_args,
    check_writable,
    prediction_config,
    show_prediction,
    write_report,
)
from napari_asymseg.errors import ScanError
from napari_asymseg.store.lock import ScanLock

PREDICT_OWNER, REVIEW_OWNER = "asymseg predict", "asymseg review"
SHOWN = 10
"""Items of the study's queue printed (all of them go to --json)."""


def warn(line: str) -> None:
    print(f"asymseg: warning: {line}", file=sys.stderr)


def cmd_predict_study(args: argparse.Namespace) -> None:
    from napari_asymseg.study.predict import open_study, predict_study, study_model

    study = open_study(args.scan)
    model = Path(args.model) if args.model else study_model(study)
    events = predict_study(
        study,
        model,
        scheduler=args.dask,
        config=prediction_config(args, model),
        lock=PREDICT_OWNER,
    )
    outcomes = _show(events)
    done = sum(o.done is not None for o in outcomes)
    print(f"{done} of {len(outcomes)} scan(s) of {study.path.name} predicted with {model}")
    failed = [o for o in outcomes if o.done is None and study.scan_path(o.name).is_dir()]
    if failed:  # a missing folder is a warning; a scan that failed is an error, after the rest
        raise ScanError(f"{len(failed)} scan(s) not predicted: {failed[0].line()}")


def _show(events) -> list:
    """Print the study's prediction events; returns what the generator returns."""
    from napari_asymseg.study.predict import ScanSkipped, ScanStarts

    bar = None
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, ScanStarts | ScanSkipped):
            if bar is not None:  # a scan that failed half-way leaves its bar
                bar.close()
                bar = None
            if isinstance(event, ScanStarts):
                print(event.line())
            else:
                warn(event.line())
        else:
            bar = show_prediction(event, bar)


def cmd_review_study(args: argparse.Namespace) -> None:
    from napari_asymseg.study.predict import open_study

    study = open_study(args.scan)
    name = getattr(args, "study_scan", None)
    answers = [(i, "lesion") for i in args.accept or ()]
    answers += [(i, "not_lesion") for i in args.reject or ()]
    out = Path(args.json) if args.json else None
    if answers and not name:
        raise ScanError(
            f"name the scan whose items you answer: asymseg review {study.path} --scan NAME "
            f"--accept ID (the scans are {', '.join(study.names)})"
        )
    if name:
        _answer(study, name, answers, args, out)
    elif out is not None:
        check_writable(out)
    check_prediction_options(args)
    if args.model:  # predict the study first, with flips: they sharpen the risk map
        if "predict.tta" not in vars(args):
            setattr(args, "predict.tta", True)
        cmd_predict_study(args)
    _list(study, args, out, only=None if answers else name)


def _answer(study, name: str, answers, args: argparse.Namespace, out: Path | None) -> None:
    """Answer items of one scan of the study, under its lock, after the checks of ``asymseg
    review SCAN`` (nothing is written when one answer would be refused)."""
    from napari_asymseg.store.scan import Scan
    from napari_asymseg.study.review import answer_study

    path = study.scan_folder(name)
    with ScanLock(path, REVIEW_OWNER):
        check_review_args(args, Scan.open(path), out, answers)
        for item_id, verdict in answers:
            item = answer_study(study, name, item_id, verdict)
            print(f"{name} item {item_id} ({item.kind.replace('_', ' ')}, slice "
                  f"{item.center[0]}): {verdict.replace('_', ' ')}")  # fmt: skip


def _list(study, args: argparse.Namespace, out: Path | None, only: str | None) -> None:
    """Print (and with --json write) the study's queue (``only``: that scan's items of it;
    after answers the whole queue shows, to say where to look next)."""
    from napari_asymseg.study.review import study_queue

    queue = study_queue(study, args.max_items, lock=REVIEW_OWNER)
    for line in queue.skipped:
        warn(line)
    if only:  # --scan NAME alone: that scan's part of the study's queue
        queue[:] = [s for s in queue if s.scan == only]
    scans = len({s.scan for s in queue})
    print(
        f"{len(queue)} open item(s) in {scans} of {queue.predicted} predicted scan(s) of "
        f"{study.path.name}; answer with asymseg review {study.path} --scan NAME --accept ID "
        "(or --reject ID)"
    )
    width = max((len(s.scan) for s in queue[:SHOWN]), default=0)
    for s in queue[:SHOWN]:
        print("  " + s.line(width))
    if out is not None:
        write_report(
            out,
            {
                "study": str(study.path),
                "open": len(queue),
                "expected_gain_voxels": sum(s.item.gain for s in queue),
                "items": [{"scan": s.scan, **s.item.as_dict()} for s in queue],
            },
        )
        print(f"queue in {out}")
