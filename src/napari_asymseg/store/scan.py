"""The scan store: one zarr group per scan, the single source of truth.

Layout of a scan group (zarr format 3 by default; format 2 groups are read and written too)::

    scan.zarr/
      image                 3D array (Z, Y, X), or an OME-Zarr NGFF 0.4/0.5 multiscale group
      annotations           uint8 (Z, Y, X): 0 = not annotated, 1 = background, 2.. = foreground
      ground_truth          optional uint8 reference mask (0 = background, 1..K), for evaluation
      results/prediction    uint8 mask of the latest prediction (0 = background, 1..K)
      results/probability   float foreground probability of the latest prediction
      results/risk          float false-negative risk of the latest prediction

The group's ``asymseg_review`` attribute holds the review state (the ranked flags and which of
them the user has dealt with), JSON like every zarr attribute.

The group's ``asymseg`` attribute holds the format version, the voxel spacing (mm, Z Y X),
the affine from (Z, Y, X) voxel indices to RAS world millimetres, and the class names.

Writes are atomic. Each chunk is written to a temporary file and renamed into place by zarr's
local store, so a partial update (painting) never leaves a torn chunk. Whole arrays are written
next to the old one and swapped in by directory renames; :meth:`Scan.open` finishes or rolls
back a swap that a crash interrupted, so a reader only ever sees the old or the new array.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import zarr

from napari_asymseg.errors import ClearError, ScanError, cause
from napari_asymseg.store.atomic import make_folder
from napari_asymseg.store.geometry import (
    affine_from_spacing,
    default_chunks,
    multiscale_meta,
    spacing_from_affine,
    validate_volume,
)

FORMAT_VERSION = 1
ATTRS_KEY = "asymseg"
IMAGE = "image"
ANNOTATIONS = "annotations"
GROUND_TRUTH = "ground_truth"
RESULTS = "results"
RESULT_NAMES = ("prediction", "probability", "risk")
STATE_KEY = "asymseg_review"

NOT_ANNOTATED = 0
BACKGROUND = 1

_TMP = ".tmp-"
_OLD = ".old-"
_LEFTOVER = re.compile(r"(\.tmp-|\.old-)(.+)-[0-9a-f]{8}")


def _open_group(path: Path, mode: str) -> zarr.Group:
    if not path.exists():
        raise ScanError(
            f"no scan at {path}: check the path, or create one with `asymseg import IMAGE {path}`"
        )
    try:
        return zarr.open_group(str(path), mode=mode)  # type: ignore[arg-type]
    except Exception as exc:  # zarr raises many types for a damaged store
        raise ScanError(
            f"{path} is not a readable zarr group ({cause(exc)}): restore it from "
            "a backup or import the original image again"
        ) from None


class Scan:
    """A scan zarr group: image, spacing, annotations and the latest results.

    Use :meth:`create` or :meth:`open`; the arrays are read lazily from disk.
    """

    def __init__(self, path: Path, group: zarr.Group) -> None:
        self.path = path
        self.group = group
        self._meta: dict[str, Any] = dict(cast(dict, group.attrs.get(ATTRS_KEY) or {}))
        self._image_levels, self._image_scales = self._find_image()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        image: Any,
        *,
        spacing: Sequence[float] | None = None,
        affine: np.ndarray | None = None,
        classes: Sequence[str] = ("lesion",),
        annotations: Any | None = None,
        ground_truth: Any | None = None,
        multiscale: bool = False,
        zarr_format: int = 3,
        chunks: Sequence[int] | None = None,
        source: str | None = None,
        overwrite: bool = False,
    ) -> Scan:
        """Write a new scan and return it opened for writing.

        Parameters
        ----------
        path
            Directory of the new zarr group.
        image
            3D (Z, Y, X) numeric volume.
        spacing, affine
            Voxel size in mm (Z, Y, X), or the 4x4 affine from (Z, Y, X) indices to RAS mm
            (spacing then follows from it). Without both, spacing is 1 mm.
        classes
            Names of the foreground classes; annotation value ``k + 2`` is ``classes[k]``.
        annotations
            Optional initial annotations (uint8, same shape, values 0..len(classes)+1).
        ground_truth
            Optional reference mask (0 = background, 1..K) kept for evaluation.
        multiscale
            Store the image as an OME-Zarr multiscale pyramid (NGFF 0.5, or 0.4 in format 2).
        zarr_format
            3 (default) or 2.
        overwrite
            Replace an existing scan at ``path``; without it an existing path is an error.
        """
        path = Path(path)
        validate_volume(image, "image")
        if zarr_format not in (2, 3):
            raise ScanError(f"zarr_format must be 2 or 3, got {zarr_format}")
        if not classes:
            raise ScanError("a scan needs at least one foreground class name")
        if path.exists() and not overwrite:
            raise ScanError(
                f"{path} already exists: choose another output path, or pass --overwrite to "
                "replace it"
            )
        shape = tuple(int(s) for s in image.shape)
        if affine is not None:
            affine = np.asarray(affine, dtype=float)
            if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
                raise ScanError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}")
            if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
                raise ScanError("affine is singular: check the image header's orientation")
            derived = spacing_from_affine(affine)
            if spacing is not None and not np.allclose(derived, spacing, rtol=1e-4):
                raise ScanError(
                    f"spacing {tuple(spacing)} disagrees with the affine's {derived}: pass one"
                )
            spacing = derived
        else:
            spacing = tuple(float(s) for s in (spacing or (1.0, 1.0, 1.0)))
            if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
                raise ScanError(f"spacing must be 3 positive numbers (Z, Y, X), got {spacing}")
            affine = affine_from_spacing(spacing)
        chunks = tuple(chunks) if chunks else default_chunks(shape)
        # Build the whole scan beside its destination and rename it into place: a crash while
        # creating leaves nothing half-written, and overwrite replaces the old scan in one step.
        make_folder(path.parent)
        tmp = path.with_name(f"{_TMP}{path.name}-{uuid.uuid4().hex[:8]}")
        try:
            root = zarr.open_group(str(tmp), mode="w", zarr_format=cast(Literal[2, 3], zarr_format))
            root.attrs[ATTRS_KEY] = {
                "version": FORMAT_VERSION,
                "spacing": list(spacing),
                "affine": affine.tolist(),
                "classes": list(classes),
                "source": source,
            }
            data = np.asarray(image)
            if data.dtype == np.float64:
                data = data.astype(np.float32)
            elif data.dtype == bool:
                data = data.astype(np.uint8)
            if multiscale:
                _write_ome_image(root, data, spacing, chunks)
            else:
                _write_array(root, IMAGE, data, chunks)
            scan = cls(tmp, root)
            ann = np.zeros(shape, np.uint8) if annotations is None else annotations
            scan._check_labels(ann, ANNOTATIONS, max_value=len(classes) + 1)
            _write_array(root, ANNOTATIONS, np.asarray(ann, dtype=np.uint8), chunks)
            if ground_truth is not None:
                scan._check_labels(ground_truth, GROUND_TRUTH, max_value=len(classes))
                _write_array(root, GROUND_TRUTH, np.asarray(ground_truth, np.uint8), chunks)
            if path.exists():
                _swap_in(tmp, path)
            else:
                os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r+") -> Scan:
        """Open an existing scan (``mode="r"`` for read-only).

        Raises
        ------
        ScanError
            When the path is missing, is not a zarr group, or is not a scan.
        """
        path = Path(path)
        if mode not in ("r", "r+"):
            raise ScanError(f"mode must be 'r' or 'r+', got {mode!r}")
        if mode == "r+" and path.is_dir():
            _recover_unless_busy(path)
        group = _open_group(path, mode)
        try:
            scan = cls._checked(path, group)
        except ClearError:
            raise
        except Exception as exc:  # zarr reads array metadata lazily; damage shows up here
            raise ScanError(
                f"{path} has damaged zarr metadata ({cause(exc)}): restore it from a backup or "
                "import the original image again"
            ) from None
        return scan

    @classmethod
    def _checked(cls, path: Path, group: zarr.Group) -> Scan:
        """The scan in ``group`` once its attributes and every array's metadata are sound."""
        meta = group.attrs.get(ATTRS_KEY)
        if not isinstance(meta, dict):
            what = "an OME-Zarr image" if multiscale_meta(dict(group.attrs)) else "a zarr group"
            raise ScanError(
                f"{path} is {what} but not an asymseg scan (no '{ATTRS_KEY}' attributes): "
                f"import it with `asymseg import {path} NEW_SCAN.zarr`"
            )
        if int(meta.get("version", 0)) > FORMAT_VERSION:
            raise ScanError(
                f"{path} was written by a newer napari-asymseg (scan format "
                f"{meta.get('version')}): upgrade napari-asymseg to open it"
            )
        for key in ("spacing", "affine", "classes"):
            if key not in meta:
                raise ScanError(
                    f"{path} is missing the '{key}' scan attribute: re-import the image"
                )
        _check_scan_attrs(path, meta)
        scan = cls(path, group)
        if ANNOTATIONS not in group:
            raise ScanError(
                f"{path} has no '{ANNOTATIONS}' array: re-import the image to recreate the scan"
            )
        ann_shape = tuple(scan.annotations.shape)
        if ann_shape != scan.shape:
            raise ScanError(
                f"{path}: annotations shape {ann_shape} does not match "
                f"the image {scan.shape}: re-import the annotations with the image's shape"
            )
        if scan.annotations.dtype != np.uint8 or scan.image.dtype.kind not in "uif":
            raise ScanError(
                f"{path}: annotations are {scan.annotations.dtype} and the image "
                f"{scan.image.dtype}; a scan stores uint8 labels and a numeric image: "
                "re-import the image"
            )
        for array in (scan.ground_truth, *scan.results().values()):
            if array is not None and tuple(array.shape) != scan.shape:
                raise ScanError(
                    f"{path}: {array.path} has shape {tuple(array.shape)}, the image "
                    f"{scan.shape}: delete it, or predict again"
                )
        return scan

    # ------------------------------------------------------------------ the image
    def _find_image(self) -> tuple[list[zarr.Array], list[tuple[float, ...]]]:
        if IMAGE not in self.group:
            raise ScanError(f"{self.path} has no '{IMAGE}': re-import the image")
        node = self.group[IMAGE]
        base = tuple(float(s) for s in self._meta.get("spacing", (1.0, 1.0, 1.0)))
        if isinstance(node, zarr.Array):
            levels, scales = [node], [base]
        else:
            ms = multiscale_meta(dict(node.attrs))
            if ms is None:
                raise ScanError(
                    f"{self.path}/{IMAGE} is a group without OME-Zarr 'multiscales' metadata: "
                    "re-import the image"
                )
            levels, scales = [], []
            for ds in ms["datasets"]:
                levels.append(cast(zarr.Array, node[ds["path"]]))
                scale = next(
                    (
                        t["scale"]
                        for t in ds.get("coordinateTransformations", [])
                        if t.get("type") == "scale"
                    ),
                    None,
                )
                scales.append(tuple(float(s) for s in scale[-3:]) if scale else base)
        for level in levels:
            if level.ndim != 3:
                raise ScanError(
                    f"{self.path}: the image has {level.ndim} dimensions, a scan needs 3 "
                    "(Z, Y, X): re-import one channel or time point"
                )
        return levels, scales

    @property
    def image(self) -> zarr.Array:
        """The full-resolution image, read lazily."""
        return self._image_levels[0]

    @property
    def image_levels(self) -> list[zarr.Array]:
        """All resolution levels, finest first (one level for a plain array)."""
        return list(self._image_levels)

    @property
    def is_multiscale(self) -> bool:
        return len(self._image_levels) > 1 or isinstance(self.group[IMAGE], zarr.Group)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (Z, Y, X)."""
        sz, sy, sx = (float(s) for s in self._meta["spacing"])
        return sz, sy, sx

    @property
    def affine(self) -> np.ndarray:
        """4x4 map from (Z, Y, X) voxel indices to RAS world coordinates in mm."""
        return np.asarray(self._meta["affine"], dtype=float)

    @property
    def orientation(self) -> str:
        """Anatomical direction of increasing (Z, Y, X) indices, e.g. ``"SAR"``."""
        from nibabel.orientations import aff2axcodes

        return "".join(aff2axcodes(self.affine))

    @property
    def classes(self) -> tuple[str, ...]:
        """Foreground class names; class ``k`` (1-based) is annotated as ``k + 1``."""
        return tuple(self._meta["classes"])

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.classes) + 1

    @property
    def zarr_format(self) -> int:
        return int(self.group.metadata.zarr_format)

    @property
    def source(self) -> str | None:
        return self._meta.get("source")

    # ------------------------------------------------------------------ review state
    def read_attr(self, key: str) -> Any:
        """A piece of review state stored with the scan (e.g. ``"flags"``), or None."""
        return dict(cast(dict, self.group.attrs.get(STATE_KEY) or {})).get(key)

    def write_attr(self, key: str, value: Any) -> None:
        """Store JSON-able review state under ``key`` (one atomic metadata write)."""
        state = dict(cast(dict, self.group.attrs.get(STATE_KEY) or {}))
        state[key] = value
        try:
            self.group.attrs[STATE_KEY] = state
        except (OSError, ValueError) as exc:
            raise ScanError(
                f"cannot save the review state in {self.path.name} ({exc}): open the scan "
                "writable, on a disk with free space"
            ) from None

    # ------------------------------------------------------------------ annotations
    @property
    def annotations(self) -> zarr.Array:
        """The annotation array (uint8, 0 = not annotated, 1 = background, 2.. = classes)."""
        return self.group[ANNOTATIONS]  # type: ignore[return-value]

    def read_annotations(self) -> np.ndarray:
        return read(self.annotations)

    def write_annotations(self, data: Any, region: tuple[slice, ...] | None = None) -> None:
        """Save annotations: the whole array (atomic swap) or one region (atomic per chunk).

        Parameters
        ----------
        data
            uint8-compatible labels, values 0..num_classes.
        region
            Slices into the scan; ``data`` must have the region's shape. Only the chunks the
            region touches are rewritten, which keeps autosave after a brush stroke cheap.
        """
        data = np.asarray(data)
        if region is None:
            self._check_labels(data, ANNOTATIONS, max_value=self.num_classes)
            self._replace(ANNOTATIONS, data.astype(np.uint8))
            return
        self._check_values(data, ANNOTATIONS, max_value=self.num_classes)
        self.annotations[region] = data.astype(np.uint8)

    def annotation_counts(self) -> dict[int, int]:
        """Number of voxels per annotation value, read slab by slab."""
        counts = np.zeros(256, dtype=np.int64)
        ann = self.annotations
        step = ann.chunks[0]
        for z in range(0, self.shape[0], step):
            counts += np.bincount(np.asarray(ann[z : z + step]).ravel(), minlength=256)
        return {int(v): int(c) for v, c in enumerate(counts) if c}

    # ------------------------------------------------------------------ reference and results
    @property
    def ground_truth(self) -> zarr.Array | None:
        return self.group.get(GROUND_TRUTH)  # type: ignore[return-value]

    def result(self, name: str) -> zarr.Array | None:
        """The stored result ``name`` (one of :data:`RESULT_NAMES`), or None."""
        _check_result_name(name)
        key = f"{RESULTS}/{name}"
        return self.group.get(key)  # type: ignore[return-value]

    def results(self) -> dict[str, zarr.Array]:
        found = {name: self.result(name) for name in RESULT_NAMES}
        return {k: v for k, v in found.items() if v is not None}

    def write_result(self, name: str, data: Any) -> zarr.Array:
        """Replace result ``name`` atomically with ``data`` (same shape as the image)."""
        _check_result_name(name)
        data = np.asarray(data)
        if data.shape != self.shape:
            raise ScanError(
                f"{name} has shape {data.shape} but the scan is {self.shape}: predict on this scan"
            )
        if name == "prediction":
            self._check_values(data, name, max_value=self.num_classes - 1)
            data = data.astype(np.uint8)
        else:
            validate_volume(data, name)
            data = data.astype(np.float32 if data.dtype.itemsize > 2 else data.dtype)
        self.group.require_group(RESULTS)
        return self._replace(f"{RESULTS}/{name}", data)

    @contextlib.contextmanager
    def writing_results(self, dtypes: dict[str, Any]) -> Iterator[dict[str, zarr.Array]]:
        """Stream results window by window, then swap them in together.

        Yields empty arrays of the scan's shape (one per result name); they replace the stored
        results only when the block finishes. An exception, or closing the generator that
        writes them (a cancel), discards them and leaves the previous results untouched.
        """
        for name in dtypes:
            _check_result_name(name)
        self.group.require_group(RESULTS)
        keys = {name: f"{RESULTS}/{_TMP}{name}-{uuid.uuid4().hex[:8]}" for name in dtypes}
        try:
            arrays = {
                name: self.group.create_array(
                    keys[name],
                    shape=self.shape,
                    dtype=dtypes[name],
                    chunks=default_chunks(self.shape),
                    fill_value=0,
                )
                for name in dtypes
            }
            yield arrays
            for name, key in keys.items():
                _swap_in(self.path / key, self.path / RESULTS / name)
        finally:
            for key in keys.values():
                shutil.rmtree(self.path / key, ignore_errors=True)

    # ------------------------------------------------------------------ helpers
    def _check_labels(self, data: Any, what: str, *, max_value: int) -> None:
        validate_volume(data, what)
        if tuple(data.shape) != self.shape:
            raise ScanError(
                f"{what} shape {tuple(data.shape)} does not match the image {self.shape}: "
                "use labels drawn on this image (same grid)"
            )
        self._check_values(np.asarray(data), what, max_value=max_value)

    def _check_values(self, data: np.ndarray, what: str, *, max_value: int) -> None:
        if data.dtype.kind == "f" and not np.all(np.mod(data, 1) == 0):
            raise ScanError(f"{what} must hold whole numbers (labels), got fractional values")
        if data.size and (data.min() < 0 or data.max() > max_value):
            raise ScanError(
                f"{what} values must lie in 0..{max_value} for {len(self.classes)} class(es), "
                f"got {data.min()}..{data.max()}: check the label file or the class list"
            )

    def _replace(self, key: str, data: np.ndarray) -> zarr.Array:
        parent, _, name = key.rpartition("/")
        tmp_key = f"{parent + '/' if parent else ''}{_TMP}{name}-{uuid.uuid4().hex[:8]}"
        chunks = default_chunks(self.shape)
        try:
            _write_array(self.group, tmp_key, data, chunks)
            _swap_in(self.path / tmp_key, self.path / key)
        finally:
            shutil.rmtree(self.path / tmp_key, ignore_errors=True)
        return self.group[key]  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Scan({str(self.path)!r}, shape={self.shape}, spacing={self.spacing})"


def read(array: zarr.Array, region: Any = Ellipsis) -> np.ndarray:
    """``array[region]`` as numpy; a chunk that cannot be decoded becomes a clear ScanError.

    The codecs raise what they like (RuntimeError from zstd, ValueError from blosc, ...), so
    anything but our own errors and memory exhaustion is taken for damage on disk here.
    """
    try:
        return np.asarray(array[region])
    except (ClearError, MemoryError):
        raise
    except Exception as exc:
        where = Path(str(getattr(array.store, "root", ""))) / array.path
        raise ScanError(
            f"{where} is damaged: a chunk cannot be read ({type(exc).__name__}); restore the "
            "scan from a backup or import the image again"
        ) from None


def _check_scan_attrs(path: Path, meta: dict[str, Any]) -> None:
    """Spacing, affine and class names as :meth:`Scan.create` writes them."""

    def finite(values: Any, n: int) -> bool:
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            return False
        return arr.size == n and bool(np.isfinite(arr).all())

    problem = None
    if not finite(meta["spacing"], 3) or min(np.asarray(meta["spacing"], float)) <= 0:
        problem = f"spacing {meta['spacing']!r} is not 3 positive numbers"
    elif not finite(meta["affine"], 16):
        problem = "the affine is not a 4x4 matrix of numbers"
    elif (
        not isinstance(meta["classes"], list)
        or not meta["classes"]
        or not all(isinstance(c, str) and c for c in meta["classes"])
    ):
        problem = f"classes {meta['classes']!r} is not a list of names"
    if problem:
        raise ScanError(f"{path}: {problem}: re-import the image, or restore the scan")


def _check_result_name(name: str) -> None:
    if name not in RESULT_NAMES:
        raise ScanError(f"unknown result {name!r}: use one of {', '.join(RESULT_NAMES)}")


def _write_array(group: zarr.Group, key: str, data: np.ndarray, chunks: Sequence[int]) -> None:
    arr = group.create_array(key, shape=data.shape, dtype=data.dtype, chunks=tuple(chunks))
    arr[...] = data


def _write_ome_image(
    root: zarr.Group, data: np.ndarray, spacing: Sequence[float], chunks: Sequence[int]
) -> None:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV05() if root.metadata.zarr_format == 3 else FormatV04()
    # Downsample in-plane only while the in-plane voxel is finer than the slice distance:
    # thick-slice clinical scans must not lose their few slices in the pyramid.
    factors: list[dict[str, int]] = []
    sz, sy = spacing[0], spacing[1]
    y, x = data.shape[1:]
    level_z = 1
    while min(y, x) // 2 >= 64 and len(factors) < 4:
        y, x, sy = y // 2, x // 2, sy * 2
        if sy > sz * level_z * 1.5:
            level_z *= 2
        factors.append({"z": level_z, "y": 2 ** (len(factors) + 1), "x": 2 ** (len(factors) + 1)})
    write_image(
        data,
        root.require_group(IMAGE),
        scale_factors=factors,
        fmt=fmt,
        axes="zyx",
        scale={"z": spacing[0], "y": spacing[1], "x": spacing[2]},
        axes_units={"z": "millimeter", "y": "millimeter", "x": "millimeter"},
        storage_options={"chunks": tuple(chunks)},
    )


def _swap_in(new: Path, target: Path) -> None:
    """Move directory ``new`` to ``target``, replacing it; see :func:`_recover` for crashes."""
    old = target.with_name(f"{_OLD}{target.name}-{uuid.uuid4().hex[:8]}")
    had_target = target.exists()
    if had_target:
        os.rename(target, old)
    os.rename(new, target)
    if had_target:
        shutil.rmtree(old, ignore_errors=True)


def _recover_unless_busy(path: Path) -> None:
    """:func:`_recover`, unless a writer holds the scan's lock: its half-finished swap is work
    in progress, not a crash to roll back."""
    from napari_asymseg.store.lock import ScanLock

    lock = ScanLock(path, "recovery")
    try:
        lock.acquire()
    except ScanError:  # busy (ScanBusy), or not writable: then reading still works
        return
    try:
        _recover(path)
    finally:
        lock.release()


def _recover(path: Path) -> None:
    """Finish or roll back swaps that a crash interrupted, and drop half-written arrays.

    A ``.tmp-NAME-xxxxxxxx`` directory was never swapped in, so it is incomplete by
    construction. An ``.old-NAME-xxxxxxxx`` directory whose ``NAME`` is missing means the crash
    fell between the two renames of :func:`_swap_in`: the old content is put back.
    """
    for parent, only in ((path.parent, path.name), (path, None), (path / RESULTS, None)):
        if not parent.is_dir():
            continue
        leftovers = sorted(e for e in parent.iterdir() if _LEFTOVER.fullmatch(e.name))
        for entry in leftovers:
            kind, name = _LEFTOVER.fullmatch(entry.name).groups()  # type: ignore[union-attr]
            if only is not None and name != only:
                continue
            if kind == _OLD and not (parent / name).exists():
                os.rename(entry, parent / name)
            else:
                shutil.rmtree(entry, ignore_errors=True)
