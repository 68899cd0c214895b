"""S2R2 as an mmengine algorithm.

Varamesh, Diba, Tuytelaars, Van Gool, "Self-Supervised Ranking for Representation
Learning" (arXiv:2010.07258). Backbone + projection head + :class:`~rankssl.losses.S2R2Loss`
over many views per image: every view ranks all other views of the batch and the loss
is 1 - mean average precision. The views come from
:class:`~rankssl.mm.transforms.MultiView` (``num_views`` up to 16, optionally global
and local crops of different sizes, which the data preprocessor groups by resolution).
"""

from __future__ import annotations

from rankssl.mm.algorithms import SelfSupervisedAlgorithm

__all__ = ["S2R2"]


class S2R2(SelfSupervisedAlgorithm):
    """S2R2: average-precision ranking of many views.

    Defaults: a 2-layer MLP projection head (2048 hidden, 128 out, as SimCLR's) and
    ``S2R2Loss()`` (binned AP estimator, cosine similarity). Every view, global or
    local, is a query and a database item alike.

    Example:
        >>> import torch
        >>> model = S2R2(backbone=dict(type='SmallCNN', in_channels=1),
        ...              neck=dict(type='MLPHead', hidden_dim=64, out_dim=32))
        >>> views = torch.rand(8, 4, 1, 32, 32)  # (views, batch, C, H, W)
        >>> model([views], mode='loss')['loss'].shape
        torch.Size([])
    """

    default_neck = dict(type="MLPHead", hidden_dim=2048, out_dim=128, num_layers=2)
    default_loss = dict(type="S2R2Loss")
