"""The configuration schema: one set of dataclasses for the dock, the CLI and checkpoints.

Every field has a type and a default, so the dock builds its widgets and the CLI its options
from these classes (never from a second list), and a checkpoint or model bundle stores the
config as plain JSON that :func:`config_from_dict` reads back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

CONFIG_VERSION = 1


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
    p_fg: float = opt(0.33, "share of patches centred on annotated foreground (0.8 hurts)")
    normalisation: str = opt("zscore", "zscore (over the scan) or window (CT, see --window)")
    window: tuple[float, float] = opt((-160.0, 240.0), "CT window LOW HIGH in HU")
    val_fraction: float = opt(0.25, "share of annotated slices held out for validation")
    augment: bool = opt(True, "random in-plane flips, intensity scale/shift, noise")
    asym_augment_p: float = opt(
        1.0, "augment background-centred patches with this probability (foreground: always)"
    )


@dataclass
class ModelConfig:
    """The network; ``name`` is a key of :data:`napari_asymseg.models.MODELS`."""

    name: str = opt("unet", "network: unet (nnU-Net style DynUNet) or resunet")
    filters: tuple[int, ...] = opt((16, 32, 64, 128), "channels per resolution level")
    dropout: float = opt(0.0, "dropout probability in the network")


@dataclass
class LossConfig:
    """The loss; ``name`` is a key of :data:`napari_asymseg.losses.LOSSES`."""

    name: str = opt("asym_focal", "loss function (see asymseg train --help)")
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

    steps: int = opt(120, "optimizer steps in total (one batch each; ~1 min on 2 CPU cores)")
    val_every: int = opt(20, "validate every this many steps (one point on each curve)")
    batch_size: int = opt(2, "patches per step (small batches help under imbalance)")
    lr: float = opt(3e-3, "peak learning rate (AdamW, warm-up then cosine decay)")
    weight_decay: float = opt(1e-5, "AdamW weight decay")
    patience: int = opt(0, "stop after this many validations without improvement (0: never)")
    seed: int = opt(0, "random seed (patches, initial weights, validation split)")
    device: str = opt("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    amp: str = opt("auto", "mixed precision: auto (bf16/fp16 on CUDA, off on CPU), off, bf16, fp16")
    deterministic: bool = opt(False, "deterministic algorithms (slower)")
    threads: int = opt(0, "CPU threads for torch (0: all cores)")


@dataclass
class PredictConfig:
    """Sliding-window prediction."""

    overlap: float = opt(0.25, "sliding-window overlap")
    sw_batch_size: int = opt(2, "windows per forward pass")
    tta: bool = opt(False, "average over in-plane flips (test-time augmentation)")


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
    return Config(**parts)


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
