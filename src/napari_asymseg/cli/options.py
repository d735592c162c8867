"""Command-line options generated from the config dataclasses (no second list to keep)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from napari_asymseg.config import Config, check_config

# sections whose fields become options, and the few names that need a prefix to be unique
SECTIONS = ("data", "model", "loss", "regularizers", "train", "predict")
RENAMED = {("model", "name"): "model", ("loss", "name"): "loss"}
SKIPPED = {("loss", "params")}  # given as repeated --loss-param KEY=VALUE


def option_name(section: str, name: str) -> str:
    return RENAMED.get((section, name), name).replace("_", "-")


def add_config_options(parser: argparse.ArgumentParser, sections: tuple[str, ...]) -> None:
    """Add one option per config field of ``sections``, typed and documented by the field."""
    from napari_asymseg.model.losses import LOSSES
    from napari_asymseg.model.networks import MODELS

    defaults = Config()
    for section in sections:
        cls = type(getattr(defaults, section))
        hints = typing.get_type_hints(cls)
        group = parser.add_argument_group(f"{section} options")
        for f in dataclasses.fields(cls):
            if (section, f.name) in SKIPPED:
                continue
            default = getattr(getattr(defaults, section), f.name)
            kwargs: dict[str, Any] = {
                "dest": f"{section}.{f.name}",
                "metavar": f.name.upper(),
                "default": argparse.SUPPRESS,
                "help": f"{f.metadata.get('help', '')} (default: {_show(default)})",
            }
            hint = hints[f.name]
            args = typing.get_args(hint)
            if hint is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
                del kwargs["metavar"]
            elif typing.get_origin(hint) is tuple or tuple in (typing.get_origin(a) for a in args):
                inner = [a for a in args if a is not type(None)]
                tup = inner[0] if typing.get_origin(hint) is not tuple else hint
                items = typing.get_args(tup)
                kwargs["type"] = items[0]
                kwargs["nargs"] = "+" if Ellipsis in items else len(items)
            else:
                kwargs["type"] = hint
            if (section, f.name) == ("loss", "name"):
                kwargs["choices"] = sorted(LOSSES)
            if (section, f.name) == ("model", "name"):
                kwargs["choices"] = sorted(MODELS)
            group.add_argument(f"--{option_name(section, f.name)}", **kwargs)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) or "none"
    return str(value)


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Apply the options the user gave on top of ``base`` (defaults otherwise)."""
    cfg = base or Config()
    given = vars(args)
    if given.get("train.steps") and "train.minutes" in given:
        raise argparse.ArgumentTypeError(
            "--steps trains exactly that many steps and --minutes plans them: give one of them"
        )
    for key, value in given.items():
        if "." not in key:
            continue
        section, name = key.split(".", 1)
        setattr(getattr(cfg, section), name, tuple(value) if isinstance(value, list) else value)
    for item in getattr(args, "loss_param", None) or []:
        key, _, raw = item.partition("=")
        if not key or not raw:
            raise argparse.ArgumentTypeError(f"bad --loss-param {item!r}: write KEY=VALUE")
        cfg.loss.params[key] = _number(raw)
    check_config(cfg, lambda section, name: "--" + option_name(section, name))
    return cfg


def _number(raw: str) -> Any:
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(raw.lower(), raw)
