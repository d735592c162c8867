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
"""

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from monai.losses import TverskyLoss as _MonaiTversky
from torch import nn


def target_to_onehot(
    target: torch.Tensor, num_classes: int, ignore_index: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn either target kind into ``(y, valid)``.

    Returns
    -------
    y : torch.Tensor
        float32 ``[B, C, *S]``, zero on ignored voxels.
    valid : torch.Tensor
        float32 ``[B, 1, *S]``: 1 where the voxel counts in N, 0 where it is ignored.
    """
    if target.is_floating_point():
        if target.ndim < 3 or target.shape[1] != num_classes:
            raise ValueError(
                f"soft target must be [B, {num_classes}, *S], got {tuple(target.shape)}"
            )
        y = target.float()
        # a probability is never negative, so a negative entry can only be an ignore marker
        valid = (y >= 0).all(dim=1, keepdim=True)
        return torch.where(valid, y, 0.0), valid.float()
    if target.dtype == torch.bool or target.is_complex():
        raise ValueError(f"index target must have an integer dtype, got {target.dtype}")
    valid = target != ignore_index
    idx = torch.where(valid, target, 0).long()
    y = torch.zeros(
        (target.shape[0], num_classes, *target.shape[1:]), device=target.device
    ).scatter_(1, idx.unsqueeze(1), 1.0)
    valid = valid.unsqueeze(1).float()
    return y * valid, valid


