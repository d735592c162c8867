"""``asymseg predict``, ``asymseg flag`` and ``asymseg review``: the commands that write into a
scan (a study folder given to ``predict`` or ``review`` goes to :mod:`.study_predict`).

Both hold the scan's lock for their whole run (one writer per scan). ``flag`` checks what
would fail after the prediction (an unknown ``--done`` id, an unwritable ``--json`` path)
before spending minutes on it.

``flag`` is a thin alias over the review queue, kept because scripts, the README and the dask
path (``--dask``) use it: its flags are the queue's suspected misses, with the queue's ids,
and ``--done ID`` answers miss ID Lesion (you painted there), as ``review --accept ID`` does.
So a flag marked done is an answered queue item, and an answered item is a done flag.
"""

from __future__ import annotations

import argparse
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

QUEUE_ITEMS = 100
"""Open items of the queue ``flag`` ranks (``review``'s default), or ``--max-flags`` if more."""


def cmd_predict(args: argparse.Namespace) -> None:
    from napari_asymseg.study.study import is_study

    if is_study(args.scan):  # every scan of the study, with its current model by default
        from napari_asymseg.cli.study_predict import cmd_predict_study

        cmd_predict_study(args)
        return
    args.model = args.model or _scan_model(args.scan)
    with ScanLock(args.scan, "asymseg predict"):  # one writer per scan
        _predict(args)


def _scan_model(scan: str) -> Path:
    """The model of ``asymseg predict SCAN`` without ``--model``: the current model of the
    study the scan lies in; a plain scan has none to default to."""
    from napari_asymseg.study.study import study_of
    from napari_asymseg.train.runs import current_model

    model = current_model(scan) if study_of(scan) is not None else None
    if model is None:
        raise ScanError(
            f"which model predicts {Path(scan).name}? name it with --model MODEL (a model "
            "folder, checkpoint or bundle); only a study's scans default to its current model"
        )
    return model


def _predict(args: argparse.Namespace) -> None:
    from napari_asymseg.infer.predict import predict

    cfg = prediction_config(args, args.model)
    if args.dask:
        from napari_asymseg.infer.scaleout import predict_dask

        events = predict_dask(args.scan, args.model, config=cfg, address=args.dask)
    else:
        events = predict(args.scan, args.model, config=cfg)
    bar = None
    for event in events:
        bar = show_prediction(event, bar)


def _json_out(args: argparse.Namespace, scan, what: str) -> Path:
    """``--json``, else ``SCAN-{what}.json`` beside the scan."""
    return Path(args.json) if args.json else scan.path.with_name(f"{scan.path.stem}-{what}.json")


def cmd_flag(args: argparse.Namespace) -> None:
    with ScanLock(args.scan, "asymseg flag"):  # one writer per scan
        _flag(args)


def _flag(args: argparse.Namespace) -> None:
    """``asymseg flag``: the review queue's suspected misses, listed as flags (one review state:
    ``--done ID`` answers miss ID Lesion, as ``asymseg review --accept ID`` does)."""
    from napari_asymseg.review import queue as review_queue
    from napari_asymseg.store.scan import Scan

    scan = Scan.open(args.scan)
    out = _json_out(args, scan, "flags")
    done = _check_flag_args(args, scan, out)
    for item_id in done:  # the ids of the stored queue: answered before predicting anew
        review_queue.answer(scan, item_id, review_queue.LESION)
    if args.model:
        _predict_with_flips(args)
    misses = None
    if args.dask:
        from napari_asymseg.infer.scaleout import flag_dask

        misses = flag_dask(
            scan,
            address=args.dask,
            threshold=args.threshold,
            min_expected=args.min_voxels,
            max_flags=args.max_flags,
        )
    queue = review_queue.build_queue(
        scan,
        threshold=args.threshold,
        min_expected=args.min_voxels,
        max_items=max(args.max_flags, QUEUE_ITEMS),
        misses=misses,
    )
    flags = review_queue.as_flags(queue, scan.spacing)[: args.max_flags]
    report = {
        "scan": str(scan.path),
        "spacing": list(scan.spacing),
        "threshold": args.threshold,
        "expected_missed_voxels": sum(f.expected_missed for f in flags if not f.done),
        "flags": [f.as_dict() for f in flags],
    }
    write_report(out, report)
    print(f"{len(flags)} flag(s); heatmap in {scan.path.name}/results/risk, list in {out}")
    for f in flags[:10]:
        z, y, x = f.center
        print(
            f"  #{f.id:<3} z={z:<4} y={y:<4} x={x:<4} expected missed "
            f"{f.expected_missed:8.1f} voxels ({f.expected_mm3:8.1f} mm3)  max risk "
            f"{f.max_risk:.2f}" + ("  [done]" if f.done else "")
        )


