"""Sample scans: the committed synthetic lesion scan, and the Colin27 hippocampus scan.

The committed sample (``sample_data/sample-lesions.zarr``) is produced by
:func:`write_sample_scan` with the defaults below; ``tests/samples/test_sample_data.py`` checks that
regenerating it gives the same scan. Users never paint into the committed copy:
:func:`sample_scan` hands out a working copy under :func:`asymseg_home`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from napari_asymseg.errors import ScanError
from napari_asymseg.store.annotations import NOT_ANNOTATED, from_mask
from napari_asymseg.store.atomic import make_folder, replacing
from napari_asymseg.store.scan import Scan

SAMPLE_NAME = "sample-lesions.zarr"
SAMPLE_SEED = 7
SAMPLE_SHAPE = (40, 112, 112)
SAMPLE_SPACING = (2.0, 0.8, 0.8)
SAMPLE_ANNOTATED_SLICES = 4

COLIN27_DIR = Path("/usr/share/mricron/templates")
COLIN27_LABELS = {37: 1, 38: 1}  # AAL: 37 = left hippocampus, 38 = right hippocampus


def asymseg_home() -> Path:
    """Where working copies of samples live: ``$ASYMSEG_HOME`` or the XDG data folder."""
    env = os.environ.get("ASYMSEG_HOME")
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "napari-asymseg"


def write_sample_scan(
    out: str | os.PathLike,
    *,
    seed: int = SAMPLE_SEED,
    shape: tuple[int, int, int] = SAMPLE_SHAPE,
    spacing: tuple[float, float, float] = SAMPLE_SPACING,
    n_slices: int = SAMPLE_ANNOTATED_SLICES,
    overwrite: bool = False,
) -> Scan:
    """Write a synthetic lesion scan with a few annotated slices and its full ground truth.

    The image is stored as int16, like a scanner's raw intensities, which keeps the committed
    sample small; the ground truth is kept in the scan for evaluation only.
    """
    from napari_asymseg.samples.synthetic import sparse_annotations, synthetic_scan

    syn = synthetic_scan(seed, shape=shape, spacing=spacing)
    image = np.clip(np.rint(syn.image), -32768, 32767).astype(np.int16)
    annotations = sparse_annotations(syn.ground_truth, n_slices=n_slices, seed=seed)
    return Scan.create(
        out,
        image,
        spacing=syn.spacing,
        classes=("lesion",),
        annotations=annotations,
        ground_truth=syn.ground_truth,
        source=f"napari_asymseg.synthetic seed={seed}",
        overwrite=overwrite,
    )


def committed_sample() -> Path | None:
    """The committed sample scan: inside an installed wheel, or in a source checkout."""
    package = Path(__file__).resolve().parents[1]  # napari_asymseg/
    installed, checkout = package / "_sample_data", package.parents[1] / "sample_data"
    for candidate in (installed / SAMPLE_NAME, checkout / SAMPLE_NAME):
        if (candidate / "zarr.json").is_file():
            return candidate
    return None


def sample_scan(home: str | os.PathLike | None = None, *, fresh: bool = False) -> Path:
    """A writable working copy of the sample scan, made on first use.

    Parameters
    ----------
    home
        Folder for the copy (default :func:`asymseg_home`).
    fresh
        Discard the user's earlier copy (and its annotations) and start again.
    """
    home = Path(home) if home is not None else asymseg_home()
    target = home / "samples" / SAMPLE_NAME
    if target.exists() and not fresh:
        return target
    make_folder(target.parent)
    source = committed_sample()
    if source is None:  # an install without the committed copy: regenerate it, deterministically
        write_sample_scan(target, overwrite=True)
        return target
    with replacing(target) as tmp:  # a crash leaves the old copy or the new one, never half
        shutil.copytree(source, tmp)
    return target


def colin27_files(templates: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Paths of ``ch2bet.nii.gz`` and ``aal.nii.gz``; a clear error when they are missing."""
    folder = Path(templates) if templates is not None else COLIN27_DIR
    image, atlas = folder / "ch2bet.nii.gz", folder / "aal.nii.gz"
    if not (image.is_file() and atlas.is_file()):
        raise ScanError(
            f"Colin27 files not found in {folder}: install them with "
            "`sudo apt-get install mricron-data` (or pass the templates folder)"
        )
    return image, atlas


def build_colin27(
    out: str | os.PathLike,
    *,
    templates: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Scan:
    """Colin27 brain with the AAL hippocampus: annotated on the left, evaluated on the right.

    The ground truth is both hippocampi (AAL 37 and 38) as class 1. Annotations cover the left
    hemisphere densely (RAS x < 0) and leave the right unannotated, which is the split of the
    scarce-label benchmark: train on the left, test on the mirrored right.
    """
    from napari_asymseg.io.importers import import_scan

    image, atlas = colin27_files(templates)
    scan = import_scan(
        image,
        out,
        truth=atlas,
        label_map=COLIN27_LABELS,
        classes=["hippocampus"],
        overwrite=overwrite,
    )
    truth = scan.ground_truth
    assert truth is not None  # import_scan wrote it
    gt = np.asarray(truth[...])
    # World x of every voxel column: the affine's first row applied to (z, y, x) indices.
    zz, yy, xx = np.indices(scan.shape, sparse=True)
    a = scan.affine
    world_x = a[0, 0] * zz + a[0, 1] * yy + a[0, 2] * xx + a[0, 3]
    left = np.broadcast_to(world_x < 0, scan.shape)
    scan.write_annotations(np.where(left, from_mask(gt), NOT_ANNOTATED).astype(np.uint8))
    return scan
