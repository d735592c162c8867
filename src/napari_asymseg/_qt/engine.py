"""How the dock runs the engine: torch warmed up, the devices offered, the run's checks.

Split from ``train.py`` (the Train section's widgets and events), which imports these.
"""

from __future__ import annotations

import typing

from napari_asymseg.config import Config, rule


def warm_up_torch() -> None:
    """Initialise torch's optimizer machinery on the GUI thread when the dock opens.

    The first optimizer a process creates imports ``torch._dynamo`` (about a second here).
    Done in the training thread, that import holds Python's GIL and freezes the viewer right
    after the first Train click; done here, it is part of opening the dock.
    """
    import torch

    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])


def validate_within(cfg: Config) -> None:
    """Validate at least once in a short run (``val_every`` no more than ``steps``; a planned
    run, ``steps`` 0, sets its own)."""
    if cfg.train.steps == 0:
        return
    lowest = int(rule("train", "val_every").low)
    cfg.train.val_every = max(lowest, min(cfg.train.val_every, cfg.train.steps))


def drain(gen) -> typing.Generator:
    """Run ``gen`` in the worker thread, passing its events on to the GUI thread."""
    yield from gen


def devices() -> list[str]:
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return devices
