"""Regularisers that need the model: adversarial training, mixup, label smoothing, SAM / SAM-A.

Li, Kamnitsas & Glocker (2019), "Overfitting of neural nets under class imbalance: analysis and
improvements for segmentation" (MICCAI), show that rare foreground classes overfit: logits of
unseen foreground voxels shift towards the decision boundary. Their asymmetric adversarial
training (eqs. 6-8) and asymmetric mixup (eqs. 9-11) enlarge the region around the *rare*
classes only. Shwartz-Ziv et al. (2023), "Simplifying neural network training under class
imbalance" (NeurIPS), add class-conditional label smoothing and SAM-A, a sharpness-aware step
whose ascent favours minority classes. Formulas follow ``shared/design/METHODS.md`` section 3.

Targets are class indices ``[B, *S]`` (int, ``ignore_index`` for unannotated voxels) or soft
labels ``[B, C, *S]`` (float); an all-zero soft row has no label but still counts in ``N``.
Rare classes default to every foreground class ``1..C-1``. Every function works for 2D and 3D
and on any device. The base loss is always passed in as a callable ``loss_fn(logits, y)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]
_TINY = 1e-12


def _target_parts(y: Tensor, num_classes: int, ignore_index: int) -> tuple[Tensor, Tensor, Tensor]:
    """Split a target into (soft ``[B, C, *S]`` float, class index ``[B, *S]``, counted in N).

    The class index is ``ignore_index`` where a voxel has no label (ignored index or all-zero
    soft row); for soft labels it is the argmax.
    """
    if y.is_floating_point():
        if y.dim() < 3 or y.shape[1] != num_classes:
            raise ValueError(f"soft labels must be [B, {num_classes}, *S], got {tuple(y.shape)}")
        labelled = (y != 0).any(1)
        idx = y.argmax(1).masked_fill(~labelled, ignore_index)
        return y, idx, torch.ones_like(labelled)  # all-zero rows still count in N
    idx = y.long()
    counted = idx != ignore_index
    # F.one_hot rejects out-of-range classes (and negatives other than ignore_index) for us.
    onehot = F.one_hot(idx.masked_fill(~counted, 0), num_classes).movedim(-1, 1)
    dtype = torch.get_default_dtype()
    return onehot.to(dtype) * counted.unsqueeze(1), idx, counted


def _rare_lookup(rare_classes: Iterable[int] | None, num_classes: int, device) -> Tensor:
    """Boolean ``[C]``: True for rare classes (default: all foreground classes 1..C-1)."""
    rare = list(range(1, num_classes)) if rare_classes is None else [int(c) for c in rare_classes]
    if any(not 0 <= c < num_classes for c in rare):
        raise ValueError(f"rare classes {rare} outside 0..{num_classes - 1}")
    out = torch.zeros(num_classes, dtype=torch.bool, device=device)
    out[rare] = True
    return out


def _per_sample(v: Tensor, ndim: int) -> Tensor:
    """View a ``[B]`` tensor so that it broadcasts against a tensor with ``ndim`` dims."""
    return v.reshape(-1, *([1] * (ndim - 1)))


def _normalise(v: Tensor) -> Tensor:
    """Per-sample unit L2 norm over all non-batch dims; zero samples stay zero.

    Dividing by the max-abs first (as VAT implementations do) keeps tiny gradients (loss / N
    with N ~ 1e6 voxels) from underflowing when squared in float32.
    """
    flat = v.flatten(1)
    flat = flat / flat.abs().amax(1, keepdim=True).clamp_min(_TINY)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(_TINY)
    return flat.view_as(v)


@contextmanager
def _frozen_buffers(model: nn.Module) -> Iterator[None]:
    """Restore buffers (BatchNorm running stats) after extra forward passes in train mode.

    The adversarial probe and SAM's second pass are not new data: they must not move the running
    statistics, which is what the reference SAM code's ``disable_running_stats`` achieves.
    """
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, old in saved:
                buf.copy_(old)


def _ce_terms(logits: Tensor, soft: Tensor) -> Tensor:
    """Per-class terms ``-y_c log q_c``, ``[B, C, *S]``; log-softmax for stability."""
    return -soft * F.log_softmax(logits, dim=1)


def adversarial_perturbation(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float = 10.0,
    xi: float = 1e-5,
    asymmetric: bool = True,
    rare_classes: Iterable[int] | None = None,
    ignore_index: int = -1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Adversarial input perturbation ``r_adv`` of Li et al. (2019), eqs. 6-8, one power step.

    ``d0 = xi * u`` with ``u`` a random unit direction per sample; ``g = grad_d L_R(x + d0, y)``
    where ``L_R`` is the cross-entropy summed over voxels whose true class is rare (eq. 8; all
    labelled voxels when ``asymmetric=False``, eq. 7) and divided by the total number ``N`` of
    non-ignored voxels; ``r_adv = eps * g / ||g||_2`` per sample. Training then adds
    ``L(x + r_adv, y)`` to the base loss.

    Parameters
    ----------
    model : nn.Module
        Segmentation network ``[B, Cin, *S] -> [B, C, *S]``, used in whatever mode it is in
        (train mode during training). Parameter ``.grad`` and buffers are left unchanged.
    x : Tensor
        Input batch; need not require grad.
    y : Tensor
        Class indices ``[B, *S]`` or soft labels ``[B, C, *S]`` (rare voxel = argmax in R with
        a nonzero row).
    eps, xi : float
        Size of the perturbation (10 for z-scored inputs) and of the probe ``d0``.
    asymmetric : bool
        Restrict the loss to rare voxels (eq. 8) or use all labelled voxels (eq. 7).
    rare_classes : iterable of int, optional
        Rare classes R; default every foreground class.
    ignore_index : int
        Label of unannotated voxels.
    generator : torch.Generator, optional
        Source of the random direction, for reproducibility.

    Returns
    -------
    Tensor
        Detached ``r_adv`` with the shape of ``x``; exactly zero for samples without a voxel
        contributing to ``L_R`` (no rare voxel, or no labelled voxel when symmetric).
    """
    x = x.detach()
    d = _probe(x, xi, generator).requires_grad_(True)
    g, labelled = _rare_loss_grad(model, x, d, y, asymmetric, rare_classes, ignore_index)
    if g is None:
        return torch.zeros_like(x, dtype=d.dtype)
    # Samples are coupled through BatchNorm, so a sample without rare voxels can still receive
    # a gradient; the method gives it no perturbation, so zero it explicitly.
    keep = labelled.flatten(1).any(1).to(g.device)
    return (eps * _normalise(g) * _per_sample(keep, g.dim())).detach()


