import json

import numpy as np
from PIL import Image

from napari_asymseg.cli.main import main


def test_headless_demo_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--headless", "--out", str(out), "--steps", "6"]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["annotated per class"]["lesion"] > 0
    picture = np.asarray(Image.open(out / "sample-slices.png"))
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0]
    yellow = (picture[..., 0] > 200) & (picture[..., 1] > 200) & (picture[..., 2] < 80)
    assert yellow[: picture.shape[0] - 40].any()  # the reference outline, above the legend
    captions = summary["picture"]  # each tile says its slice, whether painted, and its score
    assert captions and all(c.startswith("slice ") and " · " in c for c in captions)
    assert any("unpainted · DSC " in c for c in captions)
    for name in ("annotations", "ground_truth", "prediction"):
        assert (out / f"{name}.nii.gz").is_file()
    assert (out / "model" / "best.pt").is_file()
    assert summary["training"]["curves"][-1]["step"] == 6
    assert "dsc" in summary["whole-scan evaluation"]["lesion"]
    assert "probably missed" in printed
    flags = summary["flags"]
    assert [f["rank"] for f in flags] == list(range(1, len(flags) + 1))


def test_the_demo_says_how_long_a_planned_run_trains():
    from napari_asymseg.cli.demo import run_length
    from napari_asymseg.config import Config

    cfg = Config()
    assert cfg.train.steps == 0  # the default run is planned: "for 0 steps" said nothing true
    assert run_length(cfg) == f"about {cfg.train.minutes:g} min (steps planned for this machine)"
    cfg.train.steps = 40
    assert run_length(cfg) == "40 steps"


def test_the_demo_picture_has_a_legend(tmp_path):
    from napari_asymseg.cli.picture import LEGEND, save_picture
    from napari_asymseg.samples.sample_data import sample_scan
    from napari_asymseg.store.scan import Scan

    scan = Scan.open(sample_scan(tmp_path))
    captions = save_picture(scan, tmp_path / "p.png")
    assert captions and all(c.startswith("slice ") for c in captions)
    picture = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    legend = picture[-30:]  # the legend's swatches, in the overlays' colours
    for color, _name in LEGEND:
        rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(legend.astype(int) - rgb).sum(axis=2) < 10).any(), color
