"""Hydra as a pytorch-metric-learning loss.

Wu, Kittler, Awais, Atito, Mo, Feng, "Rethinking Positive Pairs in Contrastive Learning"
(arXiv:2410.18200). The objective of :mod:`rankssl.losses.hydra` with pml's calling
conventions: ``loss_fn(embeddings, labels, ref_emb=..., ref_labels=...)``, reducers and
embedding regularizers. The scale, the settings checks, the seeded partner draw and its
state in ``state_dict()`` are :class:`rankssl.losses.hydra_base.HydraLossBase`'s, shared with
the lightly-style loss. The per-call inputs pml's ``compute_loss`` hook has no slot for
(``pair_labels``, ``ref_self_index``) travel as arguments, never as attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import MeanReducer
from pytorch_metric_learning.utils import common_functions as c_f

from rankssl.losses.feature_filter import FeatureFilter, check_class_labels
from rankssl.losses.hydra import _masked_terms
from rankssl.losses.hydra_base import HydraLossBase, defer_or_raise
from rankssl.ops.validation import check_float, collect_checks, send_collected_checks
from rankssl.pml._checks import check_inputs, check_reducer

__all__ = ["HydraLoss"]


class HydraLoss(BaseMetricLossFunction, HydraLossBase):
    """Hydra loss for labelled embeddings, as a pml ``BaseMetricLossFunction``.

    Every row of ``embeddings`` is an anchor of class y1 = ``labels[i]`` with a partner
    class y2 (drawn by ``pair_draw``/``pairing``, or passed as ``pair_labels``). Its
    positives are the reference items of class y2 (itself excluded when ``ref_emb`` is
    not given), its negatives those of neither class; all are compared in the
    dimensions opened by the learned gate g(y1, y2). See :class:`rankssl.losses.HydraLoss`
    for the formula. The defaults are the authors' SimLAP choices (``erow/hydra``
    ``cl/losses.py``): one partner class per row by a permutation of the batch, the sum
    over (anchor, positive) pairs divided by their number.

    **This loss has parameters** (the :class:`~rankssl.models.FeatureFilter`), unlike
    most pml losses: give the optimizer ``loss_fn.parameters()`` too, as for pml's
    ``ArcFaceLoss``. The similarity is Hydra's own gated cosine, so ``distance`` must be
    :class:`~pytorch_metric_learning.distances.CosineSimilarity` (the default).

    **Pairs differ from pml's same-label pairs.** An anchor's positives are the items of
    its *partner* class, not of its own, so a batch of all-distinct labels still gives a
    loss (each anchor has one positive), while a batch of a single class has no
    negatives: it gives pml's zero loss (which back-propagates), as any pml loss does
    for a batch without pairs. Anchors without an admissible partner (``pairing='distinct'``
    against references of their own class only) have no positives and are left out.

    **Miners and** ``indices_tuple``: positives come from class pairs, so a miner's pairs
    are refused. The one ``indices_tuple`` accepted is the one pml's
    ``DistributedLossWrapper(loss, efficient=True)`` builds: every (anchor, reference) pair
    but the anchors' own rows, which are the first rows of ``ref_emb`` (recognised by its
    length, B * N - B pairs, without reading values); the anchors' own rows are then left
    out as with ``ref_self_index=arange(B)``.

    **Distributed draws.** As in the lightly-style loss, each process seeds its draw with
    ``seed + rank``, so the processes' draws are independent. Under pml's
    ``DistributedLossWrapper(efficient=False)`` every process computes the loss of the
    gathered batch (its own rows first, then the others'), so each process draws its own
    partners for that batch; with a deterministic pairing (``pairing='identical'`` or
    ``pair_labels`` given) the result equals the single-process loss.

    **Reduction.** With ``reduction="pair_mean"`` (default, SimLAP) the loss is the sum of
    the terms over (anchor, positive) pairs divided by the number of pairs; with
    ``"anchor_mean"`` the mean over anchors with a positive of their mean over
    positives. With pml's default ``MeanReducer`` that mean is computed on the device and
    handed to pml already reduced (no host sync); with any other reducer pml gets one loss
    per (anchor, positive) pair (``"pos_pair"``) or per anchor (``"element"``), which
    needs the number of pairs on the host. With ``gate_penalty > 0`` a second sub-loss
    ``"gate_penalty"`` = ``gate_penalty * mean(g * (1 - g))`` is added, already reduced.

    **The authors' SimLAP loss on two views** in pml's terms: draw one ``pair_labels`` per
    batch and average ``loss_fn(view1, labels, ref_emb=view2, ref_labels=labels,
    pair_labels=p)`` and the same with the views swapped; this equals
    :class:`rankssl.losses.HydraLoss` with its defaults (tested). The v1 code's
    filter-only warm-up needs the training epoch, which pml losses do not see: detach the
    embeddings yourself for those epochs.

    Args:
        num_classes: number of classes C.
        embedding_size: D, the embedding width the gate covers.
        temperature, gate_mode, pairing, embed_dim, hidden_dim, gate_penalty,
        class_pair_weight, feature_filter, learn_scale: as for
        :class:`rankssl.losses.HydraLoss`.
        seed: seed of the pair draw's own generator (on the input's device, offset by the
            process rank, in ``state_dict()``); ``None`` uses torch's global generator.
        reduction: ``"pair_mean"`` (default, SimLAP) or ``"anchor_mean"`` (rankssl's variant).
        pair_draw: ``"permutation"`` (default, SimLAP: the class of the row a random
            permutation of the batch maps each row to) or ``"per_row"`` (variant: a
            partner drawn for every row from ``ref_labels``).
        **kwargs: ``reducer``, ``embedding_regularizer``, ... as for any pml loss.

    Example:
        >>> import torch
        >>> from rankssl.pml import HydraLoss
        >>> loss_fn = HydraLoss(num_classes=4, embedding_size=16, seed=0)
        >>> embeddings = torch.randn(12, 16, requires_grad=True)
        >>> labels = torch.arange(4).repeat(3)
        >>> optimizer = torch.optim.SGD([embeddings, *loss_fn.parameters()], lr=0.1)
        >>> loss = loss_fn(embeddings, labels)
        >>> loss.backward()
    """

    if TYPE_CHECKING:  # pml's base is untyped (Any): name what this class uses of it, or mypy reads
        # these names through nn.Module.__getattr__ of the other base as tensors
        reset_stats: Callable[..., Any]
        add_to_recordable_attributes: Callable[..., Any]
        add_embedding_regularization_to_loss_dict: Callable[..., Any]
        reducer: Callable[..., Any]
        zero_loss: Callable[..., Any]

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        temperature: float = 0.1,
        gate_mode: str = "fused",
        pairing: str = "arbitrary",
        embed_dim: int = 512,
        hidden_dim: int = 1024,
        gate_penalty: float = 0.0,
        class_pair_weight: Optional[torch.Tensor] = None,
        seed: Optional[int] = None,
        feature_filter: Optional[FeatureFilter] = None,
        reduction: str = "pair_mean",
        pair_draw: str = "permutation",
        learn_scale: bool = False,
        **kwargs,
    ) -> None:
        check_float(gate_penalty, "gate_penalty", 0.0, inclusive=True)
        # Set before pml's constructor, which picks the reducer from the sub-loss names.
        self.gate_penalty = float(gate_penalty)
        super().__init__(**kwargs)
        if not isinstance(self.distance, CosineSimilarity):
            raise ValueError(
                f"HydraLoss compares embeddings by its own gated cosine similarity; distance must be "
                f"CosineSimilarity, got {type(self.distance).__name__}."
            )
        self._init_common(
            num_classes,
            embedding_size,
            temperature=temperature,
            gate_mode=gate_mode,
            pairing=pairing,
            embed_dim=embed_dim,
            hidden_dim=hidden_dim,
            gate_penalty=gate_penalty,
            class_pair_weight=class_pair_weight,
            seed=seed,
            feature_filter=feature_filter,
            reduction=reduction,
            pair_draw=pair_draw,
            learn_scale=learn_scale,
        )
        self.embedding_size = embedding_size
        self._own_rows_cache: dict = {}
        self.add_to_recordable_attributes(list_of_names=["temperature"], is_stat=False)

    def get_default_distance(self) -> CosineSimilarity:
        return CosineSimilarity()

    def _sub_loss_names(self):
        return ["loss", "gate_penalty"] if self.gate_penalty > 0 else ["loss"]

    def forward(
        self,
        embeddings,
        labels=None,
        indices_tuple=None,
        ref_emb=None,
        ref_labels=None,
        pair_labels=None,
        ref_self_index=None,
    ):
        """pml's ``forward`` plus optional (batch_size,) ``pair_labels`` (y2 per anchor) and
        ``ref_self_index`` (row of each anchor's own copy in ``ref_emb``, e.g. in a memory
        bank: never its own positive or partner)."""
        self._check_settings()
        if indices_tuple is not None:
            ref_self_index = self._self_index_of_all_pairs(embeddings, indices_tuple, ref_emb, ref_self_index)
            indices_tuple = None
        if labels is None:
            check_class_labels(None, self.num_classes)
        if ref_emb is not None and ref_labels is None:
            raise ValueError("HydraLoss needs ref_labels whenever ref_emb is given.")
        if ref_self_index is not None:
            ref_self_index = self._checked_ref_self_index(ref_self_index, embeddings, ref_emb)
        started = collect_checks()  # the lazy verdicts of this call reach the host in one copy
        try:
            check_reducer(self)
            embeddings, labels, indices_tuple, ref_emb, ref_labels = check_inputs(
                embeddings, labels, indices_tuple, ref_emb, ref_labels
            )
            return self._reduced_loss(embeddings, labels, ref_emb, ref_labels, pair_labels, ref_self_index)
        finally:
            send_collected_checks(started)

    def _reduced_loss(self, embeddings, labels, ref_emb, ref_labels, pair_labels, ref_self_index):
        """pml's ``BaseMetricLossFunction.forward`` after the input checks, with this call's
        ``pair_labels`` and ``ref_self_index`` handed to :meth:`_loss_dict` as arguments."""
        self.reset_stats()
        c_f.check_shapes(embeddings, labels)
        if labels is not None:
            labels = c_f.to_device(labels, embeddings)
        ref_emb, ref_labels = c_f.set_ref_emb(embeddings, labels, ref_emb, ref_labels)
        loss_dict = self._loss_dict(embeddings, labels, ref_emb, ref_labels, pair_labels, ref_self_index)
        self.add_embedding_regularization_to_loss_dict(loss_dict, embeddings)
        return self.reducer(loss_dict, embeddings, labels)

    @staticmethod
    def _self_index_of_all_pairs(embeddings, indices_tuple, ref_emb, ref_self_index):
        """``arange(B)`` for the all-pairs tuple of ``DistributedLossWrapper(efficient=True)``; refuse any other."""
        rows = embeddings.shape[0] if isinstance(embeddings, torch.Tensor) else -1
        refs = ref_emb.shape[0] if isinstance(ref_emb, torch.Tensor) else rows
        parts = indices_tuple if isinstance(indices_tuple, (tuple, list)) else ()
        sizes = [p.shape[0] if isinstance(p, torch.Tensor) and p.dim() == 1 else -1 for p in parts]
        all_pairs = len(sizes) == 4 and min(sizes) >= 0 and sizes[0] + sizes[2] == rows * refs - rows and refs >= rows
        if not all_pairs or ref_self_index is not None:
            raise ValueError(
                "HydraLoss takes its positives from class pairs and does not accept a miner's indices_tuple; "
                "pass labels (and optionally pair_labels). Across processes use pml's "
                "DistributedLossWrapper(loss) (efficient=False), DistributedLossWrapper(loss, efficient=True) "
                "without a miner, or rankssl.losses.HydraLoss(gather_distributed=True)."
            )
        return torch.arange(rows, device=embeddings.device)

    def _checked_ref_self_index(self, ref_self_index, embeddings, ref_emb):
        rows = ref_emb.shape[0] if isinstance(ref_emb, torch.Tensor) else -1
        message = (
            f"ref_self_index must be an integer tensor of shape ({embeddings.shape[0]},) with rows of "
            f"ref_emb (0 <= index < {rows}), and needs ref_emb."
        )
        if (
            ref_emb is None
            or not isinstance(ref_self_index, torch.Tensor)
            or ref_self_index.is_floating_point()
            or ref_self_index.shape != embeddings.shape[:1]
        ):
            raise ValueError(message)
        defer_or_raise(((ref_self_index < 0) | (ref_self_index >= rows)).any(), message, ref_self_index)
        return ref_self_index

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        """pml's hook: the loss dictionary with drawn partners and no ``ref_self_index``."""
        return self._loss_dict(embeddings, labels, ref_emb, ref_labels, None, None)

    def _loss_dict(self, embeddings, labels, ref_emb, ref_labels, pair_labels, ref_self_index):
        """pml's loss dictionary for (B, D) ``embeddings`` against (N, D) ``ref_emb`` (the batch
        itself when it *is* ``embeddings``), with optional (B,) ``pair_labels`` and ``ref_self_index``."""
        same_labels = ref_labels is labels  # pml's default references: the batch itself, checked once
        labels = check_class_labels(labels, self.num_classes, length=embeddings.shape[0])
        ref_labels = (
            labels
            if same_labels
            else check_class_labels(ref_labels, self.num_classes, length=ref_emb.shape[0], name="ref_labels")
        )
        if embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"Embeddings have dim {embeddings.shape[1]} but the feature filter gates "
                f"{self.embedding_size} dimensions."
            )
        device = embeddings.device
        self_index, invalid = self._own_rows(embeddings.shape[0], device) if ref_emb is embeddings else (None, None)
        if self_index is None and ref_self_index is not None:
            self_index = ref_self_index.to(device)
        pair_labels, admissible = self._partners(labels, labels, ref_labels, self_index, pair_labels)
        gates = self.feature_filter.gates(labels, pair_labels)
        if self_index is not None and invalid is None:
            invalid = torch.arange(ref_emb.shape[0], device=device)[None, :] == self_index[:, None]
        if admissible is not None:
            invalid = ~admissible[:, None] if invalid is None else invalid | ~admissible[:, None]
        keys = None if ref_emb is embeddings else ref_emb
        terms, positive = _masked_terms(embeddings, keys, gates, labels, pair_labels, ref_labels, invalid, self.scale)
        loss_dict = {"loss": self._loss_entry(terms, positive)}
        if self.gate_penalty > 0:
            loss_dict["gate_penalty"] = {
                "losses": self._gate_penalty(gates),
                "indices": None,
                "reduction_type": "already_reduced",
            }
        return loss_dict

    def _own_rows(self, rows: int, device) -> tuple:
        """``(arange(rows), eye(rows, dtype=bool))``: each anchor's own row when the references are
        the batch. Depends on the shape only, so it is built once per shape and device and kept."""
        key = (rows, str(device))
        cache = self.__dict__.setdefault("_own_rows_cache", {})  # modules saved before it was made in __init__
        if key not in cache:
            index = torch.arange(rows, device=device)
            cache.clear()
            cache[key] = (index, index[None, :] == index[:, None])
        return cache[key]

    def _loss_entry(self, terms: torch.Tensor, positive: torch.Tensor) -> dict:
        if type(self.reducer) is MeanReducer:  # pml's mean, computed here without a host sync
            if self.reduction == "pair_mean":
                loss = terms.sum() / positive.sum().clamp_min(1)
            else:
                counts = positive.sum(dim=1)
                loss = (terms.sum(dim=1) / counts.clamp_min(1)).sum() / (counts > 0).sum().clamp_min(1)
            return {"losses": loss, "indices": None, "reduction_type": "already_reduced"}
        if self.reduction == "pair_mean":
            anchors, positives = torch.nonzero(positive, as_tuple=True)
            if not len(anchors):
                return self.zero_loss()
            return {"losses": terms[anchors, positives], "indices": (anchors, positives), "reduction_type": "pos_pair"}
        counts = positive.sum(dim=1)
        anchors = torch.nonzero(counts > 0).squeeze(1)
        if not len(anchors):
            return self.zero_loss()
        losses = terms.sum(dim=1)[anchors] / counts[anchors]
        return {"losses": losses, "indices": anchors, "reduction_type": "element"}
