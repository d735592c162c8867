"""``asymseg study``: make a study, add scans to it, see where it stands, mark scans done.

``asymseg study quality`` (leave-one-scan-out) is registered here and runs
:func:`napari_asymseg.cli.study_quality.cmd_quality`, imported only when it is asked for
(it needs torch).
"""

from __future__ import annotations

import argparse
from typing import Any


def add_study_parser(sub: Any) -> None:
    """Register ``asymseg study`` and its subcommands on the top-level subparsers."""
    p = sub.add_parser(
        "study",
        help="a study: many scans, one model (init, add, status, done, quality)",
        description="A study is a folder of scans that one model learns from: "
        "asymseg train STUDY trains on every annotated scan, asymseg predict STUDY predicts "
        "them all.",
    )
    steps = p.add_subparsers(
        dest="study_command", metavar="COMMAND", required=True, parser_class=type(p)
    )
    init = steps.add_parser("init", help="make a new, empty study folder")
    init.add_argument("dir", help="the new study folder (new or empty)")
    init.set_defaults(func=cmd_init)

    add = steps.add_parser(
        "add",
        help="add scans (.zarr, copied) or images (DICOM folder, NIfTI, NRRD, MHA, TIFF: "
        "imported) to a study",
    )
    add.add_argument("dir", help="the study folder")
    add.add_argument("sources", nargs="+", metavar="SOURCE", help="scan or image to add")
    add.add_argument(
        "--classes",
        help="comma-separated class names for imported images of a new study (default: the "
        "first scan's, else class1..)",
    )
    add.set_defaults(func=cmd_add)

    status = steps.add_parser("status", help="each scan: painted, reviewed, predicted, done")
    status.add_argument("dir", help="the study folder")
    status.set_defaults(func=cmd_status)

    done = steps.add_parser("done", help="mark a scan done (finished annotating and reviewing)")
    done.add_argument("dir", help="the study folder")
    done.add_argument("name", help="the scan's name, as asymseg study status lists it")
    done.add_argument("--undo", action="store_true", help="mark it not done again")
    done.set_defaults(func=cmd_done)

    quality = steps.add_parser(
        "quality",
        help="the study's quality figure on an unseen patient (leave one scan out)",
    )
    quality.add_argument("dir", help="the study folder")
    quality.add_argument(
        "--steps", type=int, default=0, help="training steps per fold (default 0: the config's)"
    )
    quality.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    quality.set_defaults(func=cmd_quality)


def cmd_init(args: argparse.Namespace) -> None:
    from napari_asymseg.study.study import Study

    study = Study.init(args.dir)
    print(f"made the study {study.path}: add scans with asymseg study add {study.path} SCAN...")


def cmd_add(args: argparse.Namespace) -> None:
    from napari_asymseg.cli.commands import progress
    from napari_asymseg.study.study import Study

    study = Study.open(args.dir)
    bar = progress(len(args.sources), "add", unit="scan")

    def step(i: int, n: int, name: str) -> None:
        bar.set_postfix_str(name, refresh=False)
        bar.update(1)

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        added = study.add(args.sources, progress=step, classes=classes)
    finally:
        bar.close()
    total = len(study.names)
    print(f"added {len(added)} scan(s) to {study.path}; it holds {total}")


def cmd_status(args: argparse.Namespace) -> None:
    from napari_asymseg.study.study import Study

    study = Study.open(args.dir)
    statuses = study.status()
    for s in statuses:
        print(s.line())
    print(total_line(statuses))
    nxt = study.next_to_annotate(statuses)
    if nxt is not None:
        print(f"next to annotate: {nxt.name} ({nxt.path})")
    elif statuses:
        print("every scan is done")
    else:
        print(f"no scans yet: add some with asymseg study add {study.path} SCAN...")


def total_line(statuses: list[Any]) -> str:
    """``4 scans: 2 annotated, 1 predicted, 1 done`` (and how many are missing)."""
    n = len(statuses)
    counts = [
        f"{sum(s.annotated for s in statuses)} annotated",
        f"{sum(s.predicted for s in statuses)} predicted",
        f"{sum(s.done for s in statuses)} done",
    ]
    missing = sum(s.missing for s in statuses)
    if missing:
        counts.append(f"{missing} missing")
    return f"{n} scan{'' if n == 1 else 's'}: {', '.join(counts)}"


def cmd_done(args: argparse.Namespace) -> None:
    from napari_asymseg.study.study import Study

    study = Study.open(args.dir)
    study.set_done(args.name, not args.undo)
    print(f"{args.name} is {'not ' if args.undo else ''}done")


def cmd_quality(args: argparse.Namespace) -> None:
    import importlib

    # the lead's module (leave-one-scan-out) imports torch: only when asked for
    importlib.import_module("napari_asymseg.cli.study_quality").cmd_quality(args)
