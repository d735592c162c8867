"""A model that has not learned the painted lesion says so (instead of an empty prediction)."""

from types import SimpleNamespace

from napari_asymseg.config import Config
from napari_asymseg.train.events import Notice
from napari_asymseg.train.loop import _unlearned


def _run(*margins):
    return SimpleNamespace(history=[{"train_margin": m} for m in margins], cfg=Config())


def test_a_negative_foreground_margin_at_the_end_is_a_notice():
    notice = _unlearned(_run(0.5, -1.03, -0.95))
    assert isinstance(notice, Notice)
    assert "has not learned the painted lesion" in notice.message and "-0.95" in notice.message
    assert "seed" in notice.message


def test_a_learned_or_recovering_model_is_not_a_notice():
    assert _unlearned(_run(-1.4, -0.3, 0.2)) is None  # recovering at the end
    assert _unlearned(_run(2.5, 2.6)) is None
    assert _unlearned(_run(-1.0)) is None  # one validation says too little
    assert _unlearned(_run(float("nan"), -1.0)) is None
