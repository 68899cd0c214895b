"""Backbones as plain torch modules: a small CNN for the embedded digits, torchvision ResNets.

Every backbone maps images (N, C, H, W) to pooled features (N, ``out_dim``) and exposes
``out_dim`` so that a neck can be sized from it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

__all__ = ["SmallCNN", "TorchvisionResNet"]


def _norm(kind: Optional[str], channels: int) -> nn.Module:
    if kind in (None, "none"):
        return nn.Identity()
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"norm must be 'bn', 'gn' or 'none', got {kind!r}.")


class SmallCNN(nn.Module):
    """A few conv-norm-ReLU stages with max pooling, then global average pooling.

    Sized for small images (the embedded 32x32 digits canvas): with the default widths
    it has ~0.1 M parameters and runs a batch of 512 32x32 images in well under a
    second on two CPU cores.

    Args:
        in_channels: image channels (1 for the digits canvas).
        widths: channels of each stage; every stage but the last halves the resolution.
        norm: ``'bn'`` (default), ``'gn'`` or ``'none'`` (``'none'`` makes a model
            whose output for an image does not depend on the rest of the batch, used by
            the distributed-equivalence test).

    Shapes:
        (N, in_channels, H, W) -> (N, widths[-1]).

    Example:
        >>> import torch
        >>> net = SmallCNN(in_channels=1)
        >>> net(torch.randn(4, 1, 32, 32)).shape
        torch.Size([4, 128])
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128), norm: str = "bn") -> None:
        super().__init__()
        if in_channels < 1 or not widths or any(w < 1 for w in widths):
            raise ValueError(f"in_channels and widths must be positive, got {in_channels}, {tuple(widths)}.")
        layers = []
        channels = in_channels
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=norm in (None, "none")),
                _norm(norm, width),
                nn.ReLU(inplace=True),
            ]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet without its classifier, optionally with a small-image stem.

    Args:
        depth: 18, 34, 50, 101 or 152.
        small_stem: replace the 7x7/stride-2 conv and the max pool by a 3x3/stride-1 conv,
            the usual stem for 32x32 images (CIFAR); keep False for ImageNet-sized input.
        in_channels: image channels.
        zero_init_residual: torchvision's option (last BN of each block starts at zero).

    Shapes:
        (N, in_channels, H, W) -> (N, 512) for depth 18/34, (N, 2048) otherwise.

    Example:
        >>> import torch
        >>> net = TorchvisionResNet(depth=18, small_stem=True)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 512])
    """

    _DEPTHS = (18, 34, 50, 101, 152)

    def __init__(
        self, depth: int = 50, small_stem: bool = False, in_channels: int = 3, zero_init_residual: bool = False
    ) -> None:
        super().__init__()
        if depth not in self._DEPTHS:
            raise ValueError(f"depth must be one of {self._DEPTHS}, got {depth!r}.")
        import torchvision

        net = getattr(torchvision.models, f"resnet{depth}")(weights=None, zero_init_residual=zero_init_residual)
        if small_stem:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
