"""A head that hands embeddings to a rankssl loss inside mmpretrain's self-supervisors.

mmpretrain's ``SimCLR`` computes its logits itself and gives its ``ContrastiveHead``
positives and negatives, so no embedding-based loss fits there. Its ``BarlowTwins`` and
``MoCoV3`` algorithms, though, call ``head.loss(z1, z2)`` with the two views' projections
(N, D): :class:`RankSSLHead` there trains with any rankssl loss. For more than two views
or for labels (S2R2 with many views, Hydra), :class:`MultiViewSelfSupervisor` (an
mmpretrain ``BaseSelfSupervisor``) runs backbone and neck on every view and calls
``head.loss(*views, data_samples=data_samples)``.

Example config (two views, mmpretrain's pipeline, GroCo's loss)::

    model = dict(
        type='mmpretrain.BarlowTwins',
        backbone=dict(type='mmpretrain.ResNet', depth=18, zero_init_residual=True),
        neck=dict(type='mmpretrain.NonLinearNeck', in_channels=512, hid_channels=2048,
                  out_channels=2048, num_layers=3, with_last_bn_affine=False, with_avg_pool=True),
        head=dict(type='rankssl.RankSSLHead', loss=dict(type='rankssl.GroCoLoss', n_negatives=10)))

See ``examples/mmpretrain_groco_resnet18_tinyfolder.py``.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from mmengine.model import BaseModule
from torch import nn

from rankssl.mm.builder import build_module
from rankssl.mm.data_samples import labels_from_samples

__all__ = ["RankSSLHead", "MultiViewSelfSupervisor", "multi_view_self_supervisor"]


class RankSSLHead(BaseModule):
    """mmpretrain-style head whose ``loss`` is a rankssl loss over the views' embeddings.

    Args:
        loss: a loss config (``dict(type='rankssl.GroCoLoss', ...)``) or module. A loss
            whose ``forward`` takes ``labels`` (``HydraLoss``) is called as
            ``loss(views, labels)`` with the labels of ``data_samples`` (rankssl's dict or
            mmpretrain's ``list[DataSample]``, ``gt_label``); any other as ``loss(*views)``.
        init_cfg: mmengine initialisation config.

    ``loss(*views, data_samples=None)``: V >= 2 embeddings (N, D) (or one list of them)
    -> scalar loss. ``forward`` returns its inputs unchanged (heads in mmpretrain's
    self-supervisors are used only through ``loss``).

    Example:
        >>> import torch
        >>> from rankssl.losses import GroCoLoss
        >>> head = RankSSLHead(loss=GroCoLoss(n_negatives=3))
        >>> head.loss(torch.randn(8, 16), torch.randn(8, 16)).shape
        torch.Size([])
    """

    def __init__(self, loss: Union[dict, nn.Module], init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(loss, (dict, nn.Module)):
            raise TypeError(f"RankSSLHead: loss must be a config dict or an nn.Module, got {type(loss).__name__}.")
        self.loss_module = build_module(loss)
        self.takes_labels = "labels" in inspect.signature(self.loss_module.forward).parameters

    def forward(self, *views: Any) -> Any:
        return views[0] if len(views) == 1 else views

    def loss(
        self, *views: Union[torch.Tensor, Sequence[torch.Tensor]], data_samples: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        if len(views) == 1 and isinstance(views[0], (list, tuple)):
            views = tuple(views[0])
        checked: List[torch.Tensor] = []
        for i, view in enumerate(views):
            if not isinstance(view, torch.Tensor) or view.dim() != 2:
                got = tuple(view.shape) if isinstance(view, torch.Tensor) else type(view).__name__
                raise ValueError(f"RankSSLHead.loss: view {i} must be an (N, D) embedding tensor, got {got}.")
            checked.append(view)
        if self.takes_labels:
            labels = labels_from_samples(
                data_samples, f"RankSSLHead({type(self.loss_module).__name__})", checked[0].device
            )
            return self.loss_module(checked, labels)
        return self.loss_module(*checked)


def multi_view_self_supervisor() -> type:
    """The :class:`MultiViewSelfSupervisor` class (needs mmpretrain; built on first use).

    ``MultiViewSelfSupervisor(backbone, neck, head, data_preprocessor=...)`` is an mmpretrain
    ``BaseSelfSupervisor``: in ``loss`` it runs the backbone and neck once per resolution
    group of the V views (mmpretrain's ``SelfSupDataPreprocessor`` gives a list of
    (B, C, H, W) views) and returns ``dict(loss=head.loss(*projections, data_samples=...))``.
    """
    global _MULTI_VIEW
    if _MULTI_VIEW is not None:
        return _MULTI_VIEW
    from mmpretrain.models.selfsup.base import BaseSelfSupervisor

    class MultiViewSelfSupervisor(BaseSelfSupervisor):
        """mmpretrain self-supervisor: every view through backbone and neck, then ``head.loss(*views)``.

        Args: as mmpretrain's ``BaseSelfSupervisor`` (``backbone``, ``neck``, ``head``,
        ``pretrained``, ``data_preprocessor``, ``init_cfg``); the head is usually
        :class:`RankSSLHead`.
        """

        def loss(self, inputs: List[torch.Tensor], data_samples: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:
            if isinstance(inputs, torch.Tensor):
                inputs = [inputs]
            groups: List[List[torch.Tensor]] = []
            for view in inputs:
                if groups and groups[-1][0].shape == view.shape:
                    groups[-1].append(view)
                else:
                    groups.append([view])
            projections: List[torch.Tensor] = []
            for group in groups:
                z = self.neck(self.backbone(torch.cat(group))) if self.with_neck else self.backbone(torch.cat(group))
                z = z[-1] if isinstance(z, (tuple, list)) else z
                projections.extend(z.flatten(1).split(group[0].shape[0]))
            return dict(loss=self.head.loss(*projections, data_samples=data_samples))

    MultiViewSelfSupervisor.__module__ = __name__
    _MULTI_VIEW = MultiViewSelfSupervisor
    return MultiViewSelfSupervisor


_MULTI_VIEW: Optional[type] = None


def MultiViewSelfSupervisor(**kwargs: Any) -> nn.Module:  # noqa: N802 (a registered builder named as its class)
    """Build mmpretrain's-``BaseSelfSupervisor`` :class:`MultiViewSelfSupervisor` (see
    :func:`multi_view_self_supervisor`); registered under this name, so mmpretrain is imported
    only when a config uses it."""
    return multi_view_self_supervisor()(**kwargs)
