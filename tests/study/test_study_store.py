"""The study store: a folder of scans, what each scan's status says, and the refusals."""

from __future__ import annotations

import hashlib
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from napari_asymseg.errors import ScanError
from napari_asymseg.review.items import LESION, NOT_LESION, OPEN
from napari_asymseg.store.layout import QUALITY_FIGURE
from napari_asymseg.store.lock import LOCK_FILE
from napari_asymseg.store.scan import Scan
from napari_asymseg.study import adding
from napari_asymseg.study.study import (
    MODELS,
    SCANS,
    STUDY_FILE,
    ScanStatus,
    Study,
    is_study,
    scan_status,
    study_of,
)

SHAPE = (16, 32, 32)


def make_scan(path, *, painted=(), lesion=(), classes=("lesion",)) -> Scan:
    """A scan with background painted on the ``painted`` slices and a lesion square on the
    ``lesion`` ones."""
    image = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    ann = np.zeros(SHAPE, np.uint8)
    for z in painted:
        ann[z] = 1
    for z in lesion:
        ann[z, 10:14, 10:14] = 2
    return Scan.create(path, image, annotations=ann, classes=classes)


def nifti(path) -> str:
    data = np.random.default_rng(1).normal(size=SHAPE[::-1]).astype(np.float32)  # (x, y, z)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), path)
    return str(path)


def files(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


@pytest.fixture
def study(tmp_path) -> Study:
    return Study.init(tmp_path / "study")


# ----------------------------------------------------------------------------- init and open
def test_init_makes_an_empty_study_that_opens(tmp_path):
    study = Study.init(tmp_path / "s")
    assert is_study(study.path) and (study.path / SCANS).is_dir()
    assert json.loads((study.path / STUDY_FILE).read_text()) == {
        "format": 1,
        "classes": None,
        "scans": [],
    }
    opened = Study.open(tmp_path / "s")
    assert opened.names == [] and opened.classes is None
    assert opened.models == tmp_path / "s" / MODELS
    assert opened.status() == [] and opened.next_to_annotate() is None


def test_init_refuses_a_study_a_file_and_a_full_folder(tmp_path):
    Study.init(tmp_path / "s")
    with pytest.raises(ScanError, match="is a study already"):
        Study.init(tmp_path / "s")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ScanError, match="is a file"):
        Study.init(tmp_path / "f")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    with pytest.raises(ScanError, match="other files"):
        Study.init(tmp_path / "full")
    (tmp_path / "empty").mkdir()
    assert is_study(Study.init(tmp_path / "empty").path)


def test_open_refuses_a_folder_that_is_not_a_study_and_a_damaged_one(tmp_path):
    with pytest.raises(ScanError, match="not a study.*asymseg study init"):
        Study.open(tmp_path)
    study = Study.init(tmp_path / "s")
    (study.path / STUDY_FILE).write_text("{")
    with pytest.raises(ScanError, match="damaged"):
        Study.open(study.path)
    (study.path / STUDY_FILE).write_text(json.dumps({"format": 9, "scans": []}))
    with pytest.raises(ScanError, match="newer napari-asymseg"):
        Study.open(study.path)


# ----------------------------------------------------------------------------- add
def test_add_copies_a_scan_and_imports_a_nifti(study, tmp_path):
    original = make_scan(tmp_path / "brain1.zarr", painted=[4], lesion=[4])
    before = files(original.path)
    seen = []
    added = study.add(
        [original.path, nifti(tmp_path / "brain2.nii.gz")],
        progress=lambda i, n, name: seen.append((i, n, name)),
    )
    assert added == [study.scan_path("brain1"), study.scan_path("brain2")]
    assert seen == [(1, 2, "brain1"), (2, 2, "brain2")]
    assert study.names == ["brain1", "brain2"] and study.classes == ("lesion",)
    copy, imported = Scan.open(added[0], mode="r"), Scan.open(added[1], mode="r")
    np.testing.assert_array_equal(copy.read_annotations(), original.read_annotations())
    assert imported.shape == SHAPE and imported.spacing == pytest.approx((2.0, 0.8, 0.8))
    assert imported.classes == ("lesion",)  # an imported image takes the study's classes
    assert files(original.path) == before  # the user's scan is only read
    doc = json.loads((study.path / STUDY_FILE).read_text())
    assert doc["scans"][0] == {"name": "brain1", "done": False, "source": str(original.path)}


def test_an_import_into_a_new_study_gets_the_given_classes(study, tmp_path):
    study.add([nifti(tmp_path / "a.nii.gz")], classes=["hippocampus"])
    assert study.classes == ("hippocampus",)
    assert Scan.open(study.scan_path("a"), mode="r").classes == ("hippocampus",)


def test_add_imports_a_dicom_folder(study, tmp_path):
    import dicom_helpers as dh

    data = dh.ct_values()
    dh.series(tmp_path / "CT_0003", data, dh.oblique_affine(degrees=0.0))
    (path,) = study.add([tmp_path / "CT_0003"])
    scan = Scan.open(path, mode="r")
    assert study.names == ["CT_0003"] and scan.dicom is not None and scan.shape == data.shape


