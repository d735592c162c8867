from engine_helpers import tiny_scan
from napari_asymseg.cli.main import main
from napari_asymseg.study.study import Study
from napari_asymseg.train.loso import read_study_figure

TINY = ["--steps", "6"]


def test_study_quality_prints_each_left_out_scan_and_the_figure(tmp_path, capsys):
    for i in range(2):
        tiny_scan(tmp_path / "src" / f"p{i}.zarr", seed=i)
    study = Study.init(tmp_path / "study")
    study.add(sorted((tmp_path / "src").iterdir()))
    assert main(["study", "quality", str(study.path), *TINY]) == 0
    out = capsys.readouterr().out
    assert "p0.zarr (1 of 2): DSC" in out and "p1.zarr (2 of 2): DSC" in out
    assert "leave-one-scan-out over 2 annotated scans" in out.splitlines()[-1]
    assert read_study_figure(study.models) is not None


def test_study_quality_with_one_annotated_scan_exits_2_with_one_line(tmp_path, capsys):
    tiny_scan(tmp_path / "src" / "p0.zarr")
    study = Study.init(tmp_path / "study")
    study.add([tmp_path / "src" / "p0.zarr"])
    assert main(["study", "quality", str(study.path), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs 2 annotated scans" in err[0]
