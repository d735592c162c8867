"""``asymseg predict``, ``asymseg flag`` and ``asymseg review``: the commands that write into a
scan.

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

from napari_asymseg.cli.commands import finish, progress
from napari_asymseg.errors import ScanError
from napari_asymseg.store.atomic import temporary_name, write_json
from napari_asymseg.store.lock import ScanLock

QUEUE_ITEMS = 100
"""Open items of the queue ``flag`` ranks (``review``'s default), or ``--max-flags`` if more."""


def cmd_predict(args: argparse.Namespace) -> None:
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
    _write_report(out, report)
    print(f"{len(flags)} flag(s); heatmap in {scan.path.name}/results/risk, list in {out}")
    for f in flags[:10]:
        z, y, x = f.center
        print(
            f"  #{f.id:<3} z={z:<4} y={y:<4} x={x:<4} expected missed "
            f"{f.expected_missed:8.1f} voxels ({f.expected_mm3:8.1f} mm3)  max risk "
            f"{f.max_risk:.2f}" + ("  [done]" if f.done else "")
        )


def cmd_review(args: argparse.Namespace) -> None:
    with ScanLock(args.scan, "asymseg review"):  # one writer per scan
        _review(args)


def _review(args: argparse.Namespace) -> None:
    from napari_asymseg.review import queue as review_queue
    from napari_asymseg.store.scan import Scan

    scan = Scan.open(args.scan)
    out = _json_out(args, scan, "queue")
    answers = [(i, review_queue.LESION) for i in args.accept or ()]
    answers += [(i, review_queue.NOT_LESION) for i in args.reject or ()]
    _check_review_args(args, scan, out, answers)
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
    _write_report(out, report)
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


def _check_review_args(args: argparse.Namespace, scan, out: Path, answers) -> None:
    """Refuse what would fail half-way, before writing any answer or predicting."""
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
    _check_writable(out)
    _check_prediction_options(args)


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
    _check_writable(out)
    _check_prediction_options(args)
    return [i for i in ids if not items[i].answered]


def _check_prediction_options(args: argparse.Namespace) -> None:
    """Prediction options without --model would be ignored: refuse them."""
    given = {k for k in vars(args) if k.startswith("predict.")}
    if given and not args.model:
        raise ScanError(
            f"--{sorted(given)[0].split('.')[1].replace('_', '-')} needs --model: the "
            "prediction options apply while predicting"
        )


def _predict_with_flips(args: argparse.Namespace) -> None:
    """Predict before ranking; flip averaging (on unless given) sharpens the risk map."""
    if "predict.tta" not in vars(args):
        setattr(args, "predict.tta", True)
    _predict(args)


def _check_writable(path: Path) -> None:
    """Raise the error writing ``path`` would raise, without touching ``path`` itself."""
    probe = temporary_name(path)  # the atomic writer's scheme: recover() removes a leftover
    try:
        probe.open("x").close()
        probe.unlink()
    except FileExistsError:
        pass
    except OSError as exc:
        raise _unwritable(path, exc) from None


def _unwritable(path: Path, exc: OSError) -> ScanError:
    return ScanError(f"cannot write {path} ({exc.strerror}): choose a writable --json path")


def _write_report(path: Path, obj: object) -> None:
    try:
        write_json(path, obj)
    except OSError as exc:
        raise _unwritable(path, exc) from None
