"""Hydra's projection head: an MLP whose final normalisation is a choice.

Wu et al., "Rethinking Positive Pairs in Contrastive Learning" (arXiv:2410.18200). The
authors end the projector in LayerNorm (``erow/hydra``: ``cl/model.py::build_projector``
with ``last_norm='ln'``, the SimLAP default; ``moco/builder.py::_build_mlp``, commented
"BN will prevent gate close"), because a BatchNorm re-standardises every output dimension
across the batch and so keeps the feature filter from switching dimensions off.

The price of LayerNorm is an exact collapse. LayerNorm normalises each sample over its
own dimensions and then applies ``gamma * x + beta``; nothing ties different samples
apart. When ``gamma`` shrinks towards 0 (or the pre-norm vectors become equal up to
scale and shift), every sample maps to the same vector ``beta``: all cosines are 1, all
logits equal, and Hydra's (or SupCon's) loss sits at its all-equal value, e.g.
log(1 + number of negatives). Gradient descent finds this state on small, noisy data
(measured on the embedded digits: the loss settles at log 511 whatever the learning
rate). The authors' v1 code counters it with an instance-discrimination term (MoCo v3)
and a learned logit scale (``moco/builder.py``; FastSSL's ``model/simlap.py`` learns the
scale too); their SimLAP code (v2, ``cl/``) has neither: a fixed temperature and no
instance term. A BatchNorm without affine parameters (``'bn'``; SimCLR's
and MoCo v3's projector end) cannot collapse this way: every output dimension has zero
mean and unit variance over the batch, so the embeddings cannot all be equal.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

__all__ = ["HydraProjectionHead", "LAST_NORMS"]

LAST_NORMS = ("ln", "bn", "none")


class HydraProjectionHead(nn.Module):
    """``[Linear -> BatchNorm1d -> ReLU] x (num_layers - 1) -> Linear -> last norm``, no biases.

    The defaults are SimLAP's projector (``erow/hydra`` ``cl/model.py::build_projector`` with
    ``method='simlap'``): 3 bias-free linear layers, 2048 hidden, 256 out, LayerNorm end.

    Args:
        in_dim: backbone feature width (named as in :class:`rankssl.models.heads.MLPHead`).
        hidden_dim: hidden width (paper: 2048).
        out_dim: embedding width D (paper: 256).
        num_layers: number of Linear layers (>= 1; SimLAP: 3, the default; SimCLR-style: 2).
        last_norm: the final normalisation: ``'ln'`` (LayerNorm, the authors' choice and the
            default), ``'bn'`` (BatchNorm1d without affine parameters) or ``'none'`` (the last
            Linear's output as it is, without a bias, as in the authors' ``build_projector``).
            See the module docstring for the LayerNorm collapse.

    Shapes:
        (B, in_dim) -> (B, out_dim).

    Example:
        >>> import torch
        >>> from rankssl.models import HydraProjectionHead
        >>> head = HydraProjectionHead(512, 1024, 128, last_norm='bn')
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 128])
    """

    def __init__(
        self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 256, num_layers: int = 3, last_norm: str = "ln"
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_dim", in_dim),
            ("hidden_dim", hidden_dim),
            ("out_dim", out_dim),
            ("num_layers", num_layers),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if last_norm not in LAST_NORMS:
            raise ValueError(f"last_norm must be one of {LAST_NORMS}, got {last_norm!r}.")
        layers: List[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim, bias=False))
        if last_norm == "ln":
            layers.append(nn.LayerNorm(out_dim))
        elif last_norm == "bn":
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.last_norm = last_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"Expected features of shape (batch_size, {self.in_dim}), got {tuple(x.shape)}.")
        return self.layers(x)
