"""A study: a folder of many scans and the models that learn from all of them.

Layout::

    STUDY/study.json        {"format": 1, "classes": [...] or null until the first scan,
                             "scans": [{"name": "brain1", "done": false, "source": "..."}]}
    STUDY/scans/NAME.zarr   the scans, copied or imported in (the originals are only read)
    STUDY/models/           the study's models (run folders, the current one):
                            :mod:`napari_asymseg.train.runs`

``study.json`` is rewritten whole (:func:`napari_asymseg.store.atomic.write_json`) under the
study folder's file lock (:class:`napari_asymseg.store.lock.ScanLock`), so a crash leaves the
old list or the new one, and two programs adding scans or marking them done take turns.
Everything else a scan knows (its annotations, prediction, review queue and quality figure)
stays in the scan; :meth:`Study.status` reads it from there, cheaply, every time.

This module must not import :mod:`napari_asymseg.train`: the training imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_asymseg.errors import ClearError, ScanError, cause, error_message
from napari_asymseg.review.items import OPEN
from napari_asymseg.store import atomic
from napari_asymseg.store.annotations import BACKGROUND
from napari_asymseg.store.layout import ANNOTATIONS, QUALITY_FIGURE, RESULTS, STATE_KEY
from napari_asymseg.store.lock import ScanLock
from napari_asymseg.study import adding

STUDY_FILE = "study.json"
SCANS = "scans"
MODELS = "models"
FORMAT = 1
LOCK_WAIT_S = 5.0
"""How long marking a scan done waits for another writer of study.json (an ``add`` running
holds it until it has finished)."""

Progress = Callable[[int, int, str], None]


def is_study(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a study folder (holds ``study.json``)."""
    return (Path(path) / STUDY_FILE).is_file()


def study_of(scan_path: str | os.PathLike) -> Study | None:
    """The study the scan at ``scan_path`` lies in (``STUDY/scans/NAME.zarr``), or None."""
    folder = Path(scan_path).resolve().parent
    if folder.name != SCANS or not is_study(folder.parent):
        return None
    return Study.open(folder.parent)


@dataclass(frozen=True)
class ScanStatus:
    """Where one scan of a study stands, as ``asymseg study status`` and the dock list it."""

    name: str
    path: Path
    missing: bool  # the scan folder is gone or unreadable (``problem`` says which)
    painted_slices: int  # slices with any annotation
    lesion_slices: int  # slices with foreground painted
    annotated: bool  # foreground AND background painted: training learns from it
    reviewed: int  # review-queue answers given
    open_items: int  # review-queue items not answered yet
    done: bool  # marked done by the user
    predicted: bool  # has a stored prediction
    figure: float | None  # the stored quality figure's DSC, if any
    problem: str = ""  # why a missing scan cannot be read

    def line(self) -> str:
        """One human line: ``brain1: 5 painted slices (2 with lesion), reviewed 3 of 4, ...``."""
        if self.missing:
            return f"{self.name}: {self.problem or 'missing'}"
        s = "" if self.painted_slices == 1 else "s"
        parts = [
            f"{self.painted_slices} painted slice{s} ({self.lesion_slices} with lesion)"
            if self.painted_slices
            else "nothing painted"
        ]
        if self.painted_slices and not self.annotated:
            parts[0] += ": paint lesion and background to train on it"
        if self.reviewed or self.open_items:
            parts.append(f"reviewed {self.reviewed} of {self.reviewed + self.open_items}")
        parts.append("predicted" if self.predicted else "not predicted")
        if self.figure is not None:
            parts.append(f"DSC about {self.figure:.2f}")
        if self.done:
            parts.append("done")
        return f"{self.name}: {', '.join(parts)}"