def _probe(x: Tensor, xi: float, generator: torch.Generator | None) -> Tensor:
    """``d0 = xi * u``, ``u`` a random unit direction per sample (drawn on the generator's
    device, in ``x``'s float dtype or the default one)."""
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    gen_device = generator.device if generator is not None else x.device
    u = torch.randn(x.shape, generator=generator, device=gen_device, dtype=dtype).to(x.device)
    return xi * _normalise(u)


def _rare_loss_grad(
    model: nn.Module,
    x: Tensor,
    d: Tensor,
    y: Tensor,
    asymmetric: bool,
    rare_classes: Iterable[int] | None,
    ignore_index: int,
) -> tuple[Tensor | None, Tensor]:
    """``(grad_d L_R(x + d, y), voxels in L_R)``: eq. 8 (eq. 7 when not ``asymmetric``).

    ``L_R`` is the cross-entropy summed over the voxels counted (rare ones, or all labelled
    ones) and divided by the number ``N`` of non-ignored voxels. The gradient is taken with
    respect to ``d`` only: parameter ``.grad`` fields and buffers are left unchanged.
    """
    with torch.enable_grad(), _frozen_buffers(model):
        logits = model(x + d)
        soft, idx, counted = _target_parts(y.to(logits.device), logits.shape[1], ignore_index)
        labelled = idx != ignore_index
        if asymmetric:
            rare = _rare_lookup(rare_classes, logits.shape[1], logits.device)
            labelled = labelled & rare[idx.masked_fill(~labelled, 0)]
        n = counted.sum().clamp_min(1)
        loss = (_ce_terms(logits, soft.to(logits.dtype)).sum(1) * labelled).sum() / n
        (g,) = torch.autograd.grad(loss, [d], allow_unused=True)
    return g, labelled


