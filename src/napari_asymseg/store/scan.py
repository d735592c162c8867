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

Writes are atomic. Whole things (a new scan, an array, the set of results) are written beside
the old one under a ``.tmp-`` name, synced, and swapped in by renames
(:mod:`napari_asymseg.store.atomic`, used by :mod:`~napari_asymseg.store.create`,
:mod:`~napari_asymseg.store.arrays` and :mod:`~napari_asymseg.store.results`);
:meth:`Scan.open` finishes or rolls back a swap that a crash interrupted, so a reader only ever
sees the old or the new content. The review state is rewritten whole, synced and under a lock
(:mod:`napari_asymseg.store.attrs`), so two writers never drop each other's keys. Partial
updates (painting a region) are zarr's own writes: its local store writes each chunk to a
temporary file and renames it into place, so a crash never leaves a torn chunk (zarr does not
``fsync`` them: a power loss may lose the last strokes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from napari_asymseg.errors import ClearError, ScanError, cause, read_error_message
from napari_asymseg.store import atomic, create, provenance
from napari_asymseg.store import attrs as scan_attrs
from napari_asymseg.store import results as result_arrays
from napari_asymseg.store.annotations import code_of_class
from napari_asymseg.store.arrays import read, replace_array
from napari_asymseg.store.geometry import default_chunks
from napari_asymseg.store.layout import (
    ANNOTATIONS,
    ATTRS_KEY,
    GROUND_TRUTH,
    IMAGE,
    RESULT_NAMES,
    RESULTS,
    STATE_KEY,
    check_labels,
    check_result_name,
    check_values,
    image_levels,
    open_group,
    scan_meta,
)
from napari_asymseg.store.lock import ScanLock


class Scan:
    """A scan zarr group: image, spacing, annotations and the latest results.

    Use :meth:`create` or :meth:`open`; the arrays are read lazily from disk.
    """

    def __init__(self, path: Path, group: zarr.Group) -> None:
        self.path = path
        self.group = group
        self._meta: dict[str, Any] = dict(cast(dict, group.attrs.get(ATTRS_KEY) or {}))
        self._image_levels = image_levels(path, group)

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
        dicom: dict[str, Any] | None = None,
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
        dicom
            For a scan imported from DICOM: the source series' UIDs and files in slice order
            (what a DICOM SEG export references), kept as :attr:`dicom`.
        """
        create.build(
            Path(path),
            image,
            spacing=spacing,
            affine=affine,
            classes=classes,
            annotations=annotations,
            ground_truth=ground_truth,
            multiscale=multiscale,
            zarr_format=zarr_format,
            chunks=chunks,
            source=source,
            overwrite=overwrite,
            dicom=dicom,
        )
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
        if mode == "r+":
            _recover_unless_busy(path)
        group = open_group(path, mode)
        try:
            scan = cls._checked(path, group)
        except ClearError:
            raise
        except OSError as exc:
            if exc.errno is None:  # a codec's decode error (gzip's BadGzipFile): damage
                raise ScanError(_damaged(path, exc)) from None
            raise ScanError(read_error_message(exc, exc.filename or path)) from None
        except Exception as exc:  # zarr reads array metadata lazily; damage shows up here
            raise ScanError(_damaged(path, exc)) from None
        return scan

    @classmethod
    def _checked(cls, path: Path, group: zarr.Group) -> Scan:
        """The scan in ``group`` once its attributes and every array's metadata are sound."""
        scan_meta(path, dict(group.attrs))  # the asymseg attributes, checked
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
        return isinstance(self.group[IMAGE], zarr.Group)

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

    @property
    def dicom(self) -> dict[str, Any] | None:
        """The source DICOM series (UIDs, files in slice order), or None if not from DICOM."""
        return self._meta.get("dicom")

    # ------------------------------------------------------------------ review state
    def read_attr(self, key: str) -> Any:
        """A piece of review state stored with the scan (e.g. ``"flags"``), or None.

        Read from disk, not from the attributes zarr cached when the scan was opened: another
        :class:`Scan` of the same folder (or another thread's write) may have changed them.
        """
        state = scan_attrs.read(self.path).get(STATE_KEY)
        return state.get(key) if isinstance(state, dict) else None

    def write_attr(self, key: str, value: Any) -> None:
        """Store JSON-able review state under ``key``: whole, synced and locked.

        The attributes are read from disk and rewritten with only ``key`` changed, under a lock
        that two threads of this process and other programs respect, and through the atomic
        writer (a crash or power loss leaves the old file or the new one):
        :mod:`napari_asymseg.store.attrs`.
        """
        if self.group.read_only:
            raise ScanError(
                f"cannot save the review state in {self.path.name}: it is open read-only; "
                "open the scan writable"
            )

        def changed(state: Any) -> dict[str, Any]:
            return {**(state if isinstance(state, dict) else {}), key: value}

        scan_attrs.update(self.path, STATE_KEY, changed, what=repr(key))
        # zarr's group caches the attributes it read at open: refresh it, so that a write
        # through zarr (none today) could not put back the old review state
        self.group = open_group(self.path, "r+")

    # ------------------------------------------------------------------ annotations
    @property
    def annotations(self) -> zarr.Array:
        """The annotation array (uint8, 0 = not annotated, 1 = background, 2.. = classes)."""
        return self.group[ANNOTATIONS]  # type: ignore[return-value]

    def read_annotations(self) -> np.ndarray:
        return read(self.annotations)

    def write_annotations(
        self, data: Any, region: tuple[slice, ...] | None = None, source: int = provenance.PAINTED
    ) -> None:
        """Save annotations: the whole array (atomic swap) or one region (atomic per chunk).

        Parameters
        ----------
        data
            uint8-compatible labels, values 0..num_classes.
        region
            Slices into the scan; ``data`` must have the region's shape. Only the chunks the
            region touches are rewritten, which keeps autosave after a brush stroke cheap.
        source
            Who wrote the voxels this changes: painted by hand (default) or a tool (provenance.py).
        """
        data, n = np.asarray(data), len(self.classes)
        top = code_of_class(n)
        if region is None:
            check_labels(data, ANNOTATIONS, self.shape, max_value=top, n_classes=n)
        else:
            check_values(data, ANNOTATIONS, max_value=top, n_classes=n)
        with provenance.recording(self.group, data, region, source):
            if region is None:
                self._replace(ANNOTATIONS, data.astype(np.uint8))
            else:
                self.annotations[region] = data.astype(np.uint8)

    def annotation_counts(self) -> dict[int, int]:
        """Number of voxels per annotation value, read slab by slab."""
        counts, ann = np.zeros(256, dtype=np.int64), self.annotations
        for z in range(0, self.shape[0], step := ann.chunks[0]):
            counts += np.bincount(np.asarray(ann[z : z + step]).ravel(), minlength=256)
        return {int(v): int(c) for v, c in enumerate(counts) if c}

    # ------------------------------------------------------------------ reference and results
    @property
    def ground_truth(self) -> zarr.Array | None:
        return self.group.get(GROUND_TRUTH)  # type: ignore[return-value]

    def result(self, name: str) -> zarr.Array | None:
        """The stored result ``name`` (one of :data:`RESULT_NAMES`), or None."""
        check_result_name(name)
        key = f"{RESULTS}/{name}"
        return self.group.get(key)  # type: ignore[return-value]

    def results(self) -> dict[str, zarr.Array]:
        found = {name: self.result(name) for name in RESULT_NAMES}
        return {k: v for k, v in found.items() if v is not None}

    def write_result(self, name: str, data: Any) -> zarr.Array:
        """Replace result ``name`` atomically with ``data`` (same shape as the image)."""
        return result_arrays.write_result(
            self.group, self.path, name, data, self.shape, n_classes=len(self.classes)
        )

    @contextlib.contextmanager
    def writing_results(self, dtypes: dict[str, Any]) -> Iterator[dict[str, zarr.Array]]:
        """Stream results window by window, then swap them in together.

        Yields empty arrays of the scan's shape (one per result name); they replace the stored
        results only when the block finishes, all in one swap. An exception, or closing the
        generator that writes them (a cancel), discards them and leaves the previous results
        untouched.
        """
        with result_arrays.writing_results(self.group, self.path, self.shape, dtypes) as arrays:
            yield arrays

    # ------------------------------------------------------------------ helpers
    def _replace(self, key: str, data: np.ndarray) -> zarr.Array:
        return replace_array(self.group, self.path, key, data, default_chunks(self.shape))

    def __repr__(self) -> str:
        return f"Scan({str(self.path)!r}, shape={self.shape}, spacing={self.spacing})"


def _damaged(path: Path, exc: BaseException) -> str:
    return (
        f"{path} has damaged zarr metadata ({cause(exc)}): restore it from a backup or "
        "import the original image again"
    )


def _recover_unless_busy(path: Path) -> None:
    """Finish or roll back swaps that a crash interrupted, and drop half-written arrays, unless
    a writer holds the scan's lock: its half-finished swap is work in progress, not a crash.

    Three places can hold leftovers (:func:`napari_asymseg.store.atomic.recover`): the scan's
    folder (a scan created over an old one), the scan (an array, or the set of results) and
    ``results/`` (one result, or the new set being written).
    """
    lock = ScanLock(path, "recovery")
    try:
        lock.acquire()
    except ScanError:  # busy (ScanBusy), or not writable: then reading still works
        return
    try:
        atomic.recover(path.parent, only=path.name)
        atomic.recover(path)
        atomic.recover(path / RESULTS)
    finally:
        lock.release()
