"""Training on several scans: prepared one at a time, patches balanced across scans."""

from pathlib import Path

import numpy as np
import pytest

from engine_helpers import tiny_config, tiny_scan
from napari_asymseg.config import DataConfig
from napari_asymseg.errors import ScanError
from napari_asymseg.model.load import load_checkpoint
from napari_asymseg.store.scan import Scan
from napari_asymseg.train.data import ScanData
from napari_asymseg.train.events import Finished, Notice, Started
from napari_asymseg.train.loop import fit
from napari_asymseg.train.study_data import (
    StudyData,
    StudySampler,
    preparing,
    scans_of,
)


def _prepared(scans, cfg, seed=0) -> tuple[StudyData, list[Notice]]:
    gen, said = preparing(scans, cfg, seed), []
    try:
        while True:
            said.append(next(gen))
    except StopIteration as stop:
        return stop.value, said


def _bright(path, level: float, shape=(16, 40, 40)) -> Scan:
    """A scan whose intensities say which scan a patch came from (before normalisation)."""
    scan = tiny_scan(path, shape=shape)
    image = np.asarray(scan.image[:])
    Scan.open(path).image[:] = image + level
    return Scan.open(path)


def test_patches_are_balanced_across_scans_of_any_size(tmp_path):
    cfg = DataConfig(augment=False, unpainted="ignore", normalisation="window", window=(-50, 150))
    small = _bright(tmp_path / "a.zarr", 0.0)
    large = _bright(tmp_path / "b.zarr", 100.0, shape=(32, 60, 60))  # 3.4x the voxels
    data, said = _prepared([small, large], cfg)
    try:
        assert [n.message for n in said] == [
            "preparing scan 1 of 2: a.zarr",
            "preparing scan 2 of 2: b.zarr",
        ]
        assert not any(n.warn for n in said)
        assert data.shape == (32, 60, 60) and len(data.parts) == 2
        sampler = StudySampler(data, (8, 16, 16), cfg, seed=0)
        x, y = sampler.sample(400)
        assert x.shape == (400, 1, 8, 16, 16) and y.shape == (400, 8, 16, 16)
        from_large = (x.mean(dim=(1, 2, 3, 4)) > 0).float().mean().item()
        assert 0.4 < from_large < 0.6  # each patient counts the same, whatever its size
        assert (y >= 1).any(dim=(1, 2, 3)).sum() >= 400 * cfg.p_fg * 0.8
    finally:
        data.remove()
    assert not data.folder.exists()


def test_one_scan_is_prepared_by_its_run_as_before(tmp_path):
    scan = tiny_scan(tmp_path / "a.zarr")
    data, said = _prepared([scan], DataConfig())
    assert data is None and said == []


def test_the_study_holds_patch_centres_not_scans(tmp_path, monkeypatch):
    """Only a bounded number of patch centres per scan stays in memory; the images lie in
    the working folder."""
    from napari_asymseg.train import study_data

    monkeypatch.setattr(study_data, "MAX_CENTRES", 500)
    cfg = DataConfig(unpainted="forest")
    scans = [tiny_scan(tmp_path / f"s{i}.zarr", seed=i) for i in range(3)]
    data, _ = _prepared(scans, cfg)
    try:
        assert all(len(p.painted) == 500 and 0 < len(p.fg) <= 500 for p in data.parts)
        held = sum(p.fg.nbytes + p.painted.nbytes for p in data.parts)
        image = np.load(data.parts[0].image, mmap_mode="r")
        assert held < image.nbytes  # three scans' centres: less than one image
        alone = ScanData.from_scan(scans[0], cfg, seed=0)  # prepared as one scan is
        np.testing.assert_array_equal(image, alone.image)
        target = np.load(data.parts[0].target)
        assert ((target >= 1000) == (alone.unpainted >= 0)).all()  # the teacher's labels kept
        assert data.weak
    finally:
        data.remove()


def test_scans_of_refuses_an_empty_list_and_a_scan_named_twice(tmp_path):
    scan = tiny_scan(tmp_path / "a.zarr")
    assert scans_of(scan) == [scan]
    with pytest.raises(ScanError, match="no scans to train on"):
        scans_of([])
    with pytest.raises(ScanError, match="a.zarr listed twice"):
        scans_of([tmp_path / "a.zarr", str(tmp_path / "a.zarr")])


def test_scans_of_different_classes_are_refused_naming_the_scan(tmp_path):
    tiny_scan(tmp_path / "a.zarr")
    image = np.zeros((8, 16, 16), np.float32)
    ann = np.ones_like(image, np.uint8)
    ann[4, 4:8, 4:8] = 2
    Scan.create(tmp_path / "b.zarr", image, annotations=ann, classes=("tumour",))
    with pytest.raises(ScanError, match=r"b.zarr has classes \['tumour'\]"):
        _prepared([tmp_path / "a.zarr", tmp_path / "b.zarr"], DataConfig())