class Study:
    """A study folder: its scans (in the order added), their status, and where its models go.

    Use :meth:`init` or :meth:`open`. ``study.json`` is read fresh on every question, so a
    second program's ``add`` or ``set_done`` shows at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    # ------------------------------------------------------------------ construction
    @classmethod
    def init(cls, path: str | os.PathLike) -> Study:
        """Make a new, empty study at ``path`` (a new or empty folder)."""
        path = Path(path)
        if is_study(path):
            raise ScanError(
                f"{path} is a study already: add scans with `asymseg study add {path} SCAN...`"
            )
        if path.exists() and not path.is_dir():
            raise ScanError(f"{path} is a file: choose a new folder for the study")
        if path.is_dir() and any(path.iterdir()):
            raise ScanError(
                f"{path} is a folder with other files in it: choose a new or empty folder "
                "for the study"
            )
        atomic.make_folder(path / SCANS)
        atomic.write_json(path / STUDY_FILE, {"format": FORMAT, "classes": None, "scans": []})
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Study:
        """The study at ``path``; :class:`ScanError` (one line) if it is not one."""
        path = Path(path)
        if not is_study(path):
            raise ScanError(
                f"{path} is not a study (no {STUDY_FILE} in it): make one with "
                f"`asymseg study init {path}`"
            )
        study = cls(path)
        study._read()  # a damaged or newer study.json is refused now
        return study

    # ------------------------------------------------------------------ what it holds
    @property
    def classes(self) -> tuple[str, ...] | None:
        """The foreground class names of every scan (its first scan's); None while empty."""
        classes = self._read()["classes"]
        return None if classes is None else tuple(classes)

    @property
    def models(self) -> Path:
        return self.path / MODELS

    @property
    def names(self) -> list[str]:
        """The scans' names, in the order they were added."""
        return [e["name"] for e in self._read()["scans"]]

    def scan_path(self, name: str) -> Path:
        return self.path / SCANS / f"{name}.zarr"

    def scan_folder(self, name: str) -> Path:
        """The folder of scan ``name``; ScanError (one line) if the study has no such scan
        or its folder is gone."""
        if name not in self.names:
            raise ScanError(
                f"the study {self.path.name} has no scan {name}: its scans are "
                f"{', '.join(self.names)}"
            )
        path = self.scan_path(name)
        if not path.is_dir():
            raise ScanError(f"the folder of scan {name} ({path}) is missing: put the scan back")
        return path

    # ------------------------------------------------------------------ changing it
    def add(
        self,
        sources: Iterable[str | os.PathLike],
        *,
        progress: Progress | None = None,
        classes: Iterable[str] | None = None,
    ) -> list[Path]:
        """Take scans and images into the study; returns the new scans' paths.

        Every source is checked before anything is written: it exists, is an asymseg scan
        (copied) or a DICOM folder or an image file (imported), is not in the study already
        (same name or same source), and a scan has the study's classes. An imported image
        takes the study's classes; in a study's first add, ``classes``, else the first
        scan's, else ``class1..``. ``progress(i, n, name)`` is called once scan ``i`` of
        ``n`` is in. A failed copy or import leaves no half-written scan; the scans before
        it stay added, as the error line says.
        """
        given = [Path(s) for s in sources]
        if not given:
            raise ScanError("give at least one scan or image to add to the study")
        with self._locked("asymseg study add"):
            doc = self._read()
            study_classes = None if doc["classes"] is None else tuple(doc["classes"])
            planned = adding.plan(given, doc["scans"], study_classes, self.path / SCANS)
            names = list(classes) if classes is not None else None
            for_imports = adding.import_classes(planned, study_classes, names)
            atomic.recover(self.path / SCANS)  # what an interrupted add left half-written
            return self._put_in(doc, planned, for_imports, progress)

    def _put_in(
        self,
        doc: dict[str, Any],
        planned: list[adding.Planned],
        classes: tuple[str, ...] | None,
        progress: Progress | None,
    ) -> list[Path]:
        """Copy or import each planned source, recording it in study.json as it lands."""
        added: list[Path] = []
        for i, p in enumerate(planned, 1):
            target = self.scan_path(p.name)
            try:
                got = adding.put_in(p, target, classes)
            except (ClearError, OSError) as exc:
                kept = f"the {len(added)} before it were added" if added else "nothing was added"
                raise ScanError(
                    f"cannot add {p.source.name}: {error_message(exc)} ({kept})"
                ) from None
            doc["classes"] = doc["classes"] or list(got)
            again = next((e for e in doc["scans"] if e["name"] == p.name), None)
            if again is not None:  # its folder was gone: the entry (and its place) stays
                again["source"] = str(p.source)
            else:
                doc["scans"].append({"name": p.name, "done": False, "source": str(p.source)})
            self._write(doc)
            added.append(target)
            if progress is not None:
                progress(i, len(planned), p.name)
        return added

    def set_done(self, name: str, done: bool = True) -> None:
        """Mark scan ``name`` done (finished by the user) or, with ``done=False``, not done."""
        with self._locked("asymseg (marking a scan done)", LOCK_WAIT_S):
            doc = self._read()
            self._entry(doc, name)["done"] = bool(done)
            self._write(doc)

    # ------------------------------------------------------------------ where it stands
    def status(self, name: str | None = None) -> list[ScanStatus]:
        """Every scan's status (or scan ``name``'s), in study order. Cheap: no image is read,
        only each scan's attributes and its annotations, slab by slab."""
        doc = self._read()
        entries = doc["scans"] if name is None else [self._entry(doc, name)]
        return [scan_status(e["name"], self.scan_path(e["name"]), e["done"]) for e in entries]

    def annotated(self) -> list[Path]:
        """The scans training learns from: annotated (lesion and background painted), there."""
        return [s.path for s in self.status() if s.annotated and not s.missing]

    def next_to_annotate(self, statuses: list[ScanStatus] | None = None) -> ScanStatus | None:
        """The scan worth annotating next: the first not done that is not annotated; else the
        not-done one with the lowest quality figure (one without a figure first); else None."""
        statuses = self.status() if statuses is None else statuses
        todo = [s for s in statuses if not s.done and not s.missing]
        fresh = next((s for s in todo if not s.annotated), None)
        if fresh is not None or not todo:
            return fresh
        return min(todo, key=lambda s: (s.figure is not None, s.figure or 0.0))

    # ------------------------------------------------------------------ study.json
    def _read(self) -> dict[str, Any]:
        file = self.path / STUDY_FILE
        try:
            doc = json.loads(file.read_bytes())
        except FileNotFoundError:
            raise ScanError(
                f"{self.path} is not a study any more ({STUDY_FILE} is gone): restore it, or "
                f"make a new one with `asymseg study init`"
            ) from None
        except ValueError as exc:
            raise ScanError(f"{file} is damaged ({cause(exc)}): restore it from a backup") from None
        return _checked_doc(file, doc)

    def _write(self, doc: dict[str, Any]) -> None:
        atomic.write_json(self.path / STUDY_FILE, doc)

    def _entry(self, doc: dict[str, Any], name: str) -> dict[str, Any]:
        for e in doc["scans"]:
            if e["name"] == name:
                return e
        names = ", ".join(e["name"] for e in doc["scans"]) or "none yet"
        raise ScanError(f"the study has no scan named {name}: its scans are {names}")

    @contextlib.contextmanager
    def _locked(self, owner: str, wait: float = 0.0) -> Iterator[None]:
        with ScanLock(self.path, owner, wait):
            yield

    def __repr__(self) -> str:
        return f"Study({str(self.path)!r})"


def _checked_doc(file: Path, doc: Any) -> dict[str, Any]:
    """study.json as this version writes it; one line naming the problem otherwise."""
    if isinstance(doc, dict) and int(doc.get("format", 0) or 0) > FORMAT:
        raise ScanError(
            f"{file} was written by a newer napari-asymseg (study format {doc['format']}): "
            "upgrade napari-asymseg to open it"
        )
    scans = doc.get("scans") if isinstance(doc, dict) else None
    classes = doc.get("classes") if isinstance(doc, dict) else None
    if (
        not isinstance(scans, list)
        or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in scans)
        or not (classes is None or isinstance(classes, list))
    ):
        raise ScanError(f"{file} is damaged (no list of named scans): restore it from a backup")
    for e in scans:
        e["done"] = bool(e.get("done", False))
    return doc