def cmd_review(args: argparse.Namespace) -> None:
    from napari_asymseg.study.study import is_study

    if is_study(args.scan):  # the queue across the study's scans
        from napari_asymseg.cli.study_predict import cmd_review_study

        cmd_review_study(args)
        return
    if getattr(args, "study_scan", None):
        raise ScanError(f"--scan names a scan of a study, and {args.scan} is not a study folder")
    with ScanLock(args.scan, "asymseg review"):  # one writer per scan
        _review(args)


def _review(args: argparse.Namespace) -> None:
    from napari_asymseg.review import queue as review_queue
    from napari_asymseg.store.scan import Scan

    scan = Scan.open(args.scan)
    out = _json_out(args, scan, "queue")
    answers = [(i, review_queue.LESION) for i in args.accept or ()]
    answers += [(i, review_queue.NOT_LESION) for i in args.reject or ()]
    check_review_args(args, scan, out, answers)
    for item_id, verdict in answers:
        item = review_queue.answer(scan, item_id, verdict)
        print(f"item {item_id} ({item.kind.replace('_', ' ')}, slice {item.center[0]}): "
              f"{verdict.replace('_', ' ')}")  # fmt: skip
    if args.model:
        _predict_with_flips(args)  # prints the new prediction's quality figure
    elif answers:  # the answered voxels are painted now: the figure of what is left
        from napari_asymseg.infer.predict import scan_figure

        print(scan_figure(scan).line())
    queue = review_queue.build_queue(scan, max_items=args.max_items)
    open_items = queue.open
    report = {
        "scan": str(scan.path),
        "spacing": list(scan.spacing),
        "open": len(open_items),
        "answered": len(queue.items) - len(open_items),
        "expected_gain_voxels": sum(i.gain for i in open_items),
        **queue.as_dict(),
    }
    write_report(out, report)
    kinds = {k: sum(i.kind == k for i in open_items) for k in review_queue.KINDS}
    print(
        f"{len(open_items)} open item(s): {kinds[review_queue.MISS]} suspected miss(es), "
        f"{kinds[review_queue.FALSE_ALARM]} suspected false alarm(s); queue in {out}"
    )
    for i in open_items[:10]:
        z, y, x = i.center
        what = "suspected miss       " if i.kind == review_queue.MISS else "suspected false alarm"
        print(
            f"  #{i.id:<3} {what} z={z:<4} y={y:<4} x={x:<4} {i.voxels:7d} voxels, "
            f"expected gain {i.gain:8.1f}"
        )


def _check_flag_args(args: argparse.Namespace, scan, out: Path) -> list[int]:
    """Refuse what would fail after the prediction, before spending minutes on it; returns the
    ``--done`` ids still open (one marked done already stays so)."""
    from napari_asymseg.review import queue as review_queue

    ids = list(dict.fromkeys(args.done or ()))
    queue = review_queue.stored_queue(scan) if ids else None
    items = {i.id: i for i in queue.items} if queue is not None else {}
    unknown = [i for i in ids if i not in items]
    if unknown:
        raise ScanError(
            f"{scan.path.name} has no flag {unknown[0]}: see the ids with asymseg flag SCAN"
        )
    alarm = next((i for i in ids if items[i].kind != review_queue.MISS), None)
    if alarm is not None:
        raise ScanError(
            f"item {alarm} of {scan.path.name} is a suspected false alarm, not a flag: answer "
            f"it with asymseg review SCAN --accept {alarm} (lesion) or --reject {alarm}"
        )
    check_writable(out)
    check_prediction_options(args)
    return [i for i in ids if not items[i].answered]


def _predict_with_flips(args: argparse.Namespace) -> None:
    """Predict before ranking; flip averaging (on unless given) sharpens the risk map."""
    if "predict.tta" not in vars(args):
        setattr(args, "predict.tta", True)
    _predict(args)


def add_study_review_options(p: argparse.ArgumentParser) -> None:
    """``asymseg review STUDY --scan NAME``: the scan of the study whose items are answered."""
    p.add_argument(
        "--scan",
        dest="study_scan",
        metavar="NAME",
        help="for a study folder: the scan whose items --accept and --reject answer",
    )
