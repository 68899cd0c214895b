"""LARS (You, Gitman, Ginsburg, "Large Batch Training of Convolutional Networks", 2017).

The variant of MoCo v3 (Chen, Xie, He, ICCV 2021; ``moco/optimizer.py``), which the
Hydra/SimLAP authors import in ``main_cl.py``: for every parameter with more than one
dimension (weights of linear and convolution layers) the update ``d = grad + wd * p`` is
scaled by the trust ratio ``eta * |p| / |d|`` (1 where either norm is 0); biases and
normalisation parameters (one dimension) get neither weight decay nor the ratio. Then
heavy-ball momentum: ``mu = momentum * mu + d``, ``p -= lr * mu``.

Pure torch; registered in mmengine's optimizer registry as ``rankssl.LARS``.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, overload

import torch

from rankssl.ops.validation import check_float

__all__ = ["LARS"]


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling with momentum (MoCo v3's variant).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (a schedule sets it per step).
        weight_decay: L2 weight decay of parameters with ``ndim > 1``.
        momentum: heavy-ball momentum.
        trust_coefficient: eta of the trust ratio (MoCo v3: 0.001).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 2)
        >>> optimizer = LARS(model.parameters(), lr=0.2, weight_decay=1e-4, momentum=0.9)
        >>> model(torch.randn(8, 4)).pow(2).mean().backward()
        >>> optimizer.step()
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.0,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
    ) -> None:
        for name, value in (
            ("lr", lr),
            ("weight_decay", weight_decay),
            ("momentum", momentum),
            ("trust_coefficient", trust_coefficient),
        ):
            check_float(value, name, 0.0, inclusive=True)
        super().__init__(
            params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient)
        )

    # torch.optim.Optimizer's overloads: the closure's loss comes back, or None without one.
    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if p.ndim > 1:
                    update = update.add(p, alpha=group["weight_decay"])
                    param_norm, update_norm = torch.norm(p), torch.norm(update)
                    ratio = group["trust_coefficient"] * param_norm / update_norm
                    ones = torch.ones_like(param_norm)
                    ratio = torch.where((param_norm > 0) & (update_norm > 0), ratio, ones)
                    update = update.mul(ratio)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(update)
                p.add_(mu, alpha=-group["lr"])
        return loss
