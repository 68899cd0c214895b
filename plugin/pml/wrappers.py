"""pytorch-metric-learning wrappers that accept rankssl's losses.

pml's :class:`~pytorch_metric_learning.losses.SelfSupervisedLoss` and
:class:`~pytorch_metric_learning.losses.CrossBatchMemory` refuse every loss class whose
name is not on a hard-coded list. These subclasses accept that list plus rankssl's pml
losses, and behave like the originals otherwise (``isinstance`` checks against pml's
classes, e.g. in ``DistributedLossWrapper``, still hold).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning.losses import BaseMetricLossFunction

from rankssl.pml.groco import GroCoLoss
from rankssl.pml.hydra import HydraLoss

if TYPE_CHECKING:  # to a type checker, the mixin extends the pml wrapper it is mixed into
    from pytorch_metric_learning.losses import SelfSupervisedLoss as _MixinBase
else:
    _MixinBase = object

__all__ = ["SelfSupervisedLoss", "CrossBatchMemory", "RANKSSL_PML_LOSSES"]

#: Names of the rankssl pml losses that work with labels-from-views and memory banks.
RANKSSL_PML_LOSSES = ("GroCoLoss", "S2R2Loss", "HydraLoss")


class _AcceptsRanksslLosses(_MixinBase):
    """Extends a pml wrapper's list of supported loss names with rankssl's.

    Put it first among the bases, before the pml wrapper whose list it extends. pml
    checks only the class *name*, so a rankssl lightly-style loss (``rankssl.losses``,
    same names) would pass and fail at the first call: it is refused here, naming the
    pml class to use.
    """

    def __init__(self, loss, *args, **kwargs) -> None:
        if not isinstance(loss, BaseMetricLossFunction):
            name = type(loss).__name__
            hint = (
                f" {type(loss).__module__}.{name} is the lightly-style loss over views; "
                f"use rankssl.pml.{name}, the pytorch-metric-learning loss."
                if name in RANKSSL_PML_LOSSES
                else ""
            )
            raise TypeError(
                f"{type(self).__name__} wraps a pytorch-metric-learning loss (BaseMetricLossFunction), "
                f"got {type(loss).__module__}.{name}.{hint}"
            )
        super().__init__(loss, *args, **kwargs)

    @classmethod
    def supported_losses(cls) -> List[str]:
        return super().supported_losses() + list(RANKSSL_PML_LOSSES)

    @classmethod
    def check_loss_support(cls, loss_name: str) -> None:
        supported = cls.supported_losses()
        if loss_name not in supported:
            raise ValueError(f"{cls.__name__} does not support {loss_name}; supported losses: {', '.join(supported)}.")


class SelfSupervisedLoss(_AcceptsRanksslLosses, pml_losses.SelfSupervisedLoss):
    """Labels-from-views wrapper, like pml's, for rankssl's losses and pml's own.

    ``loss_fn(embeddings, ref_emb, *more_views)``: row ``i`` of every view is the same
    image. With ``symmetric=True`` all views are concatenated and labelled by image
    index, so every view is an anchor; otherwise ``embeddings`` are anchors against
    ``ref_emb`` (only two views).

    A :class:`rankssl.pml.GroCoLoss` inside runs with ``uniform_groups=True`` (every anchor
    has the same number of positives, its other views, and of candidate negatives), so it
    reads nothing on the host; its values are those of the default grouping.

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
                    f"All views must have the shape of embeddings {tuple(embeddings.shape)}; view {index} is {got}."
                )
        if more_views and not self.symmetric:
            raise ValueError("symmetric=False takes exactly two views (embeddings, ref_emb).")
        if not more_views and not isinstance(self.loss, GroCoLoss):
            return super().forward(embeddings, ref_emb)  # pml's own route
        batch_size = embeddings.shape[0]
        labels = torch.arange(batch_size, device=embeddings.device)
        if not self.symmetric:  # anchors: embeddings, references: ref_emb, one positive each
            loss = self._loss_for(num_positives=1, num_negatives=batch_size - 1)
            return loss(embeddings, labels, ref_emb=ref_emb, ref_labels=labels.clone())
        # Every view an anchor against all views but itself: V - 1 positives, V (B - 1) negatives.
        loss = self._loss_for(num_positives=len(views) - 1, num_negatives=len(views) * (batch_size - 1))
        return loss(torch.cat(views, dim=0), labels.repeat(len(views)))

    def _loss_for(self, num_positives: int, num_negatives: int) -> BaseMetricLossFunction:
        """The wrapped loss; a default-grouping GroCoLoss as its sync-free uniform twin."""
        loss = self.loss
        if not isinstance(loss, GroCoLoss) or loss.uniform_groups or num_negatives < 1:
            return loss
        positives = num_positives if loss.n_positives is None else min(loss.n_positives, num_positives)
        return loss._with_uniform_groups(positives, min(loss.n_negatives, num_negatives))


