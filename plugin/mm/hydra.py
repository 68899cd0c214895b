"""Hydra as an mmengine algorithm.

Wu, Kittler, Awais, Atito, Mo, Feng, "Rethinking Positive Pairs in Contrastive Learning"
(arXiv:2410.18200). Backbone + projection head
(:class:`~rankssl.models.HydraProjectionHead`, LayerNorm- or BatchNorm-ended) + :class:`~rankssl.losses.HydraLoss`,
whose feature filter is trained with the model (it is a submodule of the algorithm, so
mmengine's optimizer wrapper sees its parameters). The loss reads the class labels of
the batch from ``data_samples['label']`` (rankssl's ``PackViews``) or from mmpretrain's
``list[DataSample]`` (``gt_label``). The authors train on random batches
(mmengine's ``DefaultSampler``); a class-balanced sampler (``MPerClassSampler``) gives
every paired class samples in the batch when classes are few per batch. Before each
loss the runner's epoch is passed to the loss (``set_epoch``), which its filter-only
warm-up needs.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, Dict, List, Optional, Union, cast

import torch
from torch import nn

from rankssl.mm.algorithms import SelfSupervisedAlgorithm
from rankssl.mm.builder import build_module
from rankssl.mm.data_samples import labels_from_samples

__all__ = ["Hydra"]

ConfigType = Union[dict, nn.Module]


class Hydra(SelfSupervisedAlgorithm):
    """Hydra: contrastive learning from arbitrary class pairs (needs labels).

    Args:
        backbone, neck, pool, data_preprocessor, init_cfg: as for
            :class:`~rankssl.mm.algorithms.SelfSupervisedAlgorithm`. Default neck:
            ``HydraProjectionHead(hidden_dim=2048, out_dim=256)`` (the paper's).
        loss: ``HydraLoss`` config. ``num_classes`` defaults to this algorithm's
            ``num_classes``, ``dim`` to the neck's ``out_dim``; a ``feature_filter``
            given as a config dict (``dict(type='FeatureFilter', ...)``) is built first.
        num_classes: number of classes, if the loss config does not give it.
        instance_loss: optional instance-discrimination loss over the views, called as
            ``instance_loss(view_a, view_b)`` for every pair of views (e.g. lightly's
            ``NTXentLoss``). The authors' v1 code mixes Hydra with such a term (MoCo v3);
            without it, Hydra (like supervised contrastive learning) can collapse early on
            small, noisy data. The loss is then ``(L_instance + pair_weight * L_hydra) /
            (1 + pair_weight)``.
        pair_weight: beta, the weight of the Hydra term when ``instance_loss`` is given
            (authors: 1).

    Example:
        >>> import torch
        >>> model = Hydra(backbone=dict(type='SmallCNN', in_channels=1),
        ...               neck=dict(type='HydraProjectionHead', hidden_dim=64, out_dim=32),
        ...               num_classes=4)
        >>> views = torch.rand(2, 8, 1, 32, 32)  # (views, batch, C, H, W)
        >>> labels = torch.arange(4).repeat(2)
        >>> model([views], dict(label=labels), mode='loss')['loss'].shape
        torch.Size([])
    """

    default_neck = dict(type="HydraProjectionHead", hidden_dim=2048, out_dim=256)

    def __init__(
        self,
        backbone: ConfigType,
        neck: Optional[ConfigType] = None,
        loss: Optional[ConfigType] = None,
        num_classes: Optional[int] = None,
        instance_loss: Optional[ConfigType] = None,
        pair_weight: float = 1.0,
        pool: Optional[ConfigType] = None,
        data_preprocessor: Optional[Union[dict, nn.Module]] = None,
        init_cfg: Optional[dict] = None,
        neck_input: str = "auto",
    ) -> None:
        neck_cfg = neck if neck is not None else self.default_neck
        loss = self._loss_config(loss, num_classes, neck_cfg)
        super().__init__(
            backbone,
            neck=neck_cfg,
            loss=loss,
            pool=pool,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
            neck_input=neck_input,
        )
        if not isinstance(pair_weight, (int, float)) or pair_weight < 0:
            raise ValueError(f"pair_weight must be a non-negative number, got {pair_weight!r}.")
        self.instance_loss = build_module(instance_loss)
        self.pair_weight = float(pair_weight)

    @staticmethod
    def _loss_config(loss: Optional[ConfigType], num_classes: Optional[int], neck: ConfigType) -> ConfigType:
        if isinstance(loss, nn.Module):
            return loss
        cfg: Dict[str, Any] = copy.deepcopy(dict(loss) if loss is not None else dict(type="HydraLoss"))
        if num_classes is not None:
            cfg.setdefault("num_classes", num_classes)
        if "num_classes" not in cfg:
            raise ValueError("Hydra needs the number of classes: give num_classes=... or loss=dict(num_classes=...).")
        if "dim" not in cfg:
            out_dim = (
                neck.get("out_dim", neck.get("out_channels"))
                if isinstance(neck, dict)
                else getattr(neck, "out_dim", None)
            )
            if out_dim is None:
                raise ValueError("Cannot infer the gate dimension from the neck; give loss=dict(dim=...).")
            cfg["dim"] = out_dim
        if isinstance(cfg.get("feature_filter"), dict):
            cfg["feature_filter"] = build_module(cfg["feature_filter"])
        return cfg

    def _sync_epoch(self) -> None:
        """Pass the runner's epoch (mmengine's RuntimeInfoHook records it in the MessageHub) to the
        loss, for its filter-only warm-up (``HydraLoss(filter_warmup_epochs=E)``)."""
        set_epoch = getattr(self.loss_module, "set_epoch", None)
        if not self.training or set_epoch is None:
            return
        from mmengine.logging import MessageHub

        epoch = MessageHub.get_current_instance().get_info("epoch")
        if epoch is not None:
            set_epoch(int(epoch))

    @property
    def feature_filter(self) -> nn.Module:
        # HydraLoss's filter; nn.Module's attribute lookup is typed Tensor | Module.
        return cast(nn.Module, self.loss_module.feature_filter)

    def compute_loss(self, projections: List[torch.Tensor], data_samples: Any) -> torch.Tensor:
        labels = labels_from_samples(data_samples, "Hydra", projections[0].device)
        self._sync_epoch()
        pair_loss = self.loss_module(projections, labels)
        if self.instance_loss is None:
            return pair_loss
        pairs = list(itertools.combinations(projections, 2))
        instance = sum(self.instance_loss(a, b) for a, b in pairs) / len(pairs)
        return (instance + self.pair_weight * pair_loss) / (1.0 + self.pair_weight)
