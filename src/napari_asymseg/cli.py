"""The ``asymseg`` command: the same engine as the dock, for scripts and headless machines.

Every bad input ends in one line on stderr (``asymseg: error: ...``) and exit code 2, never
a traceback; the message names the problem and the fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from napari_asymseg import __version__
from napari_asymseg.store import ScanError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own errors: usage line + exit 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"asymseg: error: {message}\n")


def _label_map(text: str) -> dict[int, int]:
    """Parse ``37:1,38:1`` into ``{37: 1, 38: 1}``."""
    try:
        pairs = [item.split(":") for item in text.split(",") if item.strip()]
        mapping = {int(src): int(dst) for src, dst in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad --label-map {text!r}: write SOURCE:CLASS pairs, e.g. 37:1,38:1"
        ) from None
    if not mapping or min(mapping.values()) < 0 or max(mapping.values()) > 254:
        raise argparse.ArgumentTypeError("--label-map classes must lie in 0..254")
    return mapping


def _cmd_import(args: argparse.Namespace) -> None:
    from napari_asymseg.io import import_scan

    scan = import_scan(
        args.image,
        args.out,
        labels=args.labels,
        truth=args.truth,
        label_map=args.label_map,
        classes=args.classes.split(",") if args.classes else None,
        channel=args.channel,
        multiscale=args.multiscale,
        zarr_format=args.zarr_format,
        overwrite=args.overwrite,
    )
    print(f"wrote {scan.path}: {_describe(scan)}")


def _cmd_info(args: argparse.Namespace) -> None:
    from napari_asymseg.store import Scan

    scan = Scan.open(args.scan, mode="r")
    info = scan_summary(scan)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>22}: {value}")


def _cmd_export(args: argparse.Namespace) -> None:
    from napari_asymseg.export import export_mask
    from napari_asymseg.store import Scan

    scan = Scan.open(args.scan, mode="r")
    out = export_mask(scan, args.out, what=args.what, overwrite=args.overwrite)
    print(f"wrote {out}")


def _cmd_sample(args: argparse.Namespace) -> None:
    from napari_asymseg import sample_data

    if args.name == "colin27":
        scan = sample_data.build_colin27(args.out, overwrite=args.overwrite)
    else:
        scan = sample_data.write_sample_scan(args.out, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {scan.path}: {_describe(scan)}")


def _cmd_demo(args: argparse.Namespace) -> None:
    headless = args.headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless:
        from napari_asymseg.demo import run_headless

        run_headless(Path(args.out))
    else:
        from napari_asymseg._qt.demo import run_viewer

        run_viewer()


def scan_summary(scan) -> dict:
    """Shape, spacing and annotation statistics of a scan, as shown by ``asymseg info``."""
    counts = scan.annotation_counts()
    annotated = sum(c for v, c in counts.items() if v > 0)
    foreground = sum(c for v, c in counts.items() if v > 1)
    per_class = {name: counts.get(k + 2, 0) for k, name in enumerate(scan.classes)}
    return {
        "path": str(scan.path),
        "shape (Z, Y, X)": list(scan.shape),
        "spacing mm (Z, Y, X)": [round(s, 4) for s in scan.spacing],
        "orientation": scan.orientation,
        "dtype": str(scan.image.dtype),
        "multiscale levels": len(scan.image_levels),
        "classes": list(scan.classes),
        "annotated voxels": annotated,
        "annotated background": counts.get(1, 0),
        "annotated per class": per_class,
        "foreground fraction": round(foreground / annotated, 6) if annotated else None,
        "imbalance 1:N": round(counts.get(1, 0) / foreground, 1) if foreground else None,
        "results": sorted(scan.results()),
        "ground truth": scan.ground_truth is not None,
    }


def _describe(scan) -> str:
    sp = " x ".join(f"{s:g}" for s in scan.spacing)
    return f"shape {scan.shape}, spacing {sp} mm, classes {', '.join(scan.classes)}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="asymseg",
        description="Annotate-and-train segmentation of small structures in 3D scans.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("import", help="import a NIfTI/NRRD/MHA/TIFF/OME-Zarr image as a scan")
    p.add_argument("image", help="image file (.nii, .nii.gz, .nrrd, .mha, .tif, .ome.zarr)")
    p.add_argument("out", help="the new scan directory, e.g. case01.zarr")
    p.add_argument(
        "--labels",
        help="label file on the same grid: imported as dense annotations "
        "(0 -> annotated background, k -> class k)",
    )
    p.add_argument("--truth", help="label file kept as ground truth for evaluation only")
    p.add_argument(
        "--label-map",
        type=_label_map,
        metavar="SRC:CLASS,...",
        help="keep and renumber source labels, e.g. 37:1,38:1 (others -> background)",
    )
    p.add_argument("--classes", help="comma-separated foreground class names (default class1..)")
    p.add_argument("--channel", type=int, help="channel / time point to take from a 4D image")
    p.add_argument(
        "--multiscale",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="store an OME-Zarr pyramid (default: for images over 256^3 voxels)",
    )
    p.add_argument(
        "--zarr-format",
        type=int,
        choices=(2, 3),
        default=3,
        help="zarr format of the new scan (default 3)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing scan at OUT")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("info", help="print a scan's shape, spacing and annotation statistics")
    p.add_argument("scan", help="scan directory (.zarr)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("export", help="export a mask to NIfTI (source affine), TIFF or OME-Zarr")
    p.add_argument("scan", help="scan directory (.zarr)")
    p.add_argument("out", help="output file: .nii.gz, .nii, .tif or .ome.zarr")
    p.add_argument(
        "--what",
        choices=("prediction", "annotations", "ground_truth"),
        default="prediction",
        help="which mask to export (default prediction)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file at OUT")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("sample", help="write a sample scan: synthetic lesions, or Colin27")
    p.add_argument(
        "name",
        choices=("lesions", "colin27"),
        help="lesions: synthetic scan; colin27: brain + AAL hippocampus (needs the "
        "Debian package mricron-data)",
    )
    p.add_argument("out", help="the new scan directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic scan (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing scan at OUT")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser(
        "demo", help="open napari with the dock and the sample scan (headless without a display)"
    )
    p.add_argument("--headless", action="store_true", help="run without a display")
    p.add_argument("--out", default="asymseg-demo", help="headless results folder")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asymseg`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except ScanError as exc:
        print(f"asymseg: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("asymseg: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
