"""``asymseg train STUDY --out FOLDER``: where a study's run goes decides whether it becomes the
study's current model (issue 36)."""

from __future__ import annotations

from napari_asymseg.cli.main import main
from napari_asymseg.model.checkpoint import BEST
from napari_asymseg.train.runs import CURRENT, current_model
from study_helpers import small_study

TINY = [
    *("--filters", "8", "16", "16", "--patch-size", "8", "24", "24", "--loss", "ce"),
    *("--steps", "2", "--val-every", "2", "--threads", "1", "--device", "cpu", "--amp", "off"),
]


def test_a_study_run_kept_apart_trains_and_leaves_the_current_model(tmp_path, capsys):
    """A model folder outside the study's models/ was refused after training (exit 2: "not a
    model of study"); it is the user's to keep apart, and the study's current model stays."""
    study = small_study(tmp_path)
    kept = tmp_path / "kept"
    assert main(["train", str(study.path), "--out", str(kept), *TINY]) == 0
    assert (kept / BEST).is_file() and current_model(study.path) is None
    assert "current model" not in capsys.readouterr().out
    # named inside the study's models/: it becomes the current model
    run = study.models / "run-mine"
    assert main(["train", str(study.path), "--out", str(run), *TINY]) == 0
    assert (study.models / CURRENT).is_file() and current_model(study.path) == run
    assert f"the study's current model: {run}" in capsys.readouterr().out
