"""DICOM in and SEG out on the real scans, with dcm2niix as the peer for the import.

    .venv/bin/python benchmarks/dicom_roundtrip.py                    # brain1, brain2, colin27
    .venv/bin/python benchmarks/dicom_roundtrip.py --model brain1=DIR # also a prediction's SEG

Each case (built as in ``real_scans.py``) is written as a DICOM MR series with its own geometry
(``io/dicom_write.py``), then, side by side:

- **import**: ``asymseg``'s DICOM reader (``import_scan`` into a new scan) against ``dcm2niix``
  (the Debian package, NIfTI out, no compression) on the same folder: seconds, median of
  ``--repeats``; whether the two voxel grids agree (the largest distance between their voxel
  centres, mm) and their values;
- **SEG out**: the reference mask (and with ``--model`` the model's prediction) exported as a
  DICOM SEG on the imported scan: seconds, size, ``dciodvfy``'s error lines, and whether
  highdicom reads back the same mask on the source images.

Needs ``dcm2niix`` and ``dciodvfy`` (``bash scripts/setup.sh test`` installs both).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import machine, table, write_json  # noqa: E402
from real_scans import build_case  # noqa: E402

CASES = ("brain1", "brain2", "colin27")
HERE = Path(__file__).resolve().parent


def _timed(func, repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def run_case(name: str, work: Path, repeats: int, model: str | None) -> dict[str, Any]:
    import dicom_helpers as dh
    from napari_asymseg.infer.predict import predict
    from napari_asymseg.io.dicom_seg import read_seg
    from napari_asymseg.io.dicom_write import Identity, write_series
    from napari_asymseg.io.exporters import export_mask
    from napari_asymseg.io.importers import import_scan, read_volume
    from napari_asymseg.store.scan import Scan

    src = Scan.open(build_case(name, work), mode="r")
    case = work / "dicom" / name
    shutil.rmtree(case, ignore_errors=True)
    image = np.asarray(src.image[...])
    write_series(
        image,
        src.affine,
        case / "series",
        modality="MR",
        identity=Identity(series_description=name),
    )
    ours_s, scan = _timed(
        lambda: import_scan(case / "series", case / "scan.zarr", overwrite=True), repeats
    )

    def niix() -> Path:
        out = case / "niix"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        cmd = ["dcm2niix", "-z", "n", "-f", "x", "-o", str(out), str(case / "series")]
        subprocess.run(cmd, check=True, capture_output=True)
        return out / "x.nii"

    niix_s, nii = _timed(niix, repeats)
    theirs = read_volume(nii)
    ours = np.asarray(scan.image[...])
    m = np.linalg.inv(theirs.affine) @ scan.affine
    perm = np.eye(4)
    perm[:3, :3], perm[:3, 3] = np.round(m[:3, :3]), np.round(m[:3, 3])
    corners = np.vstack(
        [
            np.indices((2, 2, 2)).reshape(3, -1) * (np.array(scan.shape) - 1)[:, None],
            np.ones((1, 8)),
        ]
    )
    grid_mm = float(np.abs(theirs.affine @ perm @ corners - scan.affine @ corners).max())
    on_ours = dh.to_grid(theirs.data, theirs.affine, scan.affine, scan.shape, atol_mm=1e-2)
    back_to_source = dh.to_grid(ours, scan.affine, src.affine, src.shape)
    truth = dh.to_grid(np.asarray(src.ground_truth[...]), src.affine, scan.affine, scan.shape)
    masks = {"reference": truth}
    if model:
        list(predict(scan, model))
        masks["prediction"] = np.asarray(scan.result("prediction")[...])
    segs = {}
    for what, mask in masks.items():
        out = case / f"{what}-seg.dcm"
        kind = "ground_truth" if what == "reference" else what
        seg_s, _ = _timed(
            lambda o=out, m=mask, k=kind: export_mask(scan, o, mask=m, what=k, overwrite=True),
            repeats,
        )
        back = read_seg(out, scan.dicom["sop_instance_uids"])
        segs[what] = {
            "seconds": seg_s,
            "kib": out.stat().st_size / 1024,
            "dciodvfy_errors": dh.dciodvfy(out),
            "read_back_equal": bool(np.array_equal(back, mask)),
            "voxels": int((mask > 0).sum()),
        }
    return {
        "shape": list(scan.shape),
        "slices": len(scan.dicom["files"]),
        "import_s": {"asymseg": ours_s, "dcm2niix": niix_s, "ratio": ours_s / niix_s},
        "grid_max_mm": grid_mm,
        "values_max_abs_diff_vs_dcm2niix": float(np.abs(on_ours - ours).max()),
        "values_equal_source": bool(np.array_equal(back_to_source, image)),
        "seg": segs,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=[*CASES, "synthetic"])
    p.add_argument("--work", default=str(HERE / "results" / "real_scans-work"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", action="append", default=[], metavar="CASE=DIR")
    p.add_argument("--out", default="benchmarks/results/dicom_roundtrip.json")
    args = p.parse_args(argv)
    models = dict(m.split("=", 1) for m in args.model)
    t0 = time.perf_counter()
    results = {c: run_case(c, Path(args.work), args.repeats, models.get(c)) for c in args.cases}
    rows = [
        [
            c,
            "×".join(map(str, r["shape"])),
            f"{r['import_s']['asymseg']:.2f}",
            f"{r['import_s']['dcm2niix']:.2f}",
            f"{r['import_s']['ratio']:.2f}",
            f"{r['grid_max_mm']:.1e}",
            f"{r['values_max_abs_diff_vs_dcm2niix']:.3g}",
            ", ".join(
                f"{w}: {s['seconds']:.2f} s, {len(s['dciodvfy_errors'])} err, "
                f"{'same' if s['read_back_equal'] else 'DIFFERENT'}"
                for w, s in r["seg"].items()
            ),
        ]
        for c, r in results.items()
    ]
    head = ["case", "shape", "import s", "dcm2niix s", "ratio", "grid mm", "value diff", "SEG"]
    print(table(head, rows))
    data = {"machine": machine(), "runtime_s": time.perf_counter() - t0, "cases": results}
    write_json(args.out, data)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
