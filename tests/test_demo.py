import json

import numpy as np
from PIL import Image

from napari_asymseg.cli import main


def test_headless_demo_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--headless", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["annotated per class"]["lesion"] > 0
    picture = np.asarray(Image.open(out / "sample-slices.png"))
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0]
    red = (picture[..., 0] > 200) & (picture[..., 1] < 120)
    assert red.any()  # annotated lesion is drawn
    assert (out / "annotations.nii.gz").is_file() and (out / "ground_truth.nii.gz").is_file()
