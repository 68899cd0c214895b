"""Self-supervised algorithms as mmengine ``BaseModel``s.

:class:`SelfSupervisedAlgorithm` is the pattern every method follows: it takes config
dicts for a backbone, an optional pooling step, a projection neck and a loss, runs the
backbone once per resolution group of views (see
:class:`~rankssl.mm.data_preprocessor.MultiViewDataPreprocessor`), and implements
mmengine's three forward modes. A new method subclasses it, sets its default neck and
loss, and overrides :meth:`SelfSupervisedAlgorithm.compute_loss` only if its loss does
not take the views as ``loss(*views)``.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, Dict, List, Optional, Union

import torch
from mmengine.model import BaseModel
from torch import nn

from rankssl.mm.builder import build_module

__all__ = ["SelfSupervisedAlgorithm", "GroCo", "SimCLR"]

ConfigType = Union[dict, nn.Module]

# Ranking losses send tiny gradients back; on CPUs the resulting subnormal floats make
# back-propagation ~10x slower. Flushing them must happen before torch starts its
# worker threads (they inherit the setting), hence here, at import. See FlushDenormalHook.
torch.set_flush_denormal(True)


def _pool(features: Any) -> torch.Tensor:
    """Backbone output -> (N, D): last element of a tuple, global-average-pool maps."""
    if isinstance(features, (tuple, list)):
        features = features[-1]
    if features.dim() == 4:
        features = features.mean(dim=(2, 3))
    if features.dim() != 2:
        raise ValueError(f"Pooled backbone features must be (N, D), got {tuple(features.shape)}.")
    return features


class SelfSupervisedAlgorithm(BaseModel):
    """Backbone + pooling + projection neck + multi-view loss.

    Args:
        backbone: config (or module) mapping images (N, C, H, W) to features; a
            tensor, a tuple of tensors (OpenMMLab backbones: the last is used) or
            feature maps.
        neck: projection head config. If it has no ``in_dim`` and the backbone has an
            ``out_dim`` attribute, ``in_dim`` is filled in.
        loss: loss config, called as ``loss(*views)`` on the V projected views (B, D).
        pool: optional pooling config applied to the backbone output (e.g.
            ``dict(type='mmpretrain.GlobalAveragePooling')``); by default tuples are
            reduced to their last element and maps are averaged.
        data_preprocessor: defaults to ``MultiViewDataPreprocessor``; mmpretrain's
            ``SelfSupDataPreprocessor`` (a list of (B, C, H, W) views) works too.
        neck_input: ``'tensor'``: the neck maps pooled features (N, D) to (N, D');
            ``'tuple'``: the OpenMMLab convention (mmpretrain's ``NonLinearNeck``, ...):
            the neck takes a one-element tuple of (N, D, 1, 1) maps and returns a tuple,
            whose last element is used; ``'auto'`` (default): ``'tuple'`` for necks of
            OpenMMLab packages (``mmpretrain``, ``mmselfsup``, ...), else ``'tensor'``.

    Labels, where a subclass needs them, come from ``data_samples['label']`` (rankssl's
    ``PackViews``) or from a list of mmpretrain ``DataSample`` (``gt_label``).

    Forward modes (mmengine):
        ``loss``: dict with the scalar ``loss``.
        ``tensor``: list of the V projections (B, D).
        ``predict``: one dict per sample of the first view: ``feat`` (pooled
        backbone features, the representation that is evaluated) and the sample's
        ``data_samples`` fields (``label``, ``is_bank``, ...).
    """

    default_neck: Optional[dict] = None
    default_loss: Optional[dict] = None

    def __init__(
        self,
        backbone: ConfigType,
        neck: Optional[ConfigType] = None,
        loss: Optional[ConfigType] = None,
        pool: Optional[ConfigType] = None,
        data_preprocessor: Optional[Union[dict, nn.Module]] = None,
        init_cfg: Optional[dict] = None,
        neck_input: str = "auto",
    ) -> None:
        if neck_input not in ("auto", "tensor", "tuple"):
            raise ValueError(f"neck_input must be 'auto', 'tensor' or 'tuple', got {neck_input!r}.")
        if data_preprocessor is None:
            data_preprocessor = dict(type="rankssl.MultiViewDataPreprocessor")
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = build_module(backbone)
        self.pool = build_module(pool)
        neck = copy.deepcopy(neck if neck is not None else self.default_neck)
        if (
            isinstance(neck, dict)
            and "in_dim" not in neck
            and hasattr(self.backbone, "out_dim")
            and str(neck.get("type", "")).split(".")[0] not in _OPENMMLAB_PACKAGES
        ):
            neck["in_dim"] = self.backbone.out_dim
        self.neck = build_module(neck) if neck is not None else nn.Identity()
        self.neck_takes_tuple = neck_input == "tuple" or (neck_input == "auto" and _is_openmmlab(self.neck))
        loss = loss if loss is not None else self.default_loss
        if loss is None:
            raise ValueError(f"{type(self).__name__} needs a loss config.")
        self.loss_module = build_module(loss)

    def extract_feat(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features: (N, C, H, W) -> (N, D)."""
        features = self.backbone(images)
        if self.pool is not None:
            features = self.pool(features)
        return _pool(features)

    def _views_features(self, groups: List[torch.Tensor]) -> List[torch.Tensor]:
        """Backbone features of every view: one backbone pass per resolution group."""
        views: List[torch.Tensor] = []
        for group in groups:
            if group.dim() == 4:  # a single view given directly
                group = group.unsqueeze(0)
            num_views, batch_size = group.shape[:2]
            features = self.extract_feat(group.flatten(0, 1))
            views.extend(features.view(num_views, batch_size, -1).unbind(0))
        return views

    def project(self, groups: List[torch.Tensor]) -> List[torch.Tensor]:
        """Projections of every view, list of V tensors (B, D); the neck also runs once."""
        features = self._views_features(groups)
        batch_size = features[0].shape[0]
        if all(f.shape == features[0].shape for f in features):
            return list(self.apply_neck(torch.cat(features)).split(batch_size))
        return [self.apply_neck(f) for f in features]

    def apply_neck(self, features: torch.Tensor) -> torch.Tensor:
        """Neck on pooled features (N, D) -> (N, D'), in the neck's calling convention (``neck_input``)."""
        if self.neck_takes_tuple:
            out = self.neck((features[:, :, None, None],))
        else:
            out = self.neck(features)
        if isinstance(out, (tuple, list)):
            out = out[-1]
        return out.flatten(1) if out.dim() > 2 else out

    def compute_loss(self, projections: List[torch.Tensor], data_samples: Any) -> torch.Tensor:
        return self.loss_module(*projections)

    def forward(
        self, inputs: Union[List[torch.Tensor], torch.Tensor], data_samples: Any = None, mode: str = "tensor"
    ) -> Any:
        groups = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
        if mode == "loss":
            return {"loss": self.compute_loss(self.project(groups), data_samples)}
        if mode == "tensor":
            return self.project(groups)
        if mode == "predict":
            first = groups[0][0] if groups[0].dim() == 5 else groups[0]
            return _per_sample(self.extract_feat(first), data_samples)
        raise ValueError(f"mode must be 'loss', 'tensor' or 'predict', got {mode!r}.")


_OPENMMLAB_PACKAGES = ("mmpretrain", "mmselfsup", "mmcls", "mmdet", "mmseg", "mmaction")


def _is_openmmlab(module: nn.Module) -> bool:
    """A module of an OpenMMLab package: its forward takes and returns tuples of feature maps."""
    return type(module).__module__.split(".")[0] in _OPENMMLAB_PACKAGES


def _per_sample(features: torch.Tensor, data_samples: Any) -> List[Dict[str, Any]]:
    """Split batch features and the data_samples (rankssl's dict of per-sample values, or a list of
    mmpretrain ``DataSample``: their ``gt_label`` becomes ``label``) into one dict per sample."""
    out = [{"feat": f} for f in features.detach()]
    if isinstance(data_samples, (list, tuple)) and len(data_samples) == len(out):
        for sample, item in zip(out, data_samples, strict=True):
            label = getattr(item, "gt_label", None)
            if label is not None and torch.as_tensor(label).numel() == 1:
                sample["label"] = torch.as_tensor(label).reshape(())
        return out
    if not isinstance(data_samples, dict):
        return out
    for key, value in data_samples.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == len(out):
            for sample, v in zip(out, value, strict=True):
                sample[key] = v
        elif isinstance(value, (list, tuple)) and len(value) == len(out):
            for sample, v in zip(out, value, strict=True):
                sample[key] = v
    return out


class GroCo(SelfSupervisedAlgorithm):
    """GroCo (Shvetsova et al., ICCV 2023): group-ordering loss on projected views.

    Defaults: GroCo's 3-layer projection head (BN+ReLU, non-affine last BN) sized
    2048-2048-2048 and ``GroCoLoss(n_negatives=10)``; recipes shrink them for small
    data.

    Example:
        >>> import torch
        >>> model = GroCo(backbone=dict(type='SmallCNN', in_channels=1),
        ...               neck=dict(type='GroCoProjectionHead', hidden_dim=64, out_dim=32),
        ...               loss=dict(type='GroCoLoss', n_negatives=3))
        >>> views = torch.rand(2, 8, 1, 32, 32)  # (views, batch, C, H, W)
        >>> model([views], mode='loss')['loss'].shape
        torch.Size([])
    """

    default_neck = dict(type="GroCoProjectionHead", hidden_dim=2048, out_dim=2048)
    default_loss = dict(type="GroCoLoss", n_negatives=10)


class SimCLR(SelfSupervisedAlgorithm):
    """SimCLR (Chen et al., ICML 2020) baseline with lightly's ``NTXentLoss``.

    With more than two views the loss is averaged over all view pairs.

    Example:
        >>> import torch
        >>> model = SimCLR(backbone=dict(type='SmallCNN', in_channels=1),
        ...                neck=dict(type='MLPHead', hidden_dim=64, out_dim=32))
        >>> model([torch.rand(2, 8, 1, 32, 32)], mode='loss')['loss'].shape
        torch.Size([])
    """

    default_neck = dict(type="MLPHead", hidden_dim=2048, out_dim=128, num_layers=2)
    default_loss = dict(type="NTXentLoss", temperature=0.5)

    def compute_loss(self, projections: List[torch.Tensor], data_samples: Any) -> torch.Tensor:
        pairs = list(itertools.combinations(projections, 2))
        return sum(self.loss_module(a, b) for a, b in pairs) / len(pairs)
