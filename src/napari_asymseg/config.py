"""The configuration schema: one set of dataclasses for the dock, the CLI and checkpoints.

Every field has a type and a default, so the dock builds its widgets and the CLI its options
from these classes (never from a second list), and a checkpoint or model bundle stores the
config as plain JSON that :func:`config_from_dict` reads back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_VERSION = 1
UNPAINTED = ("forest", "shape", "background", "ignore")


def opt(default: Any, help: str) -> Any:
    """A field with a default and a help text (read by the CLI's --help and the dock's tips)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    """How training patches are drawn from a scan."""

    patch_size: tuple[int, int, int] | None = opt(
        None, "patch (Z Y X) in voxels; default: planned from the spacing (about 64 mm)"
    )
    patch_voxels: int = opt(
        0, "most voxels in a planned patch (0: planned for the device, docs/training.md)"
    )
    p_fg: float = opt(0.33, "share of patches centred on annotated foreground (0.8 hurts)")
    normalisation: str = opt("zscore", "zscore (over the scan) or window (CT, see --window)")
    window: tuple[float, float] = opt((-160.0, 240.0), "CT window LOW HIGH in HU")
    val_fraction: float = opt(
        0.25, "share of annotated slices held out for validation (from 3 runs of lesion slices on)"
    )
    unpainted: str = opt(
        "forest",
        "what unpainted voxels teach: forest (a random forest's labels), shape (the forest's "
        "and the shape filled between painted slices), background, ignore",
    )
    unpainted_share: float = opt(0.5, "share of a patch's unpainted voxels that are labelled")
    p_anywhere: float = opt(0.5, "share of the other patches centred anywhere, not just painted")
    fg_every_batch: bool = opt(
        True, "every batch holds at least one patch centred on painted foreground"
    )
    augment: bool = opt(True, "random in-plane flips, intensity scale/shift, noise")
    asym_augment_p: float = opt(
        1.0, "augment background-centred patches with this probability (foreground: always)"
    )


@dataclass
class ModelConfig:
    """The network; ``name`` is a key of :data:`napari_asymseg.model.networks.MODELS`."""

    name: str = opt("unet", "network: unet (nnU-Net style DynUNet) or resunet")
    filters: tuple[int, ...] = opt((16, 32, 64, 128), "channels per resolution level")
    dropout: float = opt(0.0, "dropout probability in the network")


@dataclass
class LossConfig:
    """The loss; ``name`` is a key of :data:`napari_asymseg.model.losses.LOSSES`."""

    name: str = opt("dice_asym_focal", "loss function (see asymseg train --help)")
    params: dict[str, Any] = opt({}, "loss parameters, e.g. margin=1 gamma=2")


@dataclass
class RegularizerConfig:
    """Regularisers that need the model (Li et al. 2019; Shwartz-Ziv et al. 2023)."""

    adversarial: bool = opt(False, "add adversarial training (Li et al. eqs. 6-8)")
    adversarial_asymmetric: bool = opt(True, "perturb along the rare-class loss only")
    adversarial_eps: float = opt(10.0, "adversarial perturbation norm per sample")
    mixup: bool = opt(False, "add mixup (Li et al. eqs. 9-11)")
    mixup_asymmetric: bool = opt(True, "keep rare-class labels, drop ambiguous voxels")
    mixup_alpha: float = opt(0.2, "mixup Beta(alpha, alpha)")
    mixup_margin: float = opt(0.2, "asymmetric mixup margin m")
    label_smoothing: tuple[float, ...] = opt(
        (), "per-class label smoothing, background first (empty: off)"
    )
    sam: str = opt("off", "sharpness-aware minimisation: off, sam, or sam_a (class-weighted)")
    sam_rho: float = opt(0.05, "SAM neighbourhood radius rho")


@dataclass
class TrainConfig:
    """The optimisation run."""

    steps: int = opt(
        0,
        "optimizer steps in total (one batch each); 0: planned for this device from `minutes` "
        "(360 to 1080; 500-700 in the default 2 minutes on 2 CPU cores, 1080 on a GPU)",
    )
    val_every: int = opt(20, "validate every this many steps (one point on each curve)")
    batch_size: int = opt(2, "patches per step (small batches help under imbalance)")
    lr: float = opt(3e-3, "peak learning rate (AdamW, warm-up then cosine decay)")
    weight_decay: float = opt(1e-5, "AdamW weight decay")
    patience: int = opt(0, "stop after this many validations without improvement (0: never)")
    minutes: float = opt(
        2.0,
        "time budget of a planned run (steps 0), from the start to the quality figure: it "
        "times its first steps, then trains as many as end within these minutes here",
    )
    seed: int = opt(0, "random seed (patches, initial weights, validation split)")
    device: str = opt("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    amp: str = opt(
        "auto", "mixed precision: auto (bf16/fp16 on CUDA, bf16 on CPUs with bf16), off, bf16, fp16"
    )
    estimate: bool = opt(
        False,
        "after training, also cross-validate over the painted slices (2-3 more runs; the "
        "quality figure shown after each prediction needs none)",
    )
    deterministic: bool = opt(False, "deterministic algorithms (slower)")
    threads: int = opt(0, "CPU threads for torch (0: all cores)")


