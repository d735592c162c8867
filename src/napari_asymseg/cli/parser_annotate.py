"""The argument parsers of the annotation tools' subcommands (``asymseg fill``, ``grow``).

Hooked into :func:`napari_asymseg.cli.parser.build_parser`; the commands run in
:mod:`napari_asymseg.cli.fill` and :mod:`napari_asymseg.cli.grow`.
"""

from __future__ import annotations

from typing import Any

from napari_asymseg.cli import fill, grow


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
    class_and_dry_run(
        p,
        "fill only this class (default: every class)",
        "only report what would be filled, per class and slice; write nothing",
    )
    p.set_defaults(func=fill.cmd_fill)


def class_and_dry_run(p: Any, class_help: str, dry_run_help: str) -> None:
    """The annotation tools' ``--class NAME`` and ``--dry-run``."""
    p.add_argument("--class", dest="class_name", metavar="NAME", help=class_help)
    p.add_argument("--dry-run", action="store_true", help=dry_run_help)


def add_grow(sub: Any) -> None:
    """``asymseg grow SCAN --at Z,Y,X [--at ...] [--not Z,Y,X ...] [--class NAME] [--dry-run]``."""
    p = sub.add_parser(
        "grow",
        help="grow a lesion in 3D from clicks on it, as annotation",
        description="Propose the lesion that the clicks point at, in 3D: a seeded watershed "
        "on the image (and on the model's probability, where asymseg predict stored one) "
        "from the clicks and the painted voxels, in a box around the clicks. Written as "
        "annotation marked as grown (asymseg info counts it apart from painted voxels); "
        "painted voxels are never changed. Prints the voxels proposed per slice.",
    )
    p.add_argument("scan", help="scan directory (.zarr)")
    p.add_argument(
        "--at",
        type=grow.click,
        action="append",
        required=True,
        metavar="Z,Y,X",
        help="a voxel on the lesion (slice, row, column); repeat for more clicks",
    )
    p.add_argument(
        "--not",
        dest="outside",
        type=grow.outside_click,
        action="append",
        metavar="Z,Y,X",
        help="a voxel that is not the lesion: the proposal stops before it; repeatable",
    )
    class_and_dry_run(
        p,
        "the lesion's class (default: the first class)",
        "only report what would be grown, per slice; write nothing",
    )
    p.set_defaults(func=grow.cmd_grow)