def bad_source(tmp_path, bad):
    """The second source of an add whose first one is good."""
    (tmp_path / "other").mkdir()
    if bad == "missing":
        return tmp_path / "nope.zarr"
    if bad == "same source":
        return tmp_path / "brain1.zarr"
    if bad == "same name":  # another scan whose folder has the same name
        return make_scan(tmp_path / "other" / "brain1.zarr").path
    if bad == "other classes":
        return make_scan(tmp_path / "t.zarr", classes=("tumour",)).path
    if bad == "twice in one add":  # the same name as the good source given with it
        return make_scan(tmp_path / "other" / "fresh.zarr").path
    (tmp_path / "notes.txt").write_text("x")
    return tmp_path / "notes.txt"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("missing", "no scan or image at"),
        ("same source", "in the study already, as brain1"),
        ("same name", "has a scan named brain1 already"),
        ("other classes", "classes tumour but the study"),
        ("unknown format", "not a scan"),
        ("twice in one add", "has a scan named fresh already"),
    ],
)
def test_add_refuses_before_writing_anything(study, tmp_path, bad, message):
    study.add([make_scan(tmp_path / "brain1.zarr", painted=[3]).path])
    fresh = make_scan(tmp_path / "fresh.zarr").path  # a good scan given first: not added either
    sources = [fresh, bad_source(tmp_path, bad)]
    before = files(study.path)
    with pytest.raises(ScanError, match=message) as err:
        study.add(sources)
    assert "\n" not in str(err.value) and "nothing was added" in str(err.value)
    assert files(study.path) == before
    assert sorted(p.name for p in (study.path / SCANS).iterdir()) == ["brain1.zarr"]


def test_the_same_file_given_twice_in_one_add_is_refused(study, tmp_path):
    path = nifti(tmp_path / "a.nii.gz")
    with pytest.raises(ScanError, match="in the study already"):
        study.add([path, path])
    assert study.names == [] and not any((study.path / SCANS).iterdir())


def test_a_failed_import_leaves_nothing_behind(study, tmp_path):
    good = make_scan(tmp_path / "good.zarr", painted=[2]).path
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(ScanError, match="cannot add bad.nii.gz.*the 1 before it were added"):
        study.add([good, tmp_path / "bad.nii.gz"])
    assert study.names == ["good"]
    assert sorted(p.name for p in (study.path / SCANS).iterdir()) == ["good.zarr"]


def test_a_copy_that_fails_halfway_leaves_nothing_behind(study, tmp_path, monkeypatch):
    source = make_scan(tmp_path / "a.zarr", painted=[2]).path
    real_copytree = shutil.copytree

    def copy_then_fail(src, dst, *args, **kw):  # copytree calls itself for each subfolder
        real_copytree(src, dst, *args, **kw)  # the first subfolder copied, then the disk is full
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(adding.shutil, "copytree", copy_then_fail)
    with pytest.raises(ScanError, match="cannot add a.zarr.*no space left.*nothing was added"):
        study.add([source])
    assert study.names == [] and not any((study.path / SCANS).iterdir())


def test_a_busy_study_is_refused_with_the_writer_named(study, tmp_path):
    from napari_asymseg.store.lock import ScanLock

    with ScanLock(study.path, "a dock"), pytest.raises(ScanError, match="a dock"):
        study.add([make_scan(tmp_path / "a.zarr").path])


# ----------------------------------------------------------------------------- status
def test_status_counts_painted_slices_review_prediction_and_figure(study, tmp_path):
    study.add([make_scan(tmp_path / "a.zarr", painted=[2, 5, 9], lesion=[5, 9]).path])
    scan = Scan.open(study.scan_path("a"))
    scan.write_result("prediction", np.zeros(SHAPE, np.uint8))
    scan.write_attr(QUALITY_FIGURE, {"dsc": 0.61, "low": 0.4, "high": 0.8})
    items = [{"status": s} for s in (LESION, NOT_LESION, OPEN)]
    scan.write_attr("queue", {"prediction": "x", "items": items})
    (s,) = study.status()
    assert s == ScanStatus(
        name="a",
        path=study.scan_path("a"),
        missing=False,
        painted_slices=3,
        lesion_slices=2,
        annotated=True,
        reviewed=2,
        open_items=1,
        done=False,
        predicted=True,
        figure=pytest.approx(0.61),
    )
    assert s.line() == (
        "a: 3 painted slices (2 with lesion), reviewed 2 of 3, predicted, DSC about 0.61"
    )