class CrossBatchMemory(_AcceptsRanksslLosses, pml_losses.CrossBatchMemory):
    """pml's memory bank of past embeddings, for rankssl's losses and pml's own.

    Same arguments and behaviour as :class:`pytorch_metric_learning.losses.CrossBatchMemory`:
    each call enqueues the batch (detached) and scores the batch against the whole
    memory, without an anchor's own copy. In addition:

    * an embedding width other than ``embedding_size``, a batch larger than
      ``memory_size`` (without ``enqueue_mask``) or labels that do not match the batch
      raise a ``ValueError`` saying what is expected (pml fails an ``assert`` or an
      index deep inside);
    * :class:`rankssl.pml.HydraLoss` works with it: its positives come from class pairs,
      not from the wrapper's pairs, so it gets the memory as ``ref_emb``/``ref_labels``
      and the rows of the anchors' own copies (``ref_self_index``); ``miner`` and
      ``indices_tuple`` are refused for it, as for Hydra itself.

    Example:
        >>> import torch
        >>> from rankssl.pml import CrossBatchMemory, GroCoLoss
        >>> loss_fn = CrossBatchMemory(GroCoLoss(n_negatives=4), embedding_size=16, memory_size=64)
        >>> loss = loss_fn(torch.randn(12, 16), torch.arange(6).repeat(2))
    """

    # pml's buffers: (memory_size, embedding_size) past embeddings and (memory_size,) their labels.
    embedding_memory: torch.Tensor
    label_memory: torch.Tensor

    def __init__(self, loss, embedding_size: int, memory_size: int = 1024, miner=None, **kwargs) -> None:
        for name, value in (("embedding_size", embedding_size), ("memory_size", memory_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if _is_hydra(loss) and miner is not None:
            raise ValueError(
                "HydraLoss takes its positives from class pairs, not from a miner: "
                "use CrossBatchMemory(HydraLoss(...)) without miner."
            )
        super().__init__(loss, embedding_size, memory_size, miner, **kwargs)

    def forward(self, embeddings, labels, indices_tuple=None, enqueue_mask=None):
        if (
            not isinstance(embeddings, torch.Tensor)
            or embeddings.dim() != 2
            or embeddings.shape[1] != self.embedding_size
        ):
            got = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(
                f"embeddings must have shape (batch_size, embedding_size={self.embedding_size}) to fit the "
                f"memory, got {got}."
            )
        if not isinstance(labels, torch.Tensor) or labels.shape != embeddings.shape[:1]:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels must have shape ({embeddings.shape[0]},), one per embedding, got {got}.")
        if enqueue_mask is not None and (
            not isinstance(enqueue_mask, torch.Tensor)
            or enqueue_mask.dtype != torch.bool
            or enqueue_mask.shape != embeddings.shape[:1]
        ):
            raise ValueError(f"enqueue_mask must be a bool tensor of shape ({embeddings.shape[0]},).")
        queued = embeddings.shape[0] if enqueue_mask is None else int(enqueue_mask.sum())
        if queued > self.memory_size:
            raise ValueError(
                f"The batch enqueues {queued} embeddings, more than memory_size={self.memory_size}: the "
                f"memory must hold at least one batch; raise memory_size (or enqueue fewer with enqueue_mask)."
            )
        if _is_hydra(self.loss):
            return self._hydra_forward(embeddings, labels, indices_tuple, enqueue_mask)
        return super().forward(embeddings, labels, indices_tuple, enqueue_mask)

    def _hydra_forward(self, embeddings, labels, indices_tuple, enqueue_mask):
        if indices_tuple is not None:
            raise ValueError("HydraLoss takes its positives from class pairs and does not accept indices_tuple.")
        self.reset_stats()
        labels = labels.to(embeddings.device)
        self.embedding_memory = self.embedding_memory.to(device=embeddings.device, dtype=embeddings.dtype)
        self.label_memory = self.label_memory.to(device=embeddings.device, dtype=labels.dtype)
        if enqueue_mask is not None:
            self.add_to_memory(embeddings[enqueue_mask], labels[enqueue_mask], int(enqueue_mask.sum()))
            embeddings, labels, self_index = embeddings[~enqueue_mask], labels[~enqueue_mask], None
        else:
            self.add_to_memory(embeddings, labels, embeddings.shape[0])
            self_index = self.curr_batch_idx
        filled = self.memory_size if self.has_been_filled else self.queue_idx
        return self.loss(
            embeddings,
            labels,
            ref_emb=self.embedding_memory[:filled],
            ref_labels=self.label_memory[:filled],
            ref_self_index=self_index,
        )


def _is_hydra(loss) -> bool:
    return isinstance(loss, HydraLoss)
