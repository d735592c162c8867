"""Prediction and flagging as dask graphs over the scan's zarr chunks, on one machine or a
``dask.distributed`` cluster.

The image and annotations are dask arrays read from the scan's zarr store, in blocks of whole
slices. :func:`predict_dask` maps :meth:`napari_asymseg.infer.predictor.Predictor.results` over the
blocks with ``map_overlap`` (each block sees the window rows and the smoothing context it
needs from its neighbours), and the workers write every block into the scan's results, which
replace the old ones only when all blocks are done. :func:`flag_dask` labels the regions at
risk with ``dask_image.ndmeasure.label`` across blocks and ranks them from per-block
statistics merged on the client. Both give what the single-process path gives
(``tests/infer/test_scaleout.py``).

A cluster's workers must see the scan and the model at the same paths (shared storage).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_asymseg.config import Config, config_from_dict, config_to_dict
from napari_asymseg.errors import ScanError
from napari_asymseg.infer.predict import PredictionDone, WindowDone, scan_figure
from napari_asymseg.infer.predictor import RESULT_DTYPES, Predictor
from napari_asymseg.infer.with_fill import add_fill
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.review.flags import Flag, RegionStats, region_stats
from napari_asymseg.review.risk_map import THRESHOLD
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.device import release_freed_memory

RESULT = np.dtype([(name, np.dtype(dt)) for name, dt in RESULT_DTYPES.items()])
MIN_BLOCK = 64  # slices per block at least: the overlap stays a small share of the work


@contextmanager
def dask_client(address: str | None) -> Iterator[Any]:
    """A client of the scheduler at ``address``, or of a local cluster (one single-threaded
    worker process per core) when ``address`` is None or ``local``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a dependency
        raise ScanError("dask.distributed is not installed: pip install distributed") from None
    if address in (None, "", "local"):
        workers = max(1, min(os.cpu_count() or 1, 8))
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ScanError(
            f"cannot reach the dask scheduler at {address} ({type(exc).__name__}): start it "
            "(dask scheduler) or check the address, e.g. tcp://host:8786"
        ) from None
    with client:
        yield client


