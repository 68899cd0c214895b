"""Projection heads as plain torch modules.

The layout follows lightly's ``ProjectionHead`` (a list of ``(in, out, norm, act)``
blocks) so the modules are the same shape as lightly users expect, without importing
lightly here.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

__all__ = ["MLPHead", "GroCoProjectionHead"]


class MLPHead(nn.Module):
    """Linear layers with optional BatchNorm and ReLU between them.

    Args:
        in_dim: input features (the backbone's ``out_dim``).
        hidden_dim: width of the hidden layers.
        out_dim: output features.
        num_layers: number of linear layers (>= 1).
        batch_norm: BatchNorm1d after every hidden linear layer.
        last_norm: ``None``, ``'bn'`` (affine BN) or ``'bn_noaffine'`` after the last layer.

    Shapes:
        (N, in_dim) -> (N, out_dim).

    Example:
        >>> import torch
        >>> head = MLPHead(512, 256, 64, num_layers=2)
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 64])
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_norm: Optional[str] = None,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise ValueError(f"dimensions must be positive, got {in_dim}, {hidden_dim}, {out_dim}.")
        if last_norm not in (None, "bn", "bn_noaffine"):
            raise ValueError(f"last_norm must be None, 'bn' or 'bn_noaffine', got {last_norm!r}.")
        layers: List[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=last_norm is None))
        if last_norm is not None:
            layers.append(nn.BatchNorm1d(out_dim, affine=last_norm == "bn"))
        self.layers = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GroCoProjectionHead(MLPHead):
    """GroCo's projection head (Shvetsova et al., ICCV 2023): 3 linear layers, BN+ReLU
    after the hidden ones and a BatchNorm without affine parameters at the end.

    The paper uses 2048-2048-2048 on a ResNet-50 (``in_dim=2048``).

    Example:
        >>> import torch
        >>> head = GroCoProjectionHead(in_dim=128, hidden_dim=256, out_dim=64)
        >>> head(torch.randn(4, 128)).shape
        torch.Size([4, 64])
    """

    def __init__(self, in_dim: int = 2048, hidden_dim: int = 2048, out_dim: int = 2048, num_layers: int = 3) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, num_layers, batch_norm=True, last_norm="bn_noaffine")
