"""Any pytorch-metric-learning loss on the views of a labelled batch, as an mmengine algorithm.

The label-based reference of the quality benchmarks: e.g. supervised contrastive learning
(Khosla et al., NeurIPS 2020) through pml's ``SupConLoss``, with the same backbone, head,
views and schedule as the self-supervised methods.
"""

from __future__ import annotations

import copy
from typing import Any, List, Optional, Union

import torch
from torch import nn

from rankssl.mm.algorithms import SelfSupervisedAlgorithm
from rankssl.mm.data_samples import labels_from_samples

__all__ = ["LabelledViews"]


def _build_pml_loss(loss: Union[dict, nn.Module]) -> nn.Module:
    """``dict(type='SupConLoss', temperature=0.1)`` -> ``pytorch_metric_learning.losses.SupConLoss(...)``."""
    if isinstance(loss, nn.Module):
        return loss
    import pytorch_metric_learning.losses as pml_losses

    loss = copy.deepcopy(dict(loss))
    name = str(loss.pop("type", "")).split(".")[-1]
    cls = getattr(pml_losses, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"loss type {name!r} is not a loss of pytorch_metric_learning.losses.")
    return cls(**loss)


class LabelledViews(SelfSupervisedAlgorithm):
    """Backbone + neck + a pytorch-metric-learning loss over all views with the class labels.

    The V projected views (B, D) are concatenated to (V*B, D) and the labels repeated V
    times, so the views of one image and all images of one class are positives of each
    other: ``loss(torch.cat(views), labels.repeat(V))``.

    Args:
        backbone, neck, pool, data_preprocessor, init_cfg: as for
            :class:`~rankssl.mm.algorithms.SelfSupervisedAlgorithm`.
        loss: a pml loss object, or ``dict(type=NAME, **kwargs)`` with NAME a class of
            ``pytorch_metric_learning.losses`` (default ``SupConLoss(temperature=0.1)``).

    Example:
        >>> import torch
        >>> model = LabelledViews(backbone=dict(type='SmallCNN', in_channels=1),
        ...                       neck=dict(type='MLPHead', hidden_dim=64, out_dim=32))
        >>> views = torch.rand(2, 8, 1, 32, 32)  # (views, batch, C, H, W)
        >>> model([views], dict(label=torch.arange(4).repeat(2)), mode='loss')['loss'].shape
        torch.Size([])
    """

    default_neck = dict(type="MLPHead", hidden_dim=2048, out_dim=128, num_layers=2)

    def __init__(
        self,
        backbone,
        neck=None,
        loss: Optional[Union[dict, nn.Module]] = None,
        pool=None,
        data_preprocessor=None,
        init_cfg=None,
        neck_input: str = "auto",
    ) -> None:
        loss_module = _build_pml_loss(loss if loss is not None else dict(type="SupConLoss", temperature=0.1))
        super().__init__(
            backbone,
            neck=neck,
            loss=loss_module,
            pool=pool,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
            neck_input=neck_input,
        )

    def compute_loss(self, projections: List[torch.Tensor], data_samples: Any) -> torch.Tensor:
        """Labels from ``data_samples['label']`` or mmpretrain's ``list[DataSample]`` (``gt_label``)."""
        labels = labels_from_samples(data_samples, type(self).__name__, projections[0].device)
        return self.loss_module(torch.cat(projections), labels.repeat(len(projections)))
