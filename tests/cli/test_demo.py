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
    assert yellow.any()  # the reference outline is drawn
    for name in ("annotations", "ground_truth", "prediction"):
        assert (out / f"{name}.nii.gz").is_file()
    assert (out / "model" / "best.pt").is_file()
    assert summary["training"]["curves"][-1]["step"] == 6
    assert "dsc" in summary["whole-scan evaluation"]["lesion"]
    assert "probably missed" in printed
    flags = summary["flags"]
    assert [f["rank"] for f in flags] == list(range(1, len(flags) + 1))
