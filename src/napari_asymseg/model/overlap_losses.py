"""Overlap losses built from batch sums of probabilities and labels: Dice, GDL, SS, Tversky.

Registered by name in :data:`napari_asymseg.model.losses.LOSSES`; the target and ignore
conventions are those of :mod:`napari_asymseg.model.losses`.
"""

import torch
import torch.nn.functional as F
from monai.losses import TverskyLoss as _MonaiTversky

from napari_asymseg.model.loss_base import _SegLoss


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