def block_depths(depth: int, overlap: int, step: int) -> tuple[int, ...]:
    """Blocks of whole chunks (``step`` slices), each at least as deep as the overlap it lends
    its neighbours (dask's rule) and :data:`MIN_BLOCK`."""
    size = -(-max(MIN_BLOCK, overlap) // step) * step
    blocks = [size] * (depth // size)
    rest = depth - sum(blocks)
    if rest:
        if blocks and rest < overlap:
            blocks[-1] += rest
        else:
            blocks.append(rest)
    return tuple(blocks)


def predict_dask(
    scan: Scan | str | os.PathLike,
    model: str | os.PathLike,
    *,
    config: Config | None = None,
    address: str | None = None,
) -> Generator[WindowDone | PredictionDone, None, PredictionDone]:
    """:func:`napari_asymseg.infer.predict.predict` as a dask graph over the scan's chunks.

    Yields a :class:`WindowDone` per finished block, then :class:`PredictionDone`. Closing
    the generator cancels the blocks and leaves the old results.
    """
    from dask import delayed

    scan = scan if isinstance(scan, Scan) else Scan.open(scan)
    model_path = str(Path(model).resolve())
    predictor = Predictor.for_scan(scan, model_path, config)
    job = _BlockJob(
        model=model_path,
        config=config_to_dict(predictor.cfg),
        shape=scan.shape,
        spacing=scan.spacing,
        stats=predictor.stats,
        radius=predictor.radius,
        # the window rows that cover a block reach one window's depth beyond the smoothing's
        image_overlap=predictor.radius + predictor.window.patch[0],
    )
    del predictor  # the workers build their own
    t0 = time.perf_counter()
    with dask_client(address) as client, scan.writing_results(RESULT_DTYPES) as out:
        step = out["prediction"].chunks[0]
        blocks = block_depths(scan.shape[0], job.image_overlap, step)
        results = _results_graph(scan, job, blocks, step)
        starts = np.cumsum((0, *blocks))
        writes = [
            delayed(_write_block)(part, out, int(starts[i]))
            for i, part in enumerate(results.to_delayed().ravel())
        ]
        fg_voxels = yield from _progress(client, client.compute(writes), scan.shape[0])
        if job.config["predict"]["fill_between"]:  # on the client: the fill needs every slice
            fg_voxels += add_fill(out, scan.read_annotations(), scan.spacing)
    figure = scan_figure(scan, model)  # on the client, as in predict()
    finished = PredictionDone(str(scan.path), time.perf_counter() - t0, fg_voxels, figure=figure)
    yield finished
    return finished


@dataclass(frozen=True)
class _BlockJob:
    """What every block's task needs to rebuild the predictor on its worker."""

    model: str
    config: dict[str, Any]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    stats: tuple[float, float]
    radius: int  # slices of the risk map's smoothing on each side
    image_overlap: int  # image slices a block borrows from each neighbour


def _results_graph(scan: Scan, job: _BlockJob, blocks: tuple[int, ...], step: int) -> Any:
    """The results of every block (a structured dask array), each block computed from its
    slices and the overlap its neighbours lend it."""
    import dask.array as da

    _, ny, nx = scan.shape
    image = da.from_zarr(scan.image).rechunk((blocks, ny, nx))
    annotations = da.from_zarr(scan.annotations).rechunk((blocks, ny, nx))
    return da.map_overlap(
        _predict_block,
        image,
        annotations,
        depth=[{0: job.image_overlap, 1: 0, 2: 0}, {0: job.radius, 1: 0, 2: 0}],
        boundary="none",
        trim=False,
        dtype=RESULT,
        chunks=image.chunks,
        meta=np.empty((0, 0, 0), RESULT),
        model=job.model,
        config=job.config,
        shape=job.shape,
        spacing=job.spacing,
        stats=job.stats,
        step=step,
        overlaps=(job.image_overlap, job.radius),
    )


def _progress(client: Any, futures: list[Any], depth: int) -> Generator[WindowDone, None, int]:
    """A WindowDone per written block as it finishes; the foreground voxels in all. Closing
    the generator cancels the blocks still running."""
    from distributed import as_completed

    fg_voxels, done = 0, 0
    try:
        for future in as_completed(futures):
            z0, z1, fg = future.result()
            fg_voxels += fg
            done += z1 - z0
            yield WindowDone(done, depth)
    finally:
        client.cancel(futures)
    return fg_voxels


@functools.lru_cache(maxsize=2)
def _worker_predictor(
    model: str,
    mtime: float,
    config: str,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    stats: tuple[float, float],
) -> Predictor:
    """One predictor per worker process and model (loading the network once)."""
    import json

    cfg = config_from_dict(json.loads(config))
    return Predictor.load(load_checkpoint(model), shape, spacing, stats, cfg)


def _predict_block(
    image: np.ndarray,
    annotations: np.ndarray,
    *,
    model: str,
    config: dict[str, Any],
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    stats: tuple[float, float],
    step: int,
    overlaps: tuple[int, int],
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """The results of one block, from its slices and the overlap its neighbours lend it."""
    import json

    assert block_info is not None
    (z0, z1), _, _ = block_info[None]["array-location"]
    if not Path(model).exists():
        raise ScanError(
            f"a dask worker cannot see the model {model}: put it on storage the workers share"
        )
    predictor = _worker_predictor(
        model,
        Path(model).stat().st_mtime,
        json.dumps(config, sort_keys=True),
        tuple(shape),
        tuple(spacing),
        tuple(stats),
    )
    i0 = z0 - min(overlaps[0], z0)  # the first slice of the image block
    a0 = z0 - min(overlaps[1], z0)

    def read_image(a: int, b: int) -> np.ndarray:
        return image[a - i0 : b - i0]

    def read_annotations(a: int, b: int) -> np.ndarray:
        return annotations[a - a0 : b - a0]

    out = np.empty((z1 - z0, *image.shape[1:]), RESULT)
    for e0, e1, values in predictor.results(read_image, read_annotations, z0, z1, step):
        for name, v in values.items():
            out[name][e0 - z0 : e1 - z0] = v
    return out


def _write_block(values: np.ndarray, out: dict[str, Any], z0: int) -> tuple[int, int, int]:
    """Write one block's results into the scan (whole chunks: blocks never share one)."""
    z1 = z0 + values.shape[0]
    for name in RESULT.names or ():
        out[name][z0:z1] = values[name]
    fg = int((values["prediction"] > 0).sum())
    del values
    release_freed_memory()
    return z0, z1, fg


# ----------------------------------------------------------------------------- flagging
def flag_dask(
    scan: Scan,
    *,
    address: str | None = None,
    threshold: float = THRESHOLD,
    min_expected: float = 1.0,
    max_flags: int = 100,
) -> list[Flag]:
    """:func:`napari_asymseg.review.flags.flag_scan` as a dask graph: the regions are labelled
    across blocks by ``dask_image``, their statistics computed per block and merged. Nothing is
    stored (``asymseg flag --dask`` ranks them into the review queue)."""
    import dask.array as da
    from dask import delayed
    from dask_image.ndmeasure import label

    from napari_asymseg.review.flags import flags_from_stats, stored_risk_arrays
    from napari_asymseg.review.risk_map import with_annotations

    risk_array, prediction_array = stored_risk_arrays(scan)
    depth, ny, nx = scan.shape
    blocks = block_depths(depth, 1, risk_array.chunks[0])
    chunks = (blocks, ny, nx)
    risk = da.from_zarr(risk_array).rechunk(chunks).astype(np.float32)
    prediction = da.from_zarr(prediction_array).rechunk(chunks)
    annotations = da.from_zarr(scan.annotations).rechunk(chunks)
    exact = da.map_blocks(with_annotations, risk, annotations, prediction, dtype=np.float32)
    labels, _ = label(exact >= threshold, structure=np.ones((3, 3, 3), bool))
    starts = np.cumsum((0, *blocks))
    parts = [
        delayed(_block_stats)(lab, r, ann, pred, int(starts[i]) * ny * nx, scan.shape)
        for i, (lab, r, ann, pred) in enumerate(
            zip(
                labels.to_delayed().ravel(),
                exact.to_delayed().ravel(),
                annotations.to_delayed().ravel(),
                prediction.to_delayed().ravel(),
                strict=True,
            )
        )
    ]
    with dask_client(address) as client:
        block_stats = client.gather(client.compute(parts))
    stats = functools.reduce(RegionStats.merged, block_stats)
    return flags_from_stats(scan, stats, min_expected=min_expected, max_flags=max_flags)


def _block_stats(
    labels: np.ndarray,
    risk: np.ndarray,
    annotations: np.ndarray,
    prediction: np.ndarray,
    offset: int,
    shape: tuple[int, int, int],
) -> RegionStats:
    ids = np.unique(labels)
    return region_stats(
        risk, labels, ids[ids > 0], annotations, prediction, offset=offset, shape=shape
    )
