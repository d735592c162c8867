"""Keep Python's full garbage collections out of the clinician's clicks.

With napari, Qt and torch loaded the interpreter tracks about 650,000 objects (brain1 open in
the dock), and a full (generation-2) collection walks them all: 374-458 ms on a 2-core AMD
EPYC. The collector starts one whenever enough objects have survived younger collections,
so one review answer in ten or so stalled the viewer for 400 ms (docs/benchmarks.md, "Review
queue responsiveness").

:func:`settle` runs at quiet moments (a scan's layers are in place, a queue is ranked) and
moves every object alive then into the permanent generation with :func:`gc.freeze` (a few
microseconds). Full collections then walk only what was made since, well under a millisecond.
Reference counting still frees frozen objects; only a frozen *cycle* would outlive its use,
so :func:`release` unfreezes when a scan's annotations layer leaves the viewer (a scan
closed, the viewer closed), and the next :func:`settle` collects once before freezing, while
a scan opens, so that what the closed scan held is not frozen in.
"""

from __future__ import annotations

import gc

_state = {"released": False}


def settle() -> None:
    """Freeze the objects alive now out of future collections (after a release: collect first)."""
    if _state["released"]:
        gc.collect()
        _state["released"] = False
    gc.freeze()


def release() -> None:
    """Give the frozen objects back to the collector (a scan closed: its layers may be garbage)."""
    gc.unfreeze()
    _state["released"] = True