def test_a_scan_is_annotated_only_with_lesion_and_background(study, tmp_path):
    ann = np.zeros(SHAPE, np.uint8)
    ann[4, 10:14, 10:14] = 2  # lesion only
    Scan.create(tmp_path / "lesion_only.zarr", np.zeros(SHAPE, np.float32), annotations=ann)
    make_scan(tmp_path / "background_only.zarr", painted=[1, 2])
    make_scan(tmp_path / "both.zarr", painted=[7], lesion=[7])
    make_scan(tmp_path / "blank.zarr")
    names = ("lesion_only", "background_only", "both", "blank")
    study.add([tmp_path / f"{n}.zarr" for n in names])
    got = {s.name: (s.painted_slices, s.lesion_slices, s.annotated) for s in study.status()}
    assert got == {
        "lesion_only": (1, 1, False),
        "background_only": (2, 0, False),
        "both": (1, 1, True),
        "blank": (0, 0, False),
    }
    assert study.annotated() == [study.scan_path("both")]
    assert "paint lesion and background" in study.status("background_only")[0].line()
    assert study.status("blank")[0].line() == "blank: nothing painted, not predicted"


def test_a_missing_or_damaged_scan_is_a_status_not_an_error(study, tmp_path):
    study.add([make_scan(tmp_path / f"{n}.zarr", painted=[1], lesion=[1]).path for n in "abc"])
    shutil.rmtree(study.scan_path("a"))
    (study.scan_path("b") / "annotations" / "zarr.json").write_text("{")
    a, b, c = study.status()
    assert a.missing and "missing" in a.line() and "add its source again" in a.line()
    assert b.missing and "unreadable" in b.line() and "\n" not in b.line()
    assert not c.missing and c.annotated
    assert study.annotated() == [study.scan_path("c")]


def test_a_scan_whose_folder_is_gone_can_be_added_again(study, tmp_path):
    sources = [make_scan(tmp_path / f"{n}.zarr", painted=[1], lesion=[1]).path for n in "ab"]
    study.add(sources)
    study.set_done("a")
    shutil.rmtree(study.scan_path("a"))
    assert study.add([sources[0]]) == [study.scan_path("a")]
    assert study.names == ["a", "b"]  # its place in the study kept, and its done mark
    (a, _) = study.status()
    assert not a.missing and a.annotated and a.done
    with pytest.raises(ScanError, match="in the study already"):
        study.add([sources[0]])  # there again: refused as before


def test_status_of_one_scan_and_of_an_unknown_name(study, tmp_path):
    study.add([make_scan(tmp_path / f"{n}.zarr").path for n in "ab"])
    assert [s.name for s in study.status("b")] == ["b"]
    with pytest.raises(ScanError, match="no scan named zz: its scans are a, b"):
        study.status("zz")


# ----------------------------------------------------------------------------- done, next
def test_set_done_and_undo(study, tmp_path):
    study.add([make_scan(tmp_path / "a.zarr").path])
    study.set_done("a")
    assert study.status()[0].done and study.status()[0].line().endswith(", done")
    assert json.loads((study.path / STUDY_FILE).read_text())["scans"][0]["done"] is True
    study.set_done("a", False)
    assert not Study.open(study.path).status()[0].done
    with pytest.raises(ScanError, match="no scan named b"):
        study.set_done("b")


def status(name, *, annotated=True, done=False, figure=None, missing=False) -> ScanStatus:
    return ScanStatus(name, None, missing, 1, 1, annotated, 0, 0, done, figure is not None, figure)


def test_next_to_annotate_order(study):
    pick = study.next_to_annotate
    fig = [status("a", figure=0.5), status("b", figure=0.2), status("c", figure=None)]
    assert pick(fig).name == "c"  # no figure yet: first
    assert pick(fig[:2]).name == "b"  # else the lowest figure
    fresh = [status("a", figure=0.1), status("b", annotated=False), status("c", annotated=False)]
    assert pick(fresh).name == "b"  # an unannotated scan first, in study order
    assert pick([status("a", annotated=False, done=True), status("b", figure=0.9)]).name == "b"
    assert pick([status("a", done=True), status("b", annotated=False, missing=True)]) is None
    assert pick([]) is None


def test_next_to_annotate_on_a_real_study(study, tmp_path):
    study.add([make_scan(tmp_path / "a.zarr", painted=[1], lesion=[1]).path])
    study.add([make_scan(tmp_path / "b.zarr").path])
    assert study.next_to_annotate().name == "b"
    study.set_done("b")
    assert study.next_to_annotate().name == "a"
    study.set_done("a")
    assert study.next_to_annotate() is None


# ----------------------------------------------------------------------------- study_of
def test_study_of_a_scan_inside_and_outside(study, tmp_path):
    outside = make_scan(tmp_path / "a.zarr").path
    (inside,) = study.add([outside])
    assert study_of(inside).path.resolve() == study.path.resolve()
    assert study_of(outside) is None
    (tmp_path / "x" / SCANS).mkdir(parents=True)  # a "scans" folder without study.json
    assert study_of(tmp_path / "x" / SCANS / "a.zarr") is None


def test_status_reads_no_image(study, tmp_path, monkeypatch):
    """Cheap: the status of a scan opens no image array (a damaged image shows nothing)."""
    study.add([make_scan(tmp_path / "a.zarr", painted=[1], lesion=[1]).path])
    shutil.rmtree(study.scan_path("a") / "image")
    (s,) = study.status()
    assert not s.missing and s.annotated
    assert scan_status("a", study.scan_path("a"), True).done