# ----------------------------------------------------------------------------- one scan's status
def scan_status(name: str, path: Path, done: bool) -> ScanStatus:
    """The status of the scan at ``path``: its attributes, and its annotations counted along z.

    Opened straight through zarr (no image, no other array is touched); a scan that is gone
    or unreadable is ``missing`` with the reason, never an error for the whole study.
    """
    if not path.is_dir():
        fix = "restore it from a backup, or add its source again"
        return _missing(name, path, done, f"missing: {path} is gone ({fix})")
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs: dict[str, Any] = dict(group.attrs)
        painted, lesion, annotated = _slice_counts(group[ANNOTATIONS])  # type: ignore[arg-type]
        predicted = (path / RESULTS / "prediction").is_dir()
    except Exception as exc:  # zarr raises many types for a damaged store
        why = error_message(exc) if isinstance(exc, OSError) else cause(exc)
        fix = "restore it from a backup, or delete it and add its source again"
        return _missing(name, path, done, f"unreadable: {why} ({fix})")
    state = attrs.get(STATE_KEY)
    state = state if isinstance(state, dict) else {}
    reviewed, open_items = _queue_counts(state.get("queue"))
    return ScanStatus(
        name=name,
        path=path,
        missing=False,
        painted_slices=painted,
        lesion_slices=lesion,
        annotated=annotated,
        reviewed=reviewed,
        open_items=open_items,
        done=done,
        predicted=predicted,
        figure=_figure(state.get(QUALITY_FIGURE)),
    )


def _missing(name: str, path: Path, done: bool, problem: str) -> ScanStatus:
    return ScanStatus(
        name, path, True, 0, 0, False, 0, 0, done, False, None,
        problem=problem,
    )  # fmt: skip


def _slice_counts(ann: zarr.Array) -> tuple[int, int, bool]:
    """Slices painted, slices with lesion, and whether lesion and background are both painted,
    from the annotation codes read one chunk slab at a time (never the whole array at once;
    chunks never painted are not stored and cost nothing to read)."""
    painted = lesion = 0
    background = foreground = False
    step = int(ann.chunks[0])
    for z in range(0, int(ann.shape[0]), step):
        slab = np.asarray(ann[z : z + step])
        top = slab.reshape(slab.shape[0], -1).max(axis=1)  # highest code per slice
        if not top.any():
            continue
        painted += int(np.count_nonzero(top))
        lesion += int(np.count_nonzero(top > BACKGROUND))
        foreground = foreground or bool((top > BACKGROUND).any())
        background = background or bool((slab == BACKGROUND).any())
    return painted, lesion, background and foreground


def _queue_counts(queue: Any) -> tuple[int, int]:
    """Answered and open items of the stored review queue (0, 0 without one)."""
    items = queue.get("items") if isinstance(queue, dict) else None
    if not isinstance(items, list):
        return 0, 0
    statuses = [i.get("status", OPEN) for i in items if isinstance(i, dict)]
    return sum(s != OPEN for s in statuses), sum(s == OPEN for s in statuses)


def _figure(stored: Any) -> float | None:
    """The DSC of the stored quality figure (None when unknown or absent)."""
    value = stored.get("dsc") if isinstance(stored, dict) else None
    return float(value) if isinstance(value, int | float) else None