def _numbers(value: Any, cast: Callable[[Any], Any], what: str) -> list | None:
    """Sequence, None, or a comma-separated string (what a GUI text field or CLI gives)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value.strip()) if v]
    try:
        return [cast(v) for v in value]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a list of numbers, got {value!r}") from err


def _class_view(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """``[C]`` -> ``[1, C, 1, ...]`` so it broadcasts against ``[B, C, *S]``."""
    return v.view(1, -1, *([1] * (ndim - 2)))


class _SegLoss(nn.Module):
    """Shared plumbing: shape checks, float32, target conversion, masking of ignored logits."""

    def __init__(self, ignore_index: int = -1) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim < 3 or logits.shape[1] < 2:
            raise ValueError(f"logits must be [B, C>=2, *S], got {tuple(logits.shape)}")
        if not target.is_floating_point() and target.ndim == logits.ndim and target.shape[1] == 1:
            target = target[:, 0]  # MONAI-style [B, 1, *S] indices
        y, valid = target_to_onehot(target, logits.shape[1], self.ignore_index)
        if y.shape != logits.shape:
            raise ValueError(f"target {tuple(target.shape)} does not match {tuple(logits.shape)}")
        z = torch.where(valid.bool(), logits.float(), 0.0)
        return self._loss(z, y, valid)

    def _loss(self, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


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


class _OverlapLoss(_SegLoss):
    """Base for losses built from batch sums of probabilities and labels.

    These losses have no N, so "an all-zero soft row contributes 0" can only be honoured by
    dropping that voxel's prediction from the sums too: such rows are masked like ignored ones.
    """

    def _probs(self, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor):
        mask = valid * (y.sum(dim=1, keepdim=True) > 0)
        return F.softmax(z, dim=1) * mask, mask, [0, *range(2, z.ndim)]


class DiceLoss(_OverlapLoss):
    """Batch Dice loss DL2, ``1 − mean_c (2 Σ p_c r_c + ε)/(Σ p_c + Σ r_c + ε)``.

    All classes including background; sums run over every voxel of the batch. Equals MONAI
    ``DiceLoss(include_background=True, softmax=True, batch=True, smooth_nr=ε, smooth_dr=ε)``;
    written here to share the ignore and soft-row masking of the other losses.

    Parameters
    ----------
    eps : float
        Smoothing ε added to numerator and denominator.
    ignore_index : int
        Index-target value of unannotated voxels.

    References
    ----------
    Milletari, Navab & Ahmadi (2016), "V-Net", 3DV. Sudre et al. (2017), section 2.1 (DL2).
    """

    def __init__(self, eps: float = 1e-5, ignore_index: int = -1) -> None:
        super().__init__(ignore_index)
        self.eps = float(eps)

    def _loss(self, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        p, _, dims = self._probs(z, y, valid)
        inter, total = (p * y).sum(dims), p.sum(dims) + y.sum(dims)
        return 1.0 - ((2.0 * inter + self.eps) / (total + self.eps)).mean()


class GeneralizedDiceLoss(_OverlapLoss):
    """Generalised Dice loss GDLv, ``1 − 2 Σ_l w_l Σ_n r_ln p_ln / Σ_l w_l Σ_n (r_ln + p_ln)``.

    ``w_l = 1/(Σ_n r_ln)²`` with sums over every voxel of the batch; the infinite weight of a
    class absent from the batch is replaced by the largest finite one. No smoothing term. Equals
    MONAI ``GeneralizedDiceLoss(softmax=True, batch=True, smooth_nr=0, smooth_dr=0)``. If no
    class has a voxel (all ignored or all-zero rows) the loss is 0.

    Parameters
    ----------
    ignore_index : int
        Index-target value of unannotated voxels.

    References
    ----------
    Sudre et al. (2017), "Generalised Dice overlap as a deep learning loss function for highly
    unbalanced segmentations", DLMIA, section 2.1 (GDLv).
    """

    def _loss(self, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        p, _, dims = self._probs(z, y, valid)
        ref = y.sum(dims)
        w = 1.0 / ref**2
        finite = torch.isfinite(w)
        w = torch.where(finite, w, torch.where(finite, w, 0.0).max())
        num = 2.0 * (w * (p * y).sum(dims)).sum()
        den = (w * (ref + p.sum(dims))).sum()
        # den = 0 only when no class has a voxel; the clamp keeps that branch's gradient finite
        return torch.where(den > 0, 1.0 - num / den.clamp_min(1e-30), num * 0.0)


class SensitivitySpecificityLoss(_OverlapLoss):
    """Sensitivity–specificity loss, mean over foreground classes c of
    ``λ Σ(r−p)² r/(Σr+ε) + (1−λ) Σ(r−p)² (1−r)/(Σ(1−r)+ε)`` with r, p of class c.

    Sums run over the non-ignored voxels of the whole batch; background is excluded (for two
    classes this is the foreground probability).

    Parameters
    ----------
    lam : float
        Weight λ of the sensitivity term.
    eps : float
        Smoothing ε of both denominators.
    ignore_index : int
        Index-target value of unannotated voxels.

    References
    ----------
    Brosch et al. (2015), "Deep convolutional encoder networks for multiple sclerosis lesion
    segmentation", MICCAI. Sudre et al. (2017), section 2.1 (SS).
    """

    def __init__(self, lam: float = 0.05, eps: float = 1e-5, ignore_index: int = -1) -> None:
        super().__init__(ignore_index)
        self.lam, self.eps = float(lam), float(eps)

    def _loss(self, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        p, mask, dims = self._probs(z, y, valid)
        err = (y - p) ** 2
        neg = (1.0 - y) * mask
        sens = (err * y).sum(dims) / (y.sum(dims) + self.eps)
        spec = (err * neg).sum(dims) / (neg.sum(dims) + self.eps)
        return (self.lam * sens + (1.0 - self.lam) * spec)[1:].mean()


class TverskyLoss(_OverlapLoss):
    """Batch Tversky loss ``1 − mean_c (TP + ε)/(TP + α·FP + β·FN + ε)``.

    Wraps MONAI ``TverskyLoss(batch=True)``, fed with softmax probabilities and labels that are
    both zeroed on ignored voxels and all-zero soft rows, which MONAI cannot express itself.

    Parameters
    ----------
    alpha : float
        Weight of false positives.
    beta : float
        Weight of false negatives (β > α favours sensitivity).
    include_background : bool
        Average over the background class too.
    eps : float
        Smoothing ε of numerator and denominator.
    ignore_index : int
        Index-target value of unannotated voxels.

    References
    ----------
    Salehi, Erdogmus & Gholipour (2017), "Tversky loss function for image segmentation using 3D
    fully convolutional deep networks", MLMI.
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        include_background: bool = True,
        eps: float = 1e-5,
        ignore_index: int = -1,
    ) -> None:
        super().__init__(ignore_index)
        self.tversky = _MonaiTversky(
            include_background=include_background,
            alpha=alpha,
            beta=beta,
            smooth_nr=eps,
            smooth_dr=eps,
            batch=True,
        )

    def _loss(self, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        p, _, _ = self._probs(z, y, valid)
        return self.tversky(p, y)


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
    params = inspect.signature(_factory(name)).parameters.values()
    return {
        p.name: (p.annotation, p.default)
        for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in _FIXED
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
