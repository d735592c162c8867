"""Training data from many scans (a study): one network learns every annotated scan.

Each scan is prepared once, exactly as a single scan is (:class:`~napari_asymseg.train.data.
ScanData`: its own intensity normalisation, the unpainted voxels' teacher), then written to a
working folder as two ``.npy`` files and dropped: only one scan is ever held in memory, and a
200-scan study trains in the memory of one. Patches are read from memory maps opened for that
one patch (the page cache holds what is hot; the process keeps nothing mapped).

Every patch first draws its scan, uniformly: each annotated scan counts the same however
large it is or however much of it is painted (a patient is a patient), and the batch's
lesion patch (``fg_every_batch``) comes from a scan drawn the same way.

The scans are not resampled to one spacing: the network's patch is planned for the median
spacing and the largest shape, and a smaller scan is padded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_asymseg.config import DataConfig
from napari_asymseg.errors import ScanError
from napari_asymseg.store.atomic import write_json
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.data import WEAK, PatchSampler, ScanData, annotation_hash, crop
from napari_asymseg.train.events import Notice

Source = Scan | str | os.PathLike

MAX_CENTRES = 50_000
"""Patch centres kept per scan and kind (lesion, any painted voxel): a random subset of a
densely painted scan suffices, and 200 scans' centres stay a few MB."""


@dataclass(frozen=True)
class PreparedScan:
    """One scan of the study, prepared and on disk."""

    scan: str  # its path
    image: Path  # the normalised image (float32 .npy)
    target: Path  # painted classes, unpainted labels offset by WEAK, IGNORE elsewhere (.npy)
    shape: tuple[int, int, int]
    fill: float  # the image's minimum: what pads a patch past the border
    fg: np.ndarray  # lesion voxels to centre patches on (flat indices)
    painted: np.ndarray  # painted voxels to centre patches on (flat indices)
    annotations_hash: str
    train_voxels: int


@dataclass
class StudyData:
    """Every annotated scan of a study, prepared for training (duck-types ScanData where a
    run reads it: shape, spacing, classes, hash; nothing is held out for validation)."""

    parts: list[PreparedScan]
    num_classes: int
    spacing: tuple[float, float, float]
    folder: Path  # the working folder; :meth:`remove` deletes it
    weak: bool  # whether unpainted voxels carry labels
    val: None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """The largest extent along each axis: what the patch is planned for."""
        return tuple(int(max(p.shape[i] for p in self.parts)) for i in range(3))  # type: ignore[return-value]

    @property
    def train_voxels(self) -> int:
        return sum(p.train_voxels for p in self.parts)

    @property
    def annotations_hash(self) -> str:
        """One hash of every scan's annotations, in order: a resume checks it."""
        joined = ",".join(p.annotations_hash for p in self.parts)
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    def learned_from(self) -> list[dict[str, str]]:
        """Which scans and which annotations the run learned from (its checkpoints say)."""
        return [{"scan": p.scan, "annotations_hash": p.annotations_hash} for p in self.parts]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _write(data: ScanData, scan: Scan, folder: Path, seed: int) -> PreparedScan:
    """Write a prepared scan's image and combined target; keep its patch centres."""
    folder.mkdir(parents=True)
    target = data.train
    if data.unpainted is not None:
        target = np.where(data.unpainted >= 0, data.unpainted + WEAK, data.train)
    np.save(folder / "image.npy", data.image)
    np.save(folder / "target.npy", target.astype(np.int16))
    rng = np.random.default_rng(seed)
    return PreparedScan(
        scan=str(scan.path),
        image=folder / "image.npy",
        target=folder / "target.npy",
        shape=tuple(int(n) for n in data.image.shape),  # type: ignore[arg-type]
        fill=float(data.image.min()),
        fg=_centres(data.train >= 1, rng),
        painted=_centres(data.train >= 0, rng),
        annotations_hash=data.annotations_hash,
        train_voxels=data.train_voxels,
    )


