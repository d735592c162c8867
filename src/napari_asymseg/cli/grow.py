"""``asymseg grow``: the lesion a few clicks point at, written as annotation marked grown.

Uses the scan's stored lesion probability (``results/probability``, written by ``asymseg
predict``) where there is one. Holds the scan's lock while it writes (one writer per scan);
``--dry-run`` only reads, so it works on a scan that another program is writing, or one on a
read-only disk.
"""

from __future__ import annotations

import argparse

from napari_asymseg.cli.fill import class_number, on_scan


def click(text: str, inside: bool = True):
    """``Z,Y,X`` (voxel indices) as a :class:`~napari_asymseg.annotate.grow.Click`."""
    from napari_asymseg.annotate.grow import Click

    parts = text.replace(" ", "").split(",")
    try:
        z, y, x = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a voxel: write Z,Y,X as three whole numbers, e.g. 12,240,198"
        ) from None
    return Click(z, y, x, inside)


def outside_click(text: str):
    """``Z,Y,X`` of a "not this" click."""
    return click(text, inside=False)


def cmd_grow(args: argparse.Namespace) -> None:
    on_scan(args, "asymseg grow", _grow)


def _grow(scan, args: argparse.Namespace) -> None:
    from napari_asymseg.annotate.grow import grow, write_grown
    from napari_asymseg.store.annotations import code_of_class

    k = 1 if args.class_name is None else class_number(scan, args.class_name)
    probability = scan.result("probability")
    clicks = list(args.at) + list(args.outside or [])
    grown = grow(scan.image, scan.annotations, clicks, code_of_class(k), scan.spacing, probability)
    per_slice = grown.per_slice(scan.annotations)
    new = sum(per_slice.values())
    model = "the image and the model's probability" if probability is not None else "the image"
    print(
        f"{scan.classes[k - 1]}: proposed {grown.voxels} voxels from {model}, {new} not yet "
        f"annotated, on {len(per_slice)} slices: {_brief(per_slice)}"
    )
    if args.dry_run:
        print(f"would grow {new} voxels; nothing written (--dry-run)")
        return
    written = write_grown(scan, grown)
    print(f"wrote {written} grown voxels into {scan.path} (asymseg info counts them apart)")


def _brief(per_slice: dict[int, int], most: int = 16) -> str:
    """``z: voxels`` per slice; the middle left out past ``most`` slices."""
    items = [f"{z}: {n}" for z, n in sorted(per_slice.items())]
    if len(items) > most:
        items = items[: most // 2] + [f"... {len(items) - most} more ..."] + items[-most // 2 :]
    return ", ".join(items)
