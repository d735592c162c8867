"""Which ranking puts the most wrong voxels at the top of the suspected false alarms? (issue 19)

    .venv/bin/python benchmarks/false_alarm_ranking.py --work /tmp/alw

Uses the initial models of ``benchmarks/active_learning.py`` (under the same ``--work``: the
protocol's painted scan and its model per case and seed). Each scan is predicted; its
suspected false alarms are built as the queue builds them
(:func:`napari_asymseg.review.queue.false_alarm_items`), and each candidate score ranks them.
Reported: the share of the false-positive voxels (predicted lesion, truly not, unpainted) in
the top 5 and top 10 items, and the lesion voxels among them (an item that is lesion is worth
less to a clinician's "not lesion" than one that is not). Scores:

* ``size``: the region's voxels;
* ``size*(1-p)`` (the queue's before 2026-11-28): voxels times one minus the region's mean
  lesion probability ``p``, the expected number of wrong voxels if ``p`` is calibrated;
* ``size*doubt`` (the queue's): voxels times ``1 - p * exp(-d / L)``, ``d`` the distance (mm)
  from the region's peak to the nearest painted lesion voxel, ``L`` two diameters of the painted
  lesion (:mod:`napari_asymseg.review.false_alarms`): the probability trusted less far from
  what the model was shown;
* ``size*(1-p)*log(1+dist)``: ``size*(1-p)`` times the log of 1 + ``d``;
* ``size*unlike``: voxels times how unlike the painted lesion the region's mean intensity is
  (|z-score| against the painted lesion voxels).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


SCORES = ("size*doubt", "size*(1-p)", "size", "size*(1-p)*log(1+dist)", "size*unlike")


def scores_of(items, mean_p, image, painted_lesion, spacing) -> dict[str, np.ndarray]:
    from scipy import ndimage

    size = np.array([i.voxels for i in items], float)
    doubt = np.array([i.doubt for i in items], float)
    if painted_lesion.any():
        dist = ndimage.distance_transform_edt(~painted_lesion, sampling=spacing)
        near = np.array([dist[i.center] for i in items])
        values = image[painted_lesion]
        mu, sd = float(values.mean()), float(values.std()) + 1e-6
    else:
        near, mu, sd = np.zeros(len(items)), 0.0, 1.0
    unlike = np.array([abs(float(image[i.box].mean()) - mu) / sd for i in items])
    return {
        "size*doubt": size * doubt,
        "size*(1-p)": size * (1 - mean_p),
        "size": size,
        "size*(1-p)*log(1+dist)": size * (1 - mean_p) * np.log1p(near),
        "size*unlike": size * unlike,
    }


def study(scan_path: Path, model: Path) -> dict[str, Any]:
    from napari_asymseg.infer.predict import predict
    from napari_asymseg.review import queue as rq
    from napari_asymseg.store.annotations import BACKGROUND
    from napari_asymseg.store.scan import Scan

    work = Path(tempfile.mkdtemp(prefix="asymseg-fa-"))
    copy = work / scan_path.name
    shutil.copytree(scan_path, copy)
    scan = Scan.open(copy)
    for _ in predict(scan, model):
        pass
    pred = np.asarray(scan.result("prediction")[...])
    prob = np.asarray(scan.result("probability")[...], np.float32)
    ann = scan.read_annotations()
    truth = np.asarray(scan.ground_truth[...]) > 0
    image = np.asarray(scan.image[...], np.float32)
    items = rq.false_alarm_items(pred, prob, ann, scan.spacing)
    shutil.rmtree(work, ignore_errors=True)
    wrong, right, mean_p = [], [], []
    for i in items:
        region = rq.region_of(i, pred, ann)
        t = truth[i.box][region]
        wrong.append(int((~t).sum()))
        right.append(int(t.sum()))
        mean_p.append(float(prob[i.box][region].mean()))
    w, r = np.array(wrong), np.array(right)
    out: dict[str, Any] = {"items": len(items), "false_positive_voxels": int(w.sum())}
    scores = scores_of(items, np.array(mean_p), image, ann > BACKGROUND, scan.spacing)
    for name, sc in scores.items():
        order = np.argsort(-sc, kind="stable")
        out[name] = {
            f"top{k}": {
                "fp_share": float(w[order[:k]].sum() / max(w.sum(), 1)),
                "lesion_voxels": int(r[order[:k]].sum()),
            }
            for k in (5, 10)
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/asymseg-active-learning")
    p.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "false_alarm_ranking.json")
    )
    args = p.parse_args(argv)
    initial = Path(args.work) / "initial"
    results: dict[str, Any] = {}
    rows = []
    for model in sorted(initial.glob("*.model")):
        key = model.stem
        res = study(model.with_suffix(".zarr"), model)
        results[key] = res
        for name in SCORES:
            a, b = res[name]["top5"], res[name]["top10"]
            rows.append([key, res["items"], name, f"{a['fp_share']:.2f}", f"{b['fp_share']:.2f}",
                         a["lesion_voxels"], b["lesion_voxels"]])  # fmt: skip
    print(table(["case-seed", "items", "score", "FP share top 5", "top 10",
                 "lesion voxels top 5", "top 10"], rows))  # fmt: skip
    write_json(Path(args.out), {"machine": machine(), "results": results})
    return results


if __name__ == "__main__":
    main()