def _centres(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat indices (int32: 4 bytes a centre) of at most :data:`MAX_CENTRES` voxels."""
    idx = np.flatnonzero(mask)
    if idx.size > MAX_CENTRES:
        idx = np.sort(rng.choice(idx, MAX_CENTRES, replace=False))
    return idx.astype(np.int32 if mask.size < 2**31 else np.int64)


class StudySampler(PatchSampler):
    """:class:`~napari_asymseg.train.data.PatchSampler` over a study: each patch draws its scan
    first (uniformly), then its centre as one scan's sampler would, and reads only the patch."""

    def __init__(
        self, data: StudyData, patch_size: tuple[int, int, int], cfg: DataConfig, seed: int = 0
    ) -> None:
        from napari_asymseg.train.data import _augmentation

        self.study, self.patch, self.cfg = data, tuple(patch_size), cfg
        self.rng = np.random.default_rng(seed)
        self.weak = data.weak
        self._with_fg = [p for p in data.parts if len(p.fg)]
        self._augment = _augmentation(seed) if cfg.augment else None

    @property
    def has_fg(self) -> bool:
        return bool(self._with_fg)

    def _patch(self, on_fg: bool) -> tuple[np.ndarray, np.ndarray]:
        parts = self._with_fg if on_fg else self.study.parts
        part = parts[self.rng.integers(len(parts))]
        if on_fg or self.rng.random() >= self.cfg.p_anywhere:
            pool = part.fg if on_fg else part.painted
            centre = np.array(np.unravel_index(pool[self.rng.integers(len(pool))], part.shape))
        else:
            centre = np.array([self.rng.integers(n) for n in part.shape])
        image = np.load(part.image, mmap_mode="r")
        target = np.load(part.target, mmap_mode="r")
        x, y = crop(image, target, centre, self.patch, self.rng, fill=part.fill)
        x, y = np.array(x, dtype=np.float32), y.astype(np.int16)  # copies: the maps close
        del image, target  # the process holds only the patch
        return x, self.weak_labels(y)


CACHE = ".prepared"
"""In a study's model folder: each annotated scan as the last run prepared it, so that the next
Train prepares only the scans whose annotations changed (the forest teacher takes seconds a
scan). One entry per scan: a new one replaces the old."""


def cache_folder(scans: Sequence[Source]) -> Path | None:
    """``STUDY/models/.prepared`` when every scan lies in one study, else None (no cache)."""
    from napari_asymseg.study.study import study_of

    studies = set()
    for item in scans:
        study = study_of(item.path if isinstance(item, Scan) else item)
        studies.add(study.models.resolve() if study is not None else None)
    folder = studies.pop() if len(studies) == 1 else None
    return folder / CACHE if folder is not None else None


def _key(scan: Scan, annotations_hash: str, cfg: DataConfig, seed: int) -> str:
    """The entry's name: the scan's name and a hash of everything its preparation read."""
    from napari_asymseg import __version__

    said = {
        "scan": str(scan.path.resolve()),
        "shape": list(scan.shape),
        "annotations": annotations_hash,
        "data": dataclasses.asdict(cfg),
        "seed": seed,
        "version": __version__,
    }
    digest = hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()[:16]
    return f"{scan.path.name.removesuffix('.zarr')}-{digest}"


def _keep(part: PreparedScan, entry: Path) -> PreparedScan:
    """Move a freshly prepared scan into the cache (atomically: a rename) and drop that scan's
    older entries."""
    tmp = part.image.parent
    np.save(tmp / "fg.npy", part.fg)
    np.save(tmp / "painted.npy", part.painted)
    meta = {k: getattr(part, k) for k in ("scan", "shape", "fill", "annotations_hash")}
    write_json(tmp / "prepared.json", {**meta, "train_voxels": part.train_voxels})
    try:
        tmp.rename(entry)
    except OSError:  # another process (a torchrun rank) kept the same entry first
        shutil.rmtree(tmp, ignore_errors=True)
    name = entry.name.rsplit("-", 1)[0]
    for old in entry.parent.glob(f"{name}-*"):
        if old != entry and ".tmp-" not in old.name and old.name.rsplit("-", 1)[0] == name:
            shutil.rmtree(old, ignore_errors=True)
    return dataclasses.replace(part, image=entry / "image.npy", target=entry / "target.npy")


def _kept(entry: Path) -> PreparedScan | None:
    """The cache entry, or None when there is none (or it is unreadable: prepared again)."""
    try:
        meta = json.loads((entry / "prepared.json").read_text())
        return PreparedScan(
            scan=meta["scan"],
            image=entry / "image.npy",
            target=entry / "target.npy",
            shape=tuple(meta["shape"]),
            fill=float(meta["fill"]),
            fg=np.load(entry / "fg.npy"),
            painted=np.load(entry / "painted.npy"),
            annotations_hash=meta["annotations_hash"],
            train_voxels=int(meta["train_voxels"]),
        )
    except (OSError, ValueError, KeyError):
        return None


def scans_of(source: Source | Sequence[Source]) -> list[Source]:
    """The scans a run learns from: one scan, the annotated scans of a study folder, or a
    list of scans (each once).

    Raises
    ------
    ScanError
        An empty list, a scan listed twice, a study without an annotated scan.
    """
    if isinstance(source, Scan | str | os.PathLike):
        if isinstance(source, Scan):
            return [source]
        from napari_asymseg.study.study import Study, is_study

        if not is_study(source):
            return [source]
        annotated: list[Source] = list(Study.open(source).annotated())
        if not annotated:
            raise ScanError(
                f"the study {Path(source).name} has no annotated scan: paint a lesion and "
                "background around it on one of its scans first"
            )
        return annotated
    scans = list(source)
    if not scans:
        raise ScanError("no scans to train on: name a scan (.zarr) or a study folder")
    paths = [Path(s.path if isinstance(s, Scan) else s).resolve() for s in scans]
    twice = sorted({p.name for p in paths if paths.count(p) > 1})
    if twice:
        raise ScanError(f"{', '.join(twice)} listed twice: name each scan once")
    return scans


def preparing(
    scans: Sequence[Source], cfg: DataConfig, seed: int
) -> Generator[Notice, None, StudyData | None]:
    """Prepare several scans one at a time into a new working folder, saying which (the
    unpainted voxels' teacher takes seconds per scan); None for one scan, which its run
    prepares in memory as ever.

    Raises
    ------
    ScanError
        A scan without foreground or background painted (naming it); scans with other
        classes than the first.
    """
    if len(scans) < 2:
        return None
    cfg = dataclasses.replace(cfg, val_fraction=0.0)  # a study holds scans out, not slices
    folder = Path(tempfile.mkdtemp(prefix="asymseg-study-"))
    cache = cache_folder(scans)
    parts: list[PreparedScan] = []
    classes, spacings = None, []
    try:
        for i, item in enumerate(scans):
            scan = item if isinstance(item, Scan) else Scan.open(item, mode="r")
            yield Notice(f"preparing scan {i + 1} of {len(scans)}: {scan.path.name}", warn=False)
            if classes is not None and scan.classes != classes:
                raise ScanError(
                    f"{scan.path.name} has classes {list(scan.classes)}, the first scan "
                    f"{list(classes)}: train scans of one kind together"
                )
            classes = scan.classes
            parts.append(_prepared(scan, cfg, seed + i, cache, folder / f"{i:04d}"))
            spacings.append(scan.spacing)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    spacing = tuple(float(v) for v in np.median(np.asarray(spacings), axis=0))
    weak = cfg.unpainted != "ignore"  # unpainted_labels gives labels for every other choice
    return StudyData(parts, len(classes or ()) + 1, spacing, folder, weak)  # type: ignore[arg-type]


def _prepared(
    scan: Scan, cfg: DataConfig, seed: int, cache: Path | None, folder: Path
) -> PreparedScan:
    """One scan prepared: as a previous run of the study left it (same scan, annotations,
    settings and version), else now, into the study's cache (or the run's ``folder``)."""
    annotations = scan.read_annotations()
    entry = cache / _key(scan, annotation_hash(annotations), cfg, seed) if cache else None
    kept = _kept(entry) if entry is not None else None
    if kept is not None:
        return kept
    data = ScanData.from_scan(scan, cfg, seed=seed, annotations=annotations)
    if entry is None:
        return _write(data, scan, folder, seed)
    part = _write(data, scan, entry.with_name(f"{entry.name}.tmp-{os.getpid()}"), seed)
    del data  # one scan in memory at a time
    return _keep(part, entry)


@contextlib.contextmanager
def study_removed_on_error(study: StudyData | None) -> Iterator[None]:
    """Delete the study's working folder when setting its run up fails (the run removes it
    when it ends)."""
    try:
        yield
    except BaseException:
        if study is not None:
            study.remove()
        raise
