"""Which interpolation fills between painted slices: the measurement behind docs/methods.md.

Compares, inside the same pairing rules (:func:`napari_asymseg.annotate.interpolate.fill_between`),
the shapes between two painted slices from

- ``sdf``: the signed-distance blend with centroids aligned (the default),
- ``sdf-plain``: the same blend without the alignment,
- ``itk``: ITK's morphological contour interpolation (Albu et al. 2008; Zukić et al. 2016),
  when ``itk-morphologicalcontourinterpolation`` can be imported (it is not a dependency:
  ``pip install --target DIR itk-morphologicalcontourinterpolation`` and ``PYTHONPATH=DIR``),

by the DSC of the filled slices against the true shapes (known test shapes, synthetic scans
painted every k-th slice, the committed sample as painted) and by the time of one fill on a
512 x 512 slice pair. Writes one JSON document (the machine named)::

    pip install --target /tmp/itk itk-morphologicalcontourinterpolation   # optional: the ITK column
    PYTHONPATH=/tmp/itk .venv/bin/python benchmarks/fill_between.py \
        --out benchmarks/results/fill_between.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_json  # noqa: E402
from napari_asymseg.annotate.interpolate import fill_between
from napari_asymseg.annotate.shapes import blend_sdf
from napari_asymseg.samples.synthetic import synthetic_scan
from napari_asymseg.store.scan import Scan

ROOT = Path(__file__).resolve().parents[1]


def blend_itk(first, last, n, spacing):
    """ITK's morphological contour interpolation of the ``n`` slices between two masks."""
    import itk

    vol = np.zeros((n + 2, *first.shape), np.uint8)
    vol[0], vol[-1] = first, last
    image = itk.image_from_array(vol)
    image.SetSpacing((float(spacing[1]), float(spacing[0]), 1.0))
    interp = itk.MorphologicalContourInterpolator.New(image)
    interp.SetAxis(2)  # ITK's axes are (x, y, z): the slices' axis, numpy's 0, is its 2
    interp.Update()
    out = itk.array_from_image(interp.GetOutput())
    return [out[i] > 0 for i in range(1, n + 1)]


def methods() -> dict:
    found = {"sdf": blend_sdf, "sdf-plain": functools.partial(blend_sdf, align=False)}
    try:
        t0 = time.perf_counter()
        import itk

        itk.MorphologicalContourInterpolator  # noqa: B018  (the lazy import happens here)
        found["itk"] = blend_itk
        found["_itk_import_s"] = time.perf_counter() - t0
    except ImportError:
        pass
    return found