def mixup(
    x_a: Tensor,
    y_a: Tensor,
    x_b: Tensor,
    y_b: Tensor,
    lam: float | Tensor,
    *,
    margin: float = 0.2,
    asymmetric: bool = True,
    num_classes: int,
    rare_classes: Iterable[int] | None = None,
    ignore_index: int = -1,
) -> tuple[Tensor, Tensor]:
    """Mix two batches: vanilla mixup (Zhang 2018) or asymmetric mixup (Li et al. 2019, eq. 11).

    ``x_mix = lam * x_a + (1 - lam) * x_b``. Vanilla labels are ``lam * y_a + (1 - lam) * y_b``;
    asymmetric labels are hard, one class per voxel or none, by the rule of
    :func:`_asymmetric_labels` (METHODS.md). A voxel unlabelled in either batch gets an
    all-zero row in both modes.

    Parameters
    ----------
    x_a, y_a, x_b, y_b : Tensor
        Images ``[B, Cin, *S]`` and targets (indices ``[B, *S]`` or soft ``[B, C, *S]``;
        soft targets are reduced to their argmax class for the asymmetric rule).
    lam : float or Tensor
        Mixing weight, a scalar or one per sample ``[B]``.
    margin : float
        ``m`` of eq. 11.
    asymmetric : bool
        Hard asymmetric labels (eq. 11) or soft vanilla labels (eq. 10).
    num_classes : int
        Number of classes C.
    rare_classes : iterable of int, optional
        Rare classes R; default every foreground class.
    ignore_index : int
        Label of unannotated voxels.

    Returns
    -------
    tuple of Tensor
        ``x_mix`` like ``x_a`` and ``y_mix`` float ``[B, C, *S]``.
    """
    lam_t = _lambda_per_sample(lam, x_a)
    x_mix = _per_sample(lam_t, x_a.dim()) * x_a + _per_sample(1 - lam_t, x_b.dim()) * x_b
    soft_a, a, _ = _target_parts(y_a.to(x_a.device), num_classes, ignore_index)
    soft_b, b, _ = _target_parts(y_b.to(x_a.device), num_classes, ignore_index)
    if a.shape != b.shape:
        raise ValueError(f"targets differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    both = (a != ignore_index) & (b != ignore_index)
    if not asymmetric:
        lam_y = _per_sample(lam_t, soft_a.dim())
        y_mix = lam_y * soft_a.to(lam_t.dtype) + (1 - lam_y) * soft_b.to(lam_t.dtype)
        return x_mix, y_mix * both.unsqueeze(1)
    rare = _rare_lookup(rare_classes, num_classes, x_a.device)
    return x_mix, _asymmetric_labels(a, b, both, lam_t, margin, rare)


def _lambda_per_sample(lam: float | Tensor, x: Tensor) -> Tensor:
    """``lam`` as a ``[B]`` tensor in ``x``'s float dtype (or the default one)."""
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    lam_t = torch.as_tensor(lam, dtype=dtype, device=x.device)
    batch = x.shape[0]
    lam_t = lam_t.expand(batch) if lam_t.dim() == 0 else lam_t
    if lam_t.shape != (batch,):
        raise ValueError(f"lam must be a scalar or have shape ({batch},), got {tuple(lam_t.shape)}")
    return lam_t


def _asymmetric_labels(
    a: Tensor, b: Tensor, both: Tensor, lam_t: Tensor, margin: float, rare: Tensor
) -> Tensor:
    """Asymmetric mixup labels (eq. 11), one-hot ``[B, C, *S]`` (C = ``rare.numel()``).

    Per voxel with primary class ``a`` and partner class ``b``, checked in this order:

    1. ``a == b``: that class (hard one-hot), rare or not;
    2. ``b`` rare and ``1 - lam > margin``: ``b``;
    3. ``a`` rare and ``lam > margin``: ``a``;
    4. otherwise an all-zero row (no loss, still counted in N).

    When ``a`` and ``b`` are different rare classes and both tests pass (``margin < lam <
    1 - margin``), rule 2 wins: the partner's class. Eq. 11 of the paper does not decide this
    case (it has one foreground class); METHODS.md fixes ``b`` first. Comparisons are strict.
    Voxels outside ``both`` (unlabelled in either batch) get an all-zero row.
    """
    a0, b0 = a.masked_fill(~both, 0), b.masked_fill(~both, 0)
    lam_v = _per_sample(lam_t, a.dim())
    same = both & (a0 == b0)
    take_b = both & ~same & rare[b0] & ((1 - lam_v) > margin)
    take_a = both & ~same & ~take_b & rare[a0] & (lam_v > margin)
    cls = torch.where(take_b, b0, a0)  # a0 for `same` and `take_a`
    keep = same | take_a | take_b
    return F.one_hot(cls, rare.numel()).movedim(-1, 1).to(lam_t.dtype) * keep.unsqueeze(1)


def mixup_partner(
    x: Tensor,
    y: Tensor,
    *,
    pool: Sequence[tuple[Tensor | np.ndarray, Tensor | np.ndarray]] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Mixing partner of a batch (METHODS.md): the batch reversed, or a pool patch if B == 1.

    With ``flip(0)`` and an odd batch the middle sample is its own partner (labels unchanged).
    Pool entries are ``(x, y)`` pairs with or without the leading batch dimension of one; they
    are moved to the batch's device and dtypes. Raises ``ValueError`` for B == 1 and no pool.
    """
    if x.shape[0] > 1:
        return x.flip(0), y.flip(0)
    if not pool:
        raise ValueError("a batch of one needs a pool of patches to mix with")
    i = int(torch.randint(len(pool), (1,), generator=generator).item())
    xb = torch.as_tensor(pool[i][0], dtype=x.dtype, device=x.device)
    yb = torch.as_tensor(pool[i][1], dtype=y.dtype, device=y.device)
    xb = xb.unsqueeze(0) if xb.dim() == x.dim() - 1 else xb
    yb = yb.unsqueeze(0) if yb.dim() == y.dim() - 1 else yb
    if xb.shape != x.shape or yb.shape != y.shape:
        raise ValueError(f"pool patch {tuple(xb.shape)} does not match batch {tuple(x.shape)}")
    return xb, yb


def sample_lambda(alpha: float = 0.2, generator: torch.Generator | None = None) -> float:
    """Draw ``lam ~ Beta(alpha, alpha)`` (Zhang et al. 2018); ``alpha <= 0`` gives 1 (no mix).

    torch's Beta sampler takes no generator, so a seed drawn from ``generator`` (or from the
    global torch RNG) seeds numpy's sampler: ``torch.manual_seed`` makes it reproducible.
    """
    if alpha <= 0:
        return 1.0
    seed = int(torch.randint(2**62, (1,), generator=generator).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def smooth_labels(
    y: Tensor, num_classes: int, eps_per_class: float | Sequence[float], *, ignore_index: int = -1
) -> Tensor:
    """Class-conditional label smoothing (Shwartz-Ziv et al. 2023).

    A voxel of true class ``k`` gets ``(1 - eps_k) * y + eps_k / C``; unlabelled voxels get an
    all-zero row. Soft targets use their argmax as the true class.

    Parameters
    ----------
    y : Tensor
        Class indices ``[B, *S]`` or soft labels ``[B, C, *S]``.
    num_classes : int
        Number of classes C.
    eps_per_class : float or sequence of float
        One amount for all classes or one per class, each in [0, 1].
    ignore_index : int
        Label of unannotated voxels.

    Returns
    -------
    Tensor
        Float ``[B, C, *S]``; labelled rows of one-hot input sum to 1.
    """
    values = np.asarray(eps_per_class, dtype=np.float64).ravel().tolist()
    if np.ndim(eps_per_class) == 0:
        values = values * num_classes
    if len(values) != num_classes or not all(0.0 <= e <= 1.0 for e in values):
        raise ValueError(f"need {num_classes} smoothing amounts in [0, 1], got {eps_per_class!r}")
    soft, idx, _ = _target_parts(y, num_classes, ignore_index)
    labelled = idx != ignore_index
    eps = torch.tensor(values, dtype=soft.dtype, device=soft.device)
    e = (eps[idx.masked_fill(~labelled, 0)] * labelled).unsqueeze(1)
    return ((1 - e) * soft + e / num_classes) * labelled.unsqueeze(1)


def class_balanced_weights(y: Tensor, num_classes: int, ignore_index: int = -1) -> Tensor:
    """SAM-A class weights ``n_max / n_c`` from the batch's labelled voxel counts.

    Soft labels count their mass per class. Absent classes get weight 0: they have no voxels,
    so the value only matters for soft rows, and 0 keeps infinities out. Present classes are not
    clipped (as in the authors' code). Returns a detached ``[C]`` tensor; the most frequent
    class has weight 1.
    """
    soft, _, _ = _target_parts(y, num_classes, ignore_index)
    counts = soft.detach().transpose(0, 1).reshape(num_classes, -1).sum(1)
    weights = counts.max() / counts.clamp_min(_TINY)
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def weighted_ce(logits: Tensor, y: Tensor, weights: Tensor, ignore_index: int = -1) -> Tensor:
    """Class-weighted cross-entropy ``-(1/N) sum_voxels sum_c w_c y_c log q_c``.

    ``N`` is the number of non-ignored voxels, as in METHODS.md section 2 (not PyTorch's
    division by the summed weights). For SAM-A the scale cancels in ``g / ||g||``.
    """
    soft, _, counted = _target_parts(y.to(logits.device), logits.shape[1], ignore_index)
    w = weights.to(device=logits.device, dtype=logits.dtype).reshape(
        1, -1, *[1] * (logits.dim() - 2)
    )
    terms = _ce_terms(logits, soft.to(logits.dtype)) * w
    return terms.sum() / counted.sum().clamp_min(1)
