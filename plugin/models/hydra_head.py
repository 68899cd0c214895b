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
        input_dim: backbone feature width.
        hidden_dim: hidden width (paper: 2048).
        output_dim: embedding width D (paper: 256).
        num_layers: number of Linear layers (>= 1; paper: 2 hidden + output = 3 for
            ResNet-50; 2 is the SimCLR-style default here).

    Shapes:
        (B, input_dim) -> (B, output_dim).

    Example:
        >>> import torch
        >>> from rankssl.models import HydraProjectionHead
        >>> head = HydraProjectionHead(512, 1024, 128)
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 128])
    """

    def __init__(self, input_dim: int, hidden_dim: int = 2048, output_dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        for name, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim), ("output_dim", output_dim), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        layers: List[nn.Module] = []
        width = input_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            width = hidden_dim
        layers += [nn.Linear(width, output_dim), nn.LayerNorm(output_dim)]
        self.layers = nn.Sequential(*layers)
        self.input_dim, self.hidden_dim, self.output_dim = input_dim, hidden_dim, output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"Expected features of shape (batch_size, {self.input_dim}), got {tuple(x.shape)}.")
        return self.layers(x)
