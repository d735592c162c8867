import json

import pytest

from napari_asymseg.config import (
    _RULES,
    PRESETS,
    Config,
    asym_combined,
    check_config,
    config_from_dict,
    config_to_dict,
    rule,
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


@pytest.mark.parametrize(
    ("section", "name", "good", "bad"),
    [
        ("train", "batch_size", [1, 64, 1000], [0, -1, 2.0, True, None]),
        ("train", "lr", [1e-4, 10], [0, -1, 11, float("nan"), "0.1"]),
        ("model", "dropout", [0, 0.5], [1, 1.0, -0.1]),
        ("regularizers", "sam", ["off", "sam", "sam_a"], ["SAM", "", None]),
        ("train", "device", ["auto", "cpu", "cuda:1", "mps"], ["gpu", "cuda:x", 0]),
        ("data", "patch_size", [None, (4, 8, 8)], [(3, 8, 8), (8, 8), (4.0, 8, 8)]),
        ("data", "window", [(-1.0, 1.0)], [(1.0, -1.0), (0.0,), (0.0, float("inf"))]),
        ("model", "filters", [(1, 2, 3), (8, 16, 32, 64, 128)], [(8, 16), (0, 8, 16)]),
        ("regularizers", "label_smoothing", [(), (0.0, 0.1, 1.0)], [(0.0, 1.5)]),
    ],
)
def test_rules_accept_and_refuse(section, name, good, bad):
    want = rule(section, name)
    for value in good:
        assert want.accepts(value), value
    for value in bad:
        try:
            accepted = want.accepts(value)
        except TypeError:
            accepted = False
        assert not accepted, value


def test_check_config_says_what_the_rule_wants():
    cfg = Config()
    cfg.train.batch_size = 0
    with pytest.raises(ValueError, match=r"^train\.batch_size must be a whole number >= 1, got 0$"):
        check_config(cfg)
    cfg = Config()
    cfg.regularizers.sam = "SAM"
    with pytest.raises(ValueError, match=r"--sam must be off, sam or sam_a, got 'SAM'"):
        check_config(cfg, lambda section, name: f"--{name}")


def test_widget_ranges_come_from_the_rules():
    # the dock's spin boxes stop where the rule says, or at its widget_high where it has no end
    assert rule("train", "batch_size").widget_range() == (1, 64)
    assert rule("train", "steps").widget_range() == (0, 1_000_000)  # 0: planned
    assert rule("regularizers", "label_smoothing").widget_range() == (0, 0.5)
    assert rule("data", "p_fg").widget_range() == (0, 1)
    assert rule("regularizers", "sam").choices == ("off", "sam", "sam_a")
    # every default of the schema passes its own rule
    cfg = Config()
    for (section, name), want in _RULES.items():
        assert want.accepts(getattr(getattr(cfg, section), name)), (section, name)
    with pytest.raises(KeyError):
        rule("train", "no_such_option")
