"""model.sam."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from napari_asymseg.model.regularizers import (
    _TINY,
    LossFn,
    _frozen_buffers,
    class_balanced_weights,
    weighted_ce,
)


class SAM(torch.optim.Optimizer):
    """Sharpness-Aware Minimization (Foret et al. 2021) around any torch optimizer.

    ``first_step`` moves to ``w + e`` with ``e = rho * g / ||g||`` (global L2 norm over all
    parameters); ``second_step`` restores ``w`` and lets the base optimizer step with the
    gradient computed at ``w + e``. The API follows the reference implementation
    (github.com/davda54/sam): ``SAM(params, torch.optim.SGD, rho=0.05, lr=0.1)``. An optimizer
    instance may be wrapped instead: ``SAM(None, torch.optim.Adam(params), rho=0.05)``.
    Learning-rate schedulers may be attached to the wrapper (the groups are shared).
    SAM-A (Shwartz-Ziv et al. 2023) only changes the loss of the ascent: see :func:`sam_step`.
    """

    def __init__(
        self,
        params: Iterable | None,
        base_optimizer: type[torch.optim.Optimizer] | torch.optim.Optimizer,
        rho: float = 0.05,
        **kwargs,
    ) -> None:
        if rho < 0:
            raise ValueError(f"rho must be >= 0, got {rho}")
        if isinstance(base_optimizer, torch.optim.Optimizer):
            if params is not None or kwargs:
                raise ValueError(
                    "when wrapping an optimizer instance pass params=None and no kwargs"
                )
            # The instance's group dicts are shared, so they gain the `rho` key in place.
            super().__init__(base_optimizer.param_groups, {"rho": rho})
            self.base_optimizer = base_optimizer
        else:
            super().__init__(params, {"rho": rho, **kwargs})  # type: ignore[arg-type]
            self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _grad_norm(self) -> Tensor:
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return torch.zeros(())
        device = grads[0].device
        return torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.detach()).to(device) for g in grads])
        )

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Ascend to ``w + rho g/||g||`` (no move where ``||g|| = 0``), remembering ``w``."""
        norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (norm + _TINY)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.detach().clone()
                p.add_(p.grad * scale.to(p))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def _restore(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                old = self.state[p].pop("old_p", None)
                if old is not None:
                    p.copy_(old)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True) -> None:
        """Restore ``w`` and step the base optimizer with the gradient taken at ``w + e``."""
        self._restore()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """Full SAM step; ``closure`` computes the loss and calls ``backward`` (called twice).

        Existing gradients are cleared first. Returns the loss at ``w``; the gradients at
        ``w + e`` are left in ``.grad``. BatchNorm statistics see both passes: use
        :func:`sam_step` to keep them to one.
        """
        if closure is None:
            raise ValueError("SAM.step needs a closure that computes the loss and its gradient")
        self.zero_grad()
        with torch.enable_grad():
            loss = closure()
        self.first_step(zero_grad=True)
        try:
            with torch.enable_grad():
                closure()
        except BaseException:
            self._restore()  # never leave the model at w + e
            raise
        self.second_step(zero_grad=False)
        return loss

    def state_dict(self) -> dict:
        # SAM's own state (`old_p`) only lives between the two half-steps.
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups  # loading replaces the list


def sam_step(
    model: nn.Module,
    optimizer: SAM,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    *,
    adaptive_weights: bool = False,
    ignore_index: int = -1,
) -> Tensor:
    """One SAM or SAM-A training step: two forward/backward passes, one parameter update.

    SAM (Foret et al. 2021) ascends along the gradient of ``loss_fn``. SAM-A
    (``adaptive_weights=True``, Shwartz-Ziv et al. 2023, as in the authors' code) ascends along
    the gradient of class-weighted CE with weights ``n_max / n_c``
    (:func:`class_balanced_weights`), which makes the ascent larger for minority classes; the
    descent gradient is always that of ``loss_fn`` at ``w + e``. Buffers (BatchNorm running
    statistics) are updated by the first pass only.

    Returns
    -------
    Tensor
        Detached value of ``loss_fn`` at the unperturbed weights (no device sync).
    """
    if not isinstance(optimizer, SAM):
        raise TypeError(f"sam_step needs a SAM optimizer, got {type(optimizer).__name__}")
    optimizer.zero_grad()
    with torch.enable_grad():
        logits = model(x)
        loss = loss_fn(logits, y)
        ascent = loss
        if adaptive_weights:
            weights = class_balanced_weights(y, logits.shape[1], ignore_index)
            ascent = weighted_ce(logits, y, weights, ignore_index)
        ascent.backward()
    optimizer.first_step(zero_grad=True)
    try:
        with torch.enable_grad(), _frozen_buffers(model):
            loss_fn(model(x), y).backward()
    except BaseException:
        optimizer._restore()
        raise
    optimizer.second_step(zero_grad=True)
    return loss.detach()
