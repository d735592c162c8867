"""``asymseg study quality DIR``: the study's quality figure on the next patient
(leave-one-scan-out, :mod:`napari_asymseg.train.loso`)."""

from __future__ import annotations

import argparse
import sys

from napari_asymseg.cli.commands import finish, progress


def cmd_quality(args: argparse.Namespace) -> None:
    from napari_asymseg.config import Config
    from napari_asymseg.train.events import Notice, StepEnd
    from napari_asymseg.train.loso import ScanLeftOut, leave_one_scan_out

    cfg = Config()
    cfg.train.seed = args.seed
    if args.steps:
        cfg.train.steps, cfg.train.val_every = args.steps, max(args.steps // 2, 1)
    bar = None
    gen = leave_one_scan_out(args.dir, cfg)
    try:
        while True:
            event = next(gen)
            if isinstance(event, StepEnd):
                if bar is None:
                    bar = progress(event.steps, "train (all scans but one)", unit="step")
                bar.total = event.steps
                bar.update(1)
            elif isinstance(event, ScanLeftOut):
                finish(bar, f"{event.name} ({event.index} of {event.total}): DSC "
                       f"{event.dsc:.3f} on its painted voxels by the others' model")  # fmt: skip
                bar = None
            elif isinstance(event, Notice) and event.warn:
                print(f"note: {event.message}", file=sys.stderr)
    except StopIteration as stop:
        print(stop.value.line())
