"""pytorch-metric-learning wrappers that accept rankssl's losses.

pml's :class:`~pytorch_metric_learning.losses.SelfSupervisedLoss` and
:class:`~pytorch_metric_learning.losses.CrossBatchMemory` refuse every loss class whose
name is not on a hard-coded list. These subclasses accept that list plus rankssl's pml
losses, and behave like the originals otherwise (``isinstance`` checks against pml's
classes, e.g. in ``DistributedLossWrapper``, still hold).
"""

from __future__ import annotations

from typing import List

import torch
from pytorch_metric_learning import losses as pml_losses

__all__ = ["SelfSupervisedLoss", "CrossBatchMemory", "RANKSSL_PML_LOSSES"]

#: Names of the rankssl pml losses that work with labels-from-views and memory banks.
RANKSSL_PML_LOSSES = ("GroCoLoss", "S2R2Loss", "HydraLoss")


class _AcceptsRanksslLosses:
    """Extends a pml wrapper's list of supported loss names with rankssl's.

    Put it first among the bases, before the pml wrapper whose list it extends.
    """

    @classmethod
    def supported_losses(cls) -> List[str]:
        return super().supported_losses() + list(RANKSSL_PML_LOSSES)

    @classmethod
    def check_loss_support(cls, loss_name: str) -> None:
        supported = cls.supported_losses()
        if loss_name not in supported:
            raise ValueError(
                f"{cls.__name__} does not support {loss_name}; supported losses: {', '.join(supported)}."
            )


class SelfSupervisedLoss(_AcceptsRanksslLosses, pml_losses.SelfSupervisedLoss):
    """Labels-from-views wrapper, like pml's, for rankssl's losses and pml's own.

    ``loss_fn(embeddings, ref_emb, *more_views)``: row ``i`` of every view is the same
    image. With ``symmetric=True`` all views are concatenated and labelled by image
    index, so every view is an anchor; otherwise ``embeddings`` are anchors against
    ``ref_emb`` (only two views).

    Example:
        >>> import torch
        >>> from rankssl.pml import GroCoLoss, SelfSupervisedLoss
        >>> loss_fn = SelfSupervisedLoss(GroCoLoss(n_negatives=4))
        >>> view0, view1 = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = loss_fn(view0, view1)
    """

    def forward(self, embeddings: torch.Tensor, ref_emb: torch.Tensor, *more_views: torch.Tensor):
        views = (embeddings, ref_emb) + more_views
        for index, view in enumerate(views):
            if not isinstance(view, torch.Tensor) or view.shape != embeddings.shape:
                got = tuple(view.shape) if isinstance(view, torch.Tensor) else type(view).__name__
                raise ValueError(
                    f"All views must have the shape of embeddings {tuple(embeddings.shape)}; "
                    f"view {index} is {got}."
                )
        if not more_views:
            return super().forward(embeddings, ref_emb)
        if not self.symmetric:
            raise ValueError("symmetric=False takes exactly two views (embeddings, ref_emb).")
        labels = torch.arange(embeddings.shape[0], device=embeddings.device).repeat(len(views))
        return self.loss(torch.cat(views, dim=0), labels)


class CrossBatchMemory(_AcceptsRanksslLosses, pml_losses.CrossBatchMemory):
    """pml's memory bank of past embeddings, for rankssl's losses and pml's own.

    Same arguments as :class:`pytorch_metric_learning.losses.CrossBatchMemory`.

    Example:
        >>> import torch
        >>> from rankssl.pml import CrossBatchMemory, GroCoLoss
        >>> loss_fn = CrossBatchMemory(GroCoLoss(n_negatives=4), embedding_size=16, memory_size=64)
        >>> loss = loss_fn(torch.randn(12, 16), torch.arange(6).repeat(2))
    """
