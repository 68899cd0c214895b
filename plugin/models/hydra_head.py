"""Hydra's projection head: an MLP that ends in LayerNorm.

Wu et al., "Rethinking Positive Pairs in Contrastive Learning" (arXiv:2410.18200): the
projector's last normalisation is LayerNorm, not BatchNorm, because BatchNorm
re-standardises every output dimension across the batch and so keeps the feature
filter from switching dimensions off.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

__all__ = ["HydraProjectionHead"]


class HydraProjectionHead(nn.Module):
    """``[Linear -> BatchNorm1d -> ReLU] x (num_layers - 1) -> Linear -> LayerNorm``.

    Args:
        in_dim: backbone feature width (named as in :class:`rankssl.models.heads.MLPHead`).
        hidden_dim: hidden width (paper: 2048).
        out_dim: embedding width D (paper: 256).
        num_layers: number of Linear layers (>= 1; paper: 2 hidden + output = 3 for
            ResNet-50; 2 is the SimCLR-style default here).

    Shapes:
        (B, in_dim) -> (B, out_dim).

    Example:
        >>> import torch
        >>> from rankssl.models import HydraProjectionHead
        >>> head = HydraProjectionHead(512, 1024, 128)
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 128])
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        layers: List[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            width = hidden_dim
        layers += [nn.Linear(width, out_dim), nn.LayerNorm(out_dim)]
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"Expected features of shape (batch_size, {self.in_dim}), got {tuple(x.shape)}.")
        return self.layers(x)
