import json

import pytest

from napari_asymseg.config import (
    PRESETS,
    Config,
    asym_combined,
    config_from_dict,
    config_to_dict,
)


def test_round_trip_through_json():
    cfg = Config()
    cfg.data.patch_size = (8, 32, 32)
    cfg.regularizers.label_smoothing = (0.0, 0.1)
    cfg.loss.params = {"margin": 1.0}
    back = config_from_dict(json.loads(json.dumps(config_to_dict(cfg))))
    assert back == cfg
    assert back.data.patch_size == (8, 32, 32)


def test_unknown_and_newer_are_refused():
    with pytest.raises(ValueError, match="unknown train option.*bogus"):
        config_from_dict({"train": {"bogus": 1}})
    with pytest.raises(ValueError, match="newer"):
        config_from_dict({"version": 99})


def test_asym_combined_is_the_papers_last_row():
    cfg = asym_combined()
    assert cfg.loss.name == "asym_focal" and cfg.loss.params["margin"] == 1.0
    assert cfg.regularizers.adversarial and cfg.regularizers.adversarial_asymmetric
    assert cfg.regularizers.mixup and cfg.regularizers.mixup_asymmetric
    assert PRESETS["asym_combined"] is asym_combined


def test_every_field_has_help():
    import dataclasses

    cfg = Config()
    for section in ("data", "model", "loss", "regularizers", "train", "predict"):
        for f in dataclasses.fields(getattr(cfg, section)):
            assert f.metadata.get("help"), f"{section}.{f.name} has no help"