def dsc(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2 * int((a & b).sum()) / total


def painted_on(truth: np.ndarray, slices) -> np.ndarray:
    """Annotation codes: the slices ``slices`` painted whole (truth + 1), the rest unpainted."""
    ann = np.zeros(truth.shape, np.uint8)
    for z in slices:
        ann[z] = truth[z] + 1
    return ann


def score(truth, ann, spacing, between) -> float:
    """DSC of the fill against the truth on the unpainted slices between painted ones."""
    painted = np.flatnonzero(ann.reshape(len(ann), -1).any(1))
    between_slices = [z for z in range(painted[0], painted[-1]) if z not in set(painted)]
    try:
        fill = fill_between(ann, spacing, between=between).codes
    except Exception:  # nothing to fill
        fill = np.zeros_like(ann)
    got = (fill > 1)[between_slices]
    return dsc(got, truth[between_slices] > 0)


def shapes() -> dict[str, tuple[np.ndarray, list[int]]]:
    """Known shapes (truth, painted slices), as in tests/annotate/test_interpolate.py."""
    zz, yy, xx = np.mgrid[:24, :80, :80].astype(float)
    out = {}
    out["sphere gap 4"] = ((zz - 12) ** 2 + (yy - 40) ** 2 + (xx - 40) ** 2 <= 144, [10, 14])
    out["sphere gap 8"] = (out["sphere gap 4"][0], [7, 15])
    out["cone"] = ((yy - 40) ** 2 + (xx - 40) ** 2 <= (1.5 * (zz - 2)) ** 2 * (zz <= 20), [4, 20])
    tilt = (yy - 20 - 2 * zz) ** 2 + (xx - 40) ** 2 <= 49  # a tube running obliquely
    out["oblique tube (overlapping ends)"] = (tilt, [6, 9])
    out["oblique tube (ends apart)"] = (tilt, [4, 12])
    left = (yy - 40) ** 2 + (xx - 40 + 1.2 * zz) ** 2 <= 64
    right = (yy - 40) ** 2 + (xx - 40 - 1.2 * zz) ** 2 <= 64
    out["splitting lesion"] = (left | right, [2, 14])
    return {k: (v.astype(np.uint8), s) for k, (v, s) in out.items()}


def accuracy(kernels: dict) -> dict:
    results: dict = {"shapes": {}, "synthetic scans": {}}
    for name, (truth, slices) in shapes().items():
        ann = painted_on(truth, slices)
        results["shapes"][name] = {
            m: round(score(truth, ann, None, k), 4) for m, k in kernels.items()
        }
    scans = [synthetic_scan(seed) for seed in range(10)]
    for step in (2, 3, 4, 6):
        per = {m: [] for m in kernels}
        for syn in scans:
            ann = painted_on(syn.ground_truth, range(0, len(syn.ground_truth), step))
            for m, k in kernels.items():
                per[m].append(score(syn.ground_truth, ann, syn.spacing, k))
        results["synthetic scans"][f"every {step} slices"] = {
            m: round(float(np.mean(v)), 4) for m, v in per.items()
        }
    sample = Scan.open(ROOT / "sample_data" / "sample-lesions.zarr", mode="r")
    truth = np.asarray(sample.ground_truth[:])
    ann = sample.read_annotations()
    results["sample as painted"] = {
        m: round(score(truth, ann, sample.spacing, k), 4) for m, k in kernels.items()
    }
    return results


def big_pair(gap: int = 6) -> np.ndarray:
    """A 512 x 512 slice pair ``gap`` slices apart: a large lobed lesion and 30 small ones."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :512].astype(float)
    ann = np.zeros((gap + 3, 512, 512), np.uint8)
    for z, grow in ((1, 0.0), (gap + 1, 1.0)):
        angle = np.arctan2(yy - 256, xx - 256)
        lesion = np.hypot(yy - 256, xx - 256) <= 110 + 20 * grow + 25 * np.cos(3 * angle)
        spots = rng.uniform(30, 480, (30, 2))
        for cy, cx in spots:
            lesion |= np.hypot(yy - cy - 4 * grow, xx - cx) <= 6
        ann[z] = 1 + lesion
    return ann


def speed(kernels: dict) -> dict:
    """Seconds of one fill (median of 3 after a first call) on :func:`big_pair`."""
    ann = big_pair()
    out: dict = {}
    for m, k in kernels.items():
        t0 = time.perf_counter()
        fill_between(ann, (1.0, 0.5, 0.5), between=k)  # first call: imports and caches
        out[f"{m} first call"] = round(time.perf_counter() - t0, 3)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fill_between(ann, (1.0, 0.5, 0.5), between=k)
            times.append(time.perf_counter() - t0)
        out[m] = round(float(np.median(times)), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="fill between slices: blend against ITK")
    parser.add_argument("--out", help="write the JSON here (default: print it)")
    args = parser.parse_args()
    kernels = methods()
    itk_import = kernels.pop("_itk_import_s", None)
    report = {
        "machine": machine(),
        "scipy": scipy.__version__,
        "itk import s": None if itk_import is None else round(itk_import, 2),
        "dsc": accuracy(kernels),
        "seconds per 512x512 pair (gap 6, 1 large + 30 small lesions)": speed(kernels),
    }
    if args.out:
        write_json(args.out, report)
    else:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