@dataclass
class PredictConfig:
    """Sliding-window prediction."""

    overlap: float = opt(0.25, "sliding-window overlap")
    sw_batch_size: int = opt(2, "windows per forward pass")
    tta: bool = opt(False, "average over in-plane flips (test-time augmentation)")
    fill_between: bool = opt(True, "add the fill between painted lesion slices (with_fill.py)")


@dataclass
class Config:
    """Everything needed to reproduce a training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    regularizers: RegularizerConfig = field(default_factory=RegularizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    version: int = CONFIG_VERSION


def asym_combined(config: Config | None = None) -> Config:
    """Li et al. Table 1, last row: asymmetric margin + focal, adversarial and mixup."""
    config = config or Config()
    config.loss = LossConfig("asym_focal", {"margin": 1.0, "gamma": 2.0})
    config.regularizers.adversarial = True
    config.regularizers.adversarial_asymmetric = True
    config.regularizers.mixup = True
    config.regularizers.mixup_asymmetric = True
    return config


PRESETS = {"asym_combined": asym_combined}


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists)."""
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config`, refusing unknown keys and newer versions with clear errors."""
    if int(data.get("version", CONFIG_VERSION)) > CONFIG_VERSION:
        raise ValueError(
            f"config version {data.get('version')} is newer than this napari-asymseg supports "
            f"({CONFIG_VERSION}): upgrade napari-asymseg"
        )
    parts = {}
    for f in dataclasses.fields(Config):
        if f.name == "version":
            continue
        cls = type(getattr(Config(), f.name))
        parts[f.name] = _build(cls, data.get(f.name, {}), f.name)
    config = Config(**parts)
    check_config(config)
    return config


def load_config(path: str | os.PathLike) -> Config:
    """Read a config from JSON: a saved config, or any file holding one under ``"config"``
    (a model bundle's ``configs/asymseg.json``), so a run can be repeated exactly.

    Raises
    ------
    ValueError
        One line naming the file and what is wrong with it.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist: check the path") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"cannot read config file {path} ({exc}): give a JSON file as written by "
            "asymseg train (a bundle's configs/asymseg.json)"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) for k, v in data.items() if k != "version"
    ):
        raise ValueError(
            f"{path} is not an asymseg config: it needs sections such as "
            '{"train": {"steps": 200}}'
        )
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Rule:
    """What one option accepts, in a form both code and widgets read.

    :func:`check_config` tests values with :meth:`accepts`; the dock builds its spin boxes
    (:meth:`widget_range`) and combo boxes (``choices``) from the same rule, so a range or a
    list of names is written once, here.
    """

    wanted: str
    """What a valid value is, as the error message says it."""
    kind: str = "real"
    """``whole`` or ``real`` numbers, one of ``choices``, or ``text`` (tested by ``check``)."""
    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    items: tuple[float, float] | None = None
    """For a tuple: the fewest and most items, each tested as above."""
    optional: bool = False
    """``None`` (unset) is accepted."""
    check: Callable[[Any], bool] | None = None
    """A further test of the whole value (a window's LOW < HIGH, a device name)."""
    widget_high: float | None = None
    """Where the rule has no upper end (or a wider one than is useful interactively): the
    dock's spin box stops here; the CLI and config files accept the rule's whole range."""

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.items is not None:
            fewest, most = self.items
            ok = fewest <= len(value) <= most and all(self._scalar(v) for v in value)
        else:
            ok = self._scalar(value)
        return ok and (self.check is None or bool(self.check(value)))

    def _scalar(self, v: Any) -> bool:
        if self.kind == "choice":
            return v in self.choices
        if self.kind == "text":
            return isinstance(v, str)
        if isinstance(v, bool) or not isinstance(v, int if self.kind == "whole" else int | float):
            return False
        if not math.isfinite(v):
            return False
        return (v > self.low if self.open_low else v >= self.low) and (
            v < self.high if self.open_high else v <= self.high
        )

    def widget_range(self) -> tuple[float, float]:
        """The (low, high) a spin box offers: the rule's range, capped by ``widget_high``."""
        high = self.high if self.widget_high is None else min(self.high, self.widget_high)
        return self.low, high


def _whole(low: int, **more: Any) -> Rule:
    return Rule(f"a whole number >= {low}", "whole", low, **more)


def _device(v: Any) -> bool:
    head, _, index = str(v).partition(":")
    return v == "auto" or (head in ("cpu", "cuda", "mps") and (not index or index.isdigit()))


# (section, field) -> what a valid value is. Checked before anything is built, so a bad value
# from the CLI, the dock or a config file is one clear line, not a traceback from deep inside
# torch (a zero batch, a modulo by zero, an unknown device string).
_RULES: dict[tuple[str, str], Rule] = {
    ("data", "patch_size"): Rule(
        "3 whole numbers >= 4 (Z Y X), or unset to plan it from the spacing",
        "whole",
        4,
        items=(3, 3),
        optional=True,
    ),
    ("data", "patch_voxels"): Rule(
        "0 (planned) or a whole number >= 512", "whole", 0, check=lambda v: v == 0 or v >= 512
    ),
    ("data", "p_fg"): Rule("a share between 0 and 1", low=0, high=1),
    ("data", "normalisation"): Rule("zscore or window", "choice", choices=("zscore", "window")),
    ("data", "window"): Rule("LOW HIGH with LOW < HIGH", items=(2, 2), check=lambda v: v[0] < v[1]),
    ("data", "val_fraction"): Rule("a share between 0 and 0.9", low=0, high=0.9),
    ("data", "unpainted"): Rule("forest, shape, background or ignore", "choice", choices=UNPAINTED),
    ("data", "unpainted_share"): Rule("a share between 0 and 1", low=0, high=1),
    ("data", "p_anywhere"): Rule("a share between 0 and 1", low=0, high=1),
    ("data", "asym_augment_p"): Rule("a probability between 0 and 1", low=0, high=1),
    ("model", "filters"): Rule(
        "at least 3 whole numbers >= 1, e.g. 16 32 64 128", "whole", 1, items=(3, math.inf)
    ),
    ("model", "dropout"): Rule("a probability in [0, 1)", low=0, high=1, open_high=True),
    ("regularizers", "adversarial_eps"): Rule("a number > 0", low=0, open_low=True),
    ("regularizers", "mixup_alpha"): Rule("a number > 0", low=0, open_low=True),
    ("regularizers", "mixup_margin"): Rule("a number >= 0", low=0),
    ("regularizers", "label_smoothing"): Rule(
        "one share between 0 and 1 per class, background first, or empty",
        low=0,
        high=1,
        items=(0, math.inf),
        widget_high=0.5,  # the dock sets one value for every class: half is already a lot
    ),
    ("regularizers", "sam"): Rule("off, sam or sam_a", "choice", choices=("off", "sam", "sam_a")),
    ("regularizers", "sam_rho"): Rule("a number > 0", low=0, open_low=True),
    ("train", "steps"): Rule(
        "a whole number >= 0 (0: planned from the minutes)", "whole", 0, widget_high=1_000_000
    ),
    ("train", "val_every"): _whole(1),
    ("train", "batch_size"): _whole(1, widget_high=64),
    ("train", "lr"): Rule("a number > 0, e.g. 0.003", low=0, high=10, open_low=True),
    ("train", "weight_decay"): Rule("a number >= 0", low=0),
    ("train", "patience"): Rule("a whole number >= 0 (0: never stop early)", "whole", 0),
    ("train", "minutes"): Rule(
        "a number of minutes >= 0 (0: the 360 steps of a planned run)", low=0, high=10_000
    ),
    ("train", "seed"): _whole(0),
    ("train", "device"): Rule("auto, cpu, cuda, cuda:N or mps", "text", check=_device),
    ("train", "amp"): Rule(
        "auto, off, bf16 or fp16", "choice", choices=("auto", "off", "bf16", "fp16")
    ),
    ("train", "threads"): Rule("a whole number >= 0 (0: all cores)", "whole", 0),
    ("predict", "overlap"): Rule("a share between 0 and 0.95", low=0, high=0.95),
    ("predict", "sw_batch_size"): _whole(1),
}


def rule(section: str, name: str) -> Rule:
    """The rule of option ``section.name`` (KeyError for a field without one: booleans,
    names checked against a registry, loss parameters)."""
    return _RULES[(section, name)]


def check_config(config: Config, name: Callable[[str, str], str] = "{}.{}".format) -> None:
    """Refuse out-of-range values with one line naming the option and what it accepts.

    ``name(section, field)`` spells the option as the caller's user knows it (the CLI passes
    its ``--option`` names).

    Raises
    ------
    ValueError
        ``train.batch_size must be a whole number >= 1, got 0``.
    """
    for (section, field_name), want in _RULES.items():
        value = getattr(getattr(config, section), field_name)
        try:
            ok = want.accepts(value)
        except TypeError:  # a string where a list belongs, a list of strings, ...
            ok = False
        if not ok:
            raise ValueError(f"{name(section, field_name)} must be {want.wanted}, got {value!r}")
    for section in ("data", "regularizers", "train", "predict"):
        part = getattr(config, section)
        for f in dataclasses.fields(part):
            if isinstance(f.default, bool) and not isinstance(getattr(part, f.name), bool):
                value = getattr(part, f.name)
                raise ValueError(f"{name(section, f.name)} must be true or false, got {value!r}")
    for key, value in config.loss.params.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"loss parameter {key} must be a finite number, got {value!r}")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {where} option(s) {', '.join(unknown)}: valid are {', '.join(known)}"
        )
    # JSON has no tuples: every list field of the schema is a tuple
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**kwargs)