def test_an_unpainted_scan_is_named_and_nothing_is_left_behind(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    tiny_scan(tmp_path / "a.zarr")
    tiny_scan(tmp_path / "b.zarr", annotate=False)
    with pytest.raises(ScanError, match="b.zarr has no annotations"):
        _prepared([tmp_path / "a.zarr", tmp_path / "b.zarr"], DataConfig())
    assert not list((tmp_path / "tmp").glob("asymseg-study-*"))


def test_fit_on_two_scans_records_what_it_learned_from(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    a, b = tiny_scan(tmp_path / "a.zarr"), tiny_scan(tmp_path / "b.zarr", seed=1)
    cfg = tiny_config(steps=6, val_every=3)
    events = list(fit([a, b], cfg, tmp_path / "m"))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert notices[:2] == ["preparing scan 1 of 2: a.zarr", "preparing scan 2 of 2: b.zarr"]
    started = next(e for e in events if isinstance(e, Started))
    assert started.val_voxels == 0  # nothing held out: a study's quality is leave-one-scan-out
    assert started.train_voxels == 2 * int((a.read_annotations() > 0).sum())
    assert isinstance(events[-1], Finished) and events[-1].steps_done == 6
    ckpt = load_checkpoint(tmp_path / "m")
    assert [Path(s["scan"]).name for s in ckpt["scans"]] == ["a.zarr", "b.zarr"]
    assert all(len(s["annotations_hash"]) == 16 for s in ckpt["scans"])
    assert not list((tmp_path / "tmp").glob("asymseg-study-*"))  # gone with the run


def test_fit_on_one_scan_in_a_list_is_the_single_scan_run(tmp_path):
    scan = tiny_scan(tmp_path / "a.zarr")
    cfg = tiny_config(steps=4, val_every=2)
    list(fit([scan], cfg, tmp_path / "m1"))
    list(fit(scan, cfg, tmp_path / "m2"))
    one, alone = load_checkpoint(tmp_path / "m1"), load_checkpoint(tmp_path / "m2")
    assert one["history"] == alone["history"]  # same held-out slices, same scores
    assert (
        one["scans"]
        == alone["scans"]
        == [{"scan": str(scan.path), "annotations_hash": alone["annotations_hash"]}]
    )


def test_a_study_prepares_again_only_the_scans_whose_paint_changed(tmp_path, monkeypatch):
    from napari_asymseg.study.study import Study
    from napari_asymseg.train import study_data

    for i in range(3):
        tiny_scan(tmp_path / "src" / f"p{i}.zarr", seed=i)
    study = Study.init(tmp_path / "study")
    study.add(sorted((tmp_path / "src").iterdir()))
    prepared: list[str] = []
    real = study_data.ScanData.from_scan

    def counted(scan, *args, **kwargs):
        prepared.append(scan.path.name)
        return real(scan, *args, **kwargs)

    monkeypatch.setattr(study_data.ScanData, "from_scan", counted)
    cfg = DataConfig()
    first, _ = _prepared(study.annotated(), cfg)
    first.remove()  # the run's working folder goes; the study's cache stays
    assert prepared == ["p0.zarr", "p1.zarr", "p2.zarr"]
    cache = study.models / study_data.CACHE
    assert sorted(p.name.rsplit("-", 1)[0] for p in cache.iterdir()) == ["p0", "p1", "p2"]
    ann = Scan.open(study.scan_path("p1")).read_annotations()
    ann[14] = 1  # p1 painted on one more slice (background)
    Scan.open(study.scan_path("p1")).write_annotations(ann)
    again, _ = _prepared(study.annotated(), cfg)
    assert prepared[3:] == ["p1.zarr"]  # only the scan whose paint changed
    assert sorted(p.name.rsplit("-", 1)[0] for p in cache.iterdir()) == ["p0", "p1", "p2"]
    kept = {p.scan: p for p in first.parts}
    for part in again.parts:  # the unchanged scans' entries, their centres and hashes as before
        if not part.scan.endswith("p1.zarr"):
            assert part.image == kept[part.scan].image
            np.testing.assert_array_equal(part.painted, kept[part.scan].painted)
    p1 = next(p for p in again.parts if p.scan.endswith("p1.zarr"))
    assert p1.annotations_hash != kept[p1.scan].annotations_hash
    assert p1.train_voxels == kept[p1.scan].train_voxels + 40 * 40
    x, y = StudySampler(again, (8, 16, 16), cfg, seed=0).sample(4)  # reads the kept files
    assert x.shape == (4, 1, 8, 16, 16)


def test_scans_outside_one_study_are_not_cached(tmp_path):
    from napari_asymseg.train.study_data import cache_folder

    a, b = tiny_scan(tmp_path / "a.zarr"), tiny_scan(tmp_path / "b.zarr")
    assert cache_folder([a, b]) is None
