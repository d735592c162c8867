"""The argument parsers of the annotation tools' subcommands (``asymseg fill``).

Hooked into :func:`napari_asymseg.cli.parser.build_parser`; the commands run in
:mod:`napari_asymseg.cli.fill`.
"""

from __future__ import annotations

from typing import Any

from napari_asymseg.cli import fill


def add_fill(sub: Any) -> None:
    """``asymseg fill SCAN [--class NAME] [--dry-run]``."""
    p = sub.add_parser(
        "fill",
        help="fill each lesion between two painted slices, as annotation",
        description="For each class, fill the lesion on the unpainted slices between two "
        "slices painted with it: a blend of the two painted shapes, written as annotation "
        "marked as filled (asymseg info counts it apart from painted voxels). Painted voxels "
        "are never changed; a slice painted without the lesion between two slices ends it; "
        "nothing is filled beyond the outermost painted lesion slices. Prints the voxels "
        "filled per class and slice, and what was left out and why.",
    )
    p.add_argument("scan", help="scan directory (.zarr)")
    p.add_argument(
        "--class",
        dest="class_name",
        metavar="NAME",
        help="fill only this class (default: every class)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only report what would be filled, per class and slice; write nothing",
    )
    p.set_defaults(func=fill.cmd_fill)
