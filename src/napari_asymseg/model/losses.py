"""Segmentation losses for rare foreground classes (docs: METHODS.md sections 1 and 2).

Every loss is an ``nn.Module`` called as ``loss(logits, target)``:

- ``logits``: float ``[B, C, *S]`` with C >= 2 and channel 0 the background; any number of
  spatial dims, any device. The loss is computed in float32 whatever the autocast dtype.
- ``target``: class indices ``[B, *S]`` (or ``[B, 1, *S]``) of an integer dtype, where
  ``ignore_index`` marks unannotated voxels; or soft/one-hot labels ``[B, C, *S]`` float, where a
  row with a negative entry is ignored and an all-zero row contributes 0 but still counts in N.

Ignored voxels are removed from every sum and from N, and their logits are replaced by 0 before
the softmax, so they receive no gradient and cannot inject NaN. When nothing is left, each loss
evaluates to an exact 0 that is still connected to ``logits`` (no host sync needed).

Most losses are written here rather than wrapped from MONAI because MONAI has no asymmetric
variants, its FocalLoss averages over classes (METHODS.md sums), and its ignore handling only
covers index targets, not the all-zero soft rows that asymmetric mixup produces. The tests check
``dice`` and ``gdl`` against MONAI's DiceLoss and GeneralizedDiceLoss.

This module holds the cross-entropy family, the combination and the registry (:data:`LOSSES`,
:func:`build_loss`, :func:`loss_parameters`); the Dice-like losses are in :mod:`.overlap_losses`
and the shared plumbing in :mod:`.loss_base`. No ``from __future__ import annotations`` here:
:func:`loss_parameters` hands out the real annotation types, from which the dock builds widgets.
"""

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_asymseg.model.loss_base import _class_view, _numbers, _SegLoss, target_to_onehot
from napari_asymseg.model.overlap_losses import (
    DiceLoss,
    GeneralizedDiceLoss,
    SensitivitySpecificityLoss,
    TverskyLoss,
)

__all__ = [
    "LOSSES",
    "ComboLoss",
    "DiceLoss",
    "GeneralizedDiceLoss",
    "MarginFocalCE",
    "SensitivitySpecificityLoss",
    "TverskyLoss",
    "WeightedCE",
    "build_loss",
    "loss_parameters",
    "target_to_onehot",
]


