"""``asymseg fill``: the lesion between painted slices, written as annotation marked filled.

Holds the scan's lock while it writes (one writer per scan); ``--dry-run`` only reads, so it
works on a scan that another program is writing, or one on a read-only disk.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from napari_asymseg.errors import ScanError
from napari_asymseg.store.lock import ScanLock


def cmd_fill(args: argparse.Namespace) -> None:
    on_scan(args, "asymseg fill", _fill)


def on_scan(args: argparse.Namespace, command: str, work: Callable[[Any, Any], None]) -> None:
    """``work(scan, args)`` on ``args.scan``: read-only with ``--dry-run``, else holding the
    scan's lock (one writer per scan)."""
    from napari_asymseg.store.scan import Scan

    if args.dry_run:
        work(Scan.open(args.scan, mode="r"), args)
        return
    with ScanLock(args.scan, command):
        work(Scan.open(args.scan), args)


def _fill(scan, args: argparse.Namespace) -> None:
    from napari_asymseg.annotate.interpolate import fill_between, write_fill

    classes = None if args.class_name is None else [class_number(scan, args.class_name)]
    fill = fill_between(scan.read_annotations(), scan.spacing, classes)
    for line in fill.lines(scan.classes):
        print(line)
    if not fill.voxels:
        print("nothing filled: every lesion between painted slices was left out (see above)")
    elif args.dry_run:
        print(f"would fill {fill.voxels} voxels; nothing written (--dry-run)")
    else:
        written = write_fill(scan, fill)
        print(f"wrote {written} filled voxels into {scan.path} (asymseg info counts them apart)")


def class_number(scan, name: str) -> int:
    """The class (1..K) called ``name``."""
    if name not in scan.classes:
        raise ScanError(
            f"--class {name!r} is not a class of {scan.path.name}: use one of "
            f"{', '.join(scan.classes)}"
        )
    return scan.classes.index(name) + 1
