"""Hydra as a pytorch-metric-learning loss.

Wu, Kittler, Awais, Atito, Mo, Feng, "Rethinking Positive Pairs in Contrastive Learning"
(arXiv:2410.18200). The objective of :mod:`rankssl.losses.hydra` with pml's calling
conventions: ``loss_fn(embeddings, labels, ref_emb=..., ref_labels=...)``, reducers and
embedding regularizers.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import BaseMetricLossFunction

from rankssl.losses.feature_filter import FeatureFilter, check_class_labels
from rankssl.losses.hydra import (
    check_hydra_settings,
    check_variant_settings,
    checked_class_pair_weight,
    feature_filter_for,
    hydra_pair_loss,
    hydra_pair_term_matrix,
)
from rankssl.losses.pair_sampling import permutation_pair_labels, sample_pair_labels
from rankssl.ops.validation import check_float
from rankssl.pml._checks import CheckedInputsMixin

__all__ = ["HydraLoss"]


class HydraLoss(CheckedInputsMixin, BaseMetricLossFunction):
    """Hydra loss for labelled embeddings, as a pml ``BaseMetricLossFunction``.

    Every row of ``embeddings`` is an anchor of class y1 = ``labels[i]`` with a partner
    class y2 (drawn from ``ref_labels`` by ``pairing``, or passed as ``pair_labels``).
    Its positives are the reference items of class y2 (itself excluded when
    ``ref_emb`` is not given), its negatives those of neither class; all are compared
    in the dimensions opened by the learned gate g(y1, y2). See
    :class:`rankssl.losses.HydraLoss` for the formula.

    **This loss has parameters** (the :class:`~rankssl.models.FeatureFilter`), unlike
    most pml losses: give the optimizer ``loss_fn.parameters()`` too, as for pml's
    ``ArcFaceLoss``. The similarity is Hydra's own gated cosine, so ``distance`` must be
    :class:`~pytorch_metric_learning.distances.CosineSimilarity` (the default).
    ``indices_tuple`` (miners) is not supported: positives come from class pairs.

    **Pairs differ from pml's same-label pairs.** An anchor's positives are the items of
    its *partner* class, not of its own, so a batch of all-distinct labels still gives a
    loss (each anchor has one positive), while a batch of a single class has no partner
    class: it gives pml's zero loss (which back-propagates), as any pml loss does for a
    batch without pairs.

    With ``reduction="anchor_mean"`` (default) the loss hands pml one loss per anchor
    that has a positive (its mean over its positives; ``"element"`` losses); with
    ``reduction="pair_mean"`` (the authors') one loss per (anchor, positive) pair
    (``"pos_pair"`` losses), so pml's default ``MeanReducer`` gives the authors' sum over
    pairs divided by the number of pairs, and any pml reducer sees the pairs. With
    ``gate_penalty > 0`` a second sub-loss ``"gate_penalty"`` = ``gate_penalty * mean(g * (1 - g))``
    is added, already reduced.

    **The authors' SimLAP mode** (``erow/hydra`` ``cl/losses.py``) in pml's terms: build
    ``HydraLoss(C, D, reduction="pair_mean", pair_draw="permutation")``, draw one
    ``pair_labels`` per batch and average ``loss_fn(view1, labels, ref_emb=view2,
    ref_labels=labels, pair_labels=p)`` and the same with the views swapped; this equals
    :class:`rankssl.losses.HydraLoss` with ``SIMLAP_SETTINGS`` (tested). The v1 code's
    filter-only warm-up needs the training epoch, which pml losses do not see: detach the
    embeddings yourself for those epochs.

    Args:
        num_classes: number of classes C.
        embedding_size: D, the embedding width the gate covers.
        temperature, gate_mode, pairing, embed_dim, hidden_dim, gate_penalty,
        class_pair_weight, seed, feature_filter, learn_scale: as for
        :class:`rankssl.losses.HydraLoss`.
        reduction: ``"anchor_mean"`` (default) or ``"pair_mean"`` (authors), see above.
        pair_draw: ``"per_row"`` (default: a partner drawn for every row from
            ``ref_labels``) or ``"permutation"`` (authors: the class of the row a random
            permutation of the batch maps each row to).
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
        reduction: str = "anchor_mean",
        pair_draw: str = "per_row",
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
        check_hydra_settings(temperature, gate_penalty, pairing)
        check_variant_settings("all", reduction, pair_draw, pairing, 0)
        self.reduction, self.pair_draw, self.learn_scale = reduction, pair_draw, bool(learn_scale)
        if self.learn_scale:  # exp(s), s initialised at log(1 / temperature) (authors' v1)
            self.log_scale = torch.nn.Parameter(torch.tensor(-math.log(float(temperature))))
        self.feature_filter = feature_filter_for(
            num_classes, embedding_size, embed_dim, hidden_dim, gate_mode, feature_filter
        )
        self.class_pair_weight = checked_class_pair_weight(class_pair_weight, num_classes)
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.temperature = float(temperature)
        self.pairing = pairing
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self._pair_labels: Optional[torch.Tensor] = None
        self._ref_self_index: Optional[torch.Tensor] = None
        self.add_to_recordable_attributes(list_of_names=["temperature"], is_stat=False)

    @property
    def scale(self) -> Union[float, torch.Tensor]:
        """The logit scale: 1 / temperature, or the learned exp(s)."""
        return self.log_scale.exp() if self.learn_scale else 1.0 / self.temperature

    def get_default_distance(self) -> CosineSimilarity:
        return CosineSimilarity()

    def _sub_loss_names(self):
        return ["loss", "gate_penalty"] if self.gate_penalty > 0 else ["loss"]

    def forward(
        self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None, pair_labels=None,
        ref_self_index=None,
    ):
        """pml's ``forward`` plus optional (batch_size,) ``pair_labels`` (y2 per anchor) and
        ``ref_self_index`` (row of each anchor's own copy in ``ref_emb``, e.g. in a memory
        bank: never its own positive or partner)."""
        if indices_tuple is not None:
            raise ValueError(
                "HydraLoss takes its positives from class pairs and does not accept indices_tuple "
                "(miners); pass labels (and optionally pair_labels)."
            )
        if labels is None:
            check_class_labels(None, self.num_classes)
        if ref_emb is not None and ref_labels is None:
            raise ValueError("HydraLoss needs ref_labels whenever ref_emb is given.")
        if ref_self_index is not None:
            rows = ref_emb.shape[0] if isinstance(ref_emb, torch.Tensor) else -1
            if (
                ref_emb is None or not isinstance(ref_self_index, torch.Tensor)
                or ref_self_index.is_floating_point() or ref_self_index.shape != embeddings.shape[:1]
                or bool((ref_self_index < 0).any()) or bool((ref_self_index >= rows).any())
            ):
                raise ValueError(
                    f"ref_self_index must be an integer tensor of shape ({embeddings.shape[0]},) with rows of "
                    f"ref_emb (0 <= index < {rows}), and needs ref_emb."
                )
        self._pair_labels, self._ref_self_index = pair_labels, ref_self_index
        try:
            return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        finally:
            self._pair_labels = self._ref_self_index = None

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        labels = check_class_labels(labels, self.num_classes, length=embeddings.shape[0])
        ref_labels = check_class_labels(ref_labels, self.num_classes, length=ref_emb.shape[0], name="ref_labels")
        if embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"Embeddings have dim {embeddings.shape[1]} but the feature filter gates "
                f"{self.embedding_size} dimensions."
            )
        if torch.unique(torch.cat((labels, ref_labels))).numel() < 2:
            # No partner class, so no pair: pml's zero loss, which still back-propagates.
            return self.zero_losses()
        self_index = torch.arange(embeddings.shape[0], device=embeddings.device) if ref_emb is embeddings else None
        if self_index is None and self._ref_self_index is not None:
            self_index = self._ref_self_index.to(embeddings.device)
        pair_labels = self._pair_labels
        if pair_labels is None and self.pair_draw == "permutation" and self.pairing == "arbitrary":
            pair_labels = permutation_pair_labels(labels, self._generator)
        elif pair_labels is None:
            pair_labels = sample_pair_labels(
                labels, self.pairing, ref_labels, self_index, self.class_pair_weight, self._generator
            )
        else:
            pair_labels = check_class_labels(pair_labels, self.num_classes, length=embeddings.shape[0], name="pair_labels")
            pair_labels = pair_labels.to(embeddings.device)
        gates = self.feature_filter(labels, pair_labels)
        core_args = (embeddings, ref_emb, gates, labels, pair_labels, ref_labels, self_index, self.scale)
        if self.reduction == "pair_mean":
            terms, positive = hydra_pair_term_matrix(*core_args)
            anchors, positives = torch.nonzero(positive, as_tuple=True)
            loss_dict = {"loss": {"losses": terms[anchors, positives], "indices": (anchors, positives),
                                  "reduction_type": "pos_pair"}}
        else:
            losses, has_positive = hydra_pair_loss(*core_args)
            anchors = torch.nonzero(has_positive).squeeze(1)
            loss_dict = {"loss": {"losses": losses[anchors], "indices": anchors, "reduction_type": "element"}}
        if not len(anchors):
            loss_dict = {"loss": self.zero_loss()}
        if self.gate_penalty > 0:
            loss_dict["gate_penalty"] = {
                "losses": self.gate_penalty * (gates * (1 - gates)).mean(),
                "indices": None,
                "reduction_type": "already_reduced",
            }
        return loss_dict