class MarginFocalCE(_SegLoss):
    """Cross-entropy with an optional (asymmetric) large margin and focal term.

    ``ẑ_c = z_c − m·y_c·a_c`` with ``a_c = r_c`` (asymmetric) or 1; ``q̂ = softmax(ẑ)``;
    ``f_c = 1`` if asymmetric and c is rare, else ``(1 − q̂_c)^γ``;
    ``L = −(1/N) Σ_voxels Σ_c f_c·y_c·log q̂_c`` (sum over classes, mean over the N
    non-ignored voxels). m = γ = 0 is plain cross-entropy.

    Parameters
    ----------
    margin : float
        Logit margin m subtracted from the true class (only rare classes if asymmetric).
    gamma : float
        Focal exponent γ >= 0, applied to the margin-shifted probability q̂.
    asymmetric : bool
        Apply the margin to rare classes only and never attenuate rare classes (Li et al.).
    rare_classes : sequence of int, optional
        Rare classes R; default every foreground class 1..C-1. Unused when symmetric.
    ignore_index : int
        Index-target value of unannotated voxels.

    References
    ----------
    Li, Kamnitsas & Glocker (2019), "Overfitting of neural nets under class imbalance: analysis
    and improvements for segmentation", MICCAI, eqs. 1-5. Lin et al. (2017), "Focal loss for
    dense object detection", ICCV. Liu et al. (2016), "Large-margin softmax loss", ICML.
    """

    def __init__(
        self,
        margin: float = 0.0,
        gamma: float = 0.0,
        asymmetric: bool = False,
        rare_classes: Sequence[int] | None = None,
        ignore_index: int = -1,
    ) -> None:
        super().__init__(ignore_index)
        if float(gamma) < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.margin, self.gamma, self.asymmetric = float(margin), float(gamma), bool(asymmetric)
        self.rare_classes = _numbers(rare_classes, int, "rare_classes")

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, gamma={self.gamma}, asymmetric={self.asymmetric}, "
            f"rare_classes={self.rare_classes}, ignore_index={self.ignore_index}"
        )

    def _rare(self, num_classes: int, device: torch.device) -> torch.Tensor:
        rare = list(range(1, num_classes)) if self.rare_classes is None else self.rare_classes
        if any(not 0 <= c < num_classes for c in rare):
            raise ValueError(f"rare_classes {rare} out of range for {num_classes} classes")
        mask = torch.zeros(num_classes, dtype=torch.bool, device=device)
        mask[rare] = True
        return mask

    def _loss(self, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        rare = _class_view(self._rare(z.shape[1], z.device), z.ndim)
        if self.margin:
            shift = y * rare if self.asymmetric else y
            z = z - self.margin * shift
        logq = F.log_softmax(z, dim=1)
        term = y * logq
        if self.gamma:
            # 1 − q̂ via expm1 stays accurate near q̂ = 1; the floor keeps d/dq finite for γ < 1
            f = (-torch.expm1(logq)).clamp_min(1e-12).pow(self.gamma)
            if self.asymmetric:
                f = torch.where(rare, 1.0, f)
            term = term * f
        return -term.sum() / valid.sum().clamp_min(1.0)


class WeightedCE(_SegLoss):
    """Class-weighted cross-entropy, ``L = −(1/N) Σ_voxels Σ_c w_c·y_c·log p_c``.

    Normalised by the number N of non-ignored voxels, not by ``Σ w_{y_n}`` as
    ``torch.nn.functional.cross_entropy(weight=...)`` does, so a weight really scales a class.

    Parameters
    ----------
    weights : sequence of float or str
        One weight per class, or ``"auto"``: inverse voxel frequency of the annotated labels in
        the batch normalised so background = 1, i.e. ``w_c = n_0 / n_c`` with ``n_c = Σ y_c``
        (two classes: ``(N − Σr)/Σr``). It is detached and clipped to ``max_weight``. A class
        absent from the batch gets 1 (it has no voxels, so its weight has no effect); without
        background voxels the most frequent class is the reference instead.
    max_weight : float
        Upper clip for ``"auto"`` weights.
    ignore_index : int
        Index-target value of unannotated voxels.

    References
    ----------
    Sudre et al. (2017), "Generalised Dice overlap as a deep learning loss function for highly
    unbalanced segmentations", DLMIA, section 2.1 (WCE).
    """

    def __init__(
        self,
        weights: Sequence[float] | str = "auto",
        max_weight: float = 1e4,
        ignore_index: int = -1,
    ) -> None:
        super().__init__(ignore_index)
        auto = isinstance(weights, str) and weights.strip().lower() == "auto"
        self.weights = None if auto else _numbers(weights, float, "weights")
        self.max_weight = float(max_weight)

    def extra_repr(self) -> str:
        return f"weights={self.weights or 'auto'}, ignore_index={self.ignore_index}"

    def class_weights(self, y: torch.Tensor) -> torch.Tensor:
        """``[C]`` weights for one-hot ``y`` (zero on ignored voxels)."""
        num_classes = y.shape[1]
        if self.weights is not None:
            if len(self.weights) != num_classes:
                raise ValueError(f"{len(self.weights)} weights for {num_classes} classes")
            return torch.tensor(self.weights, dtype=torch.float32, device=y.device)
        dims = [0, *range(2, y.ndim)]
        n = y.detach().sum(dims)
        ref = torch.where(n[0] > 0, n[0], n.max())
        w = torch.where(n > 0, ref / n.clamp_min(torch.finfo(n.dtype).tiny), 1.0)
        return w.clamp(max=self.max_weight)

    def _loss(self, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        w = _class_view(self.class_weights(y), z.ndim)
        return -(w * y * F.log_softmax(z, dim=1)).sum() / valid.sum().clamp_min(1.0)


class ComboLoss(nn.Module):
    """Weighted sum of registered losses, e.g. ``"dice+ce"`` or ``"0.5*dice + asym_focal"``.

    Parameters
    ----------
    losses : str or mapping of str to float
        ``"w1*name1 + w2*name2"`` (weights default to 1) or ``{name: weight}``.
    ignore_index : int
        Passed to every component.
    **shared
        Other keyword parameters, each passed to every component that accepts it (e.g.
        ``margin`` reaches the cross-entropy family only); one that no component accepts is an
        error.

    References
    ----------
    Taghanaki et al. (2019), "Combo loss", CMIG; METHODS.md section 2.
    """

    def __init__(
        self,
        losses: str | Mapping[str, float] = "dice+ce",
        ignore_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__()
        self.weights = _parse_combo(losses)
        accepted = {n: loss_parameters(n) for n in self.weights}
        for key in shared:
            if not any(key in params for params in accepted.values()):
                valid = sorted(set().union(*accepted.values()) - {"ignore_index"})
                raise ValueError(
                    f"no loss in {list(self.weights)} has parameter {key!r}; valid: {valid}"
                )
        self.terms = nn.ModuleDict(
            {
                name: build_loss(
                    name,
                    ignore_index=ignore_index,
                    **{k: v for k, v in shared.items() if k in accepted[name]},
                )
                for name in self.weights
            }
        )

    def extra_repr(self) -> str:
        return " + ".join(f"{w:g}*{n}" for n, w in self.weights.items())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = [w * self.terms[n](logits, target) for n, w in self.weights.items()]
        return torch.stack(total).sum()


def _parse_combo(spec: str | Mapping[str, float]) -> dict[str, float]:
    if isinstance(spec, str):
        items: list[tuple[str, float]] = []
        for part in spec.split("+"):
            m = re.fullmatch(r"\s*(?:([0-9.eE+-]+)\s*\*\s*)?([A-Za-z_]\w*)\s*", part)
            if m is None:
                raise ValueError(f"bad combo term {part!r} in {spec!r}; use e.g. '0.5*dice+ce'")
            items.append((m.group(2), float(m.group(1) or 1.0)))
    else:
        items = [(str(k), float(v)) for k, v in spec.items()]
    out: dict[str, float] = {}
    for name, weight in items:
        if name not in LOSSES or name == "combo":
            valid = ", ".join(n for n in LOSSES if n != "combo")
            raise ValueError(f"unknown loss {name!r} in combo; valid names: {valid}")
        out[name] = out.get(name, 0.0) + weight
    if not out:
        raise ValueError("combo needs at least one loss")
    return out


# The five cross-entropy names are one class with different defaults. `asymmetric` is fixed by
# the name (so it is hidden from loss_parameters and refused by build_loss); margin and gamma
# stay open, so build_loss("asym_focal", margin=1.0) is the asymmetric margin+focal loss.
_FIXED = frozenset({"asymmetric"})
LOSSES: dict[str, Callable[..., nn.Module]] = {
    "ce": partial(MarginFocalCE, margin=0.0, gamma=0.0, asymmetric=False),
    "large_margin": partial(MarginFocalCE, margin=1.0, gamma=0.0, asymmetric=False),
    "asym_large_margin": partial(MarginFocalCE, margin=1.0, gamma=0.0, asymmetric=True),
    "focal": partial(MarginFocalCE, margin=0.0, gamma=2.0, asymmetric=False),
    "asym_focal": partial(MarginFocalCE, margin=0.0, gamma=2.0, asymmetric=True),
    "wce": WeightedCE,
    "dice": DiceLoss,
    "gdl": GeneralizedDiceLoss,
    "ss": SensitivitySpecificityLoss,
    "tversky": TverskyLoss,
    "combo": ComboLoss,
    # the default: Dice keeps a rare class from vanishing (a network that predicts no lesion
    # at all scores Dice 0, however small its focal loss), the asymmetric focal term keeps
    # the rare class's gradient (docs/training.md)
    "dice_asym_focal": partial(ComboLoss, losses="dice+asym_focal"),
    "dice_ce": partial(ComboLoss, losses="dice+ce"),
}


def _factory(name: str) -> Callable[..., nn.Module]:
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}") from None


def loss_parameters(name: str) -> dict[str, tuple[Any, Any]]:
    """Keyword parameters of loss ``name`` as ``{param: (annotation, default)}``.

    Read from the registry's signature, so a GUI or CLI can build its widgets without a second
    list. Parameters fixed by the name (``asymmetric``) and ``**kwargs`` are left out.
    """
    factory = _factory(name)
    params = inspect.signature(factory).parameters.values()
    # a named combination (dice_asym_focal) fixes its terms
    fixed = _FIXED | ({"losses"} if "losses" in getattr(factory, "keywords", {}) else set())
    return {
        p.name: (p.annotation, p.default)
        for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in fixed
    }


def build_loss(name: str, **params: Any) -> nn.Module:
    """Build the registered loss ``name`` with keyword ``params``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones) or an unknown parameter.
    """
    factory = _factory(name)
    allowed = loss_parameters(name)
    open_kwargs = any(
        p.kind == p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values()
    )
    for key in params:
        if key not in allowed and not open_kwargs:
            raise ValueError(
                f"loss {name!r} has no parameter {key!r}; valid parameters: {', '.join(allowed)}"
            )
    return factory(**params)
