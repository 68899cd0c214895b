"""GroCo as a pytorch-metric-learning loss.

Shvetsova et al., "Learning by Sorting: Self-supervised Learning with Group Ordering
Constraints", ICCV 2023. The group-ordering objective of :mod:`rankssl.losses.groco`
with positives and negatives defined by labels (or a miner's ``indices_tuple``) instead
of views, so it goes wherever a pytorch-metric-learning loss goes.
"""

from __future__ import annotations

from typing import Optional

import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from rankssl.losses.groco import check_gradient_scale, group_ordering_loss, scale_gradient
from rankssl.ops.networks import check_network
from rankssl.ops.relaxations import check_relaxation
from rankssl.ops.validation import check_optional_positive_int, check_positive_int
from rankssl.pml._checks import CheckedInputsMixin
from rankssl.pml.distances import ScaleSafeCosineSimilarity

__all__ = ["GroCoLoss"]


class GroCoLoss(CheckedInputsMixin, BaseMetricLossFunction):
    """Group Ordering Constraints loss for labelled (or mined) pairs.

    For each anchor (a row of ``embeddings``), its positives are the reference items
    that share its label (or the positive pairs of ``indices_tuple``), its negatives the
    items with another label (or the negative pairs). The ``n_negatives`` hardest
    negatives (highest score) and all positives, or the ``n_positives`` hardest (lowest
    score), are sorted by a relaxed sorting network and scored with
    :func:`rankssl.losses.group_ordering_loss`.

    Anchors without a positive or without a negative get no loss and are left out of
    the reduction. An anchor with fewer than ``n_negatives`` negatives uses all that it
    has. Scores come from ``distance`` (default :class:`CosineSimilarity`); a distance
    that is not inverted (smaller = closer, e.g. ``LpDistance``) is negated into a
    score. Reducers and embedding regularizers work as for pml's own losses; the
    default reducer averages over anchors.

    Args:
        n_negatives: K, hardest negatives kept per anchor.
        n_positives: keep only the P hardest positives; ``None`` keeps all of them.
        steepness, sorting_network, distribution, art_lambda: the relaxed sorting
            network (see :func:`rankssl.ops.soft_sort`).
        stop_gradient: score against ``ref_emb.detach()`` so that the gradient flows
            through the anchors only, as in the paper.
        gradient_scale: multiplies the gradient (not the loss value); 1 is the
            authors' loss. GroCo's gradients are much smaller than those of pml's
            contrastive losses: at their usual learning rates use about 50 (see
            :class:`rankssl.losses.GroCoLoss`).
        **kwargs: ``distance``, ``reducer``, ``embedding_regularizer`` ... as for any
            pml loss.

    Example:
        >>> import torch
        >>> from rankssl.pml import GroCoLoss
        >>> loss_fn = GroCoLoss(n_negatives=4)
        >>> embeddings = torch.randn(12, 8, requires_grad=True)
        >>> labels = torch.arange(6).repeat(2)
        >>> loss = loss_fn(embeddings, labels)
        >>> loss.backward()
    """

    def __init__(
        self,
        n_negatives: int = 10,
        n_positives: Optional[int] = None,
        steepness: float = 1.0,
        sorting_network: str = "odd_even",
        distribution: str = "cauchy",
        art_lambda: float = 0.25,
        stop_gradient: bool = True,
        gradient_scale: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_positive_int(n_negatives, "n_negatives")
        check_optional_positive_int(n_positives, "n_positives")
        check_network(sorting_network)
        check_relaxation(distribution, steepness, art_lambda)
        self.n_negatives = n_negatives
        self.n_positives = n_positives
        self.sort_kwargs = dict(
            sorting_network=sorting_network,
            distribution=distribution,
            steepness=steepness,
            art_lambda=art_lambda,
        )
        self.stop_gradient = stop_gradient
        self.gradient_scale = check_gradient_scale(gradient_scale)
        self.add_to_recordable_attributes(list_of_names=["n_negatives"], is_stat=False)

    def get_default_distance(self) -> CosineSimilarity:
        return ScaleSafeCosineSimilarity()

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.labels_or_indices_tuple_required(labels, indices_tuple)
        # Settings may have been changed after construction: re-checked (host-side, cheap).
        check_positive_int(self.n_negatives, "n_negatives")
        check_optional_positive_int(self.n_positives, "n_positives")
        check_network(self.sort_kwargs["sorting_network"])
        check_relaxation(self.sort_kwargs["distribution"], self.sort_kwargs["steepness"], self.sort_kwargs["art_lambda"])
        check_gradient_scale(self.gradient_scale)
        keys = ref_emb.detach() if self.stop_gradient else ref_emb
        scores = self.distance(embeddings, keys).float()
        if not self.distance.is_inverted:
            scores = -scores
        a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        is_positive = torch.zeros_like(scores, dtype=torch.bool)
        is_negative = torch.zeros_like(scores, dtype=torch.bool)
        is_positive[a1, p] = True
        is_negative[a2, n] = True

        num_pos = is_positive.sum(1)
        if self.n_positives is not None:
            num_pos = num_pos.clamp(max=self.n_positives)
        num_neg = is_negative.sum(1).clamp(max=self.n_negatives)
        valid = (num_pos > 0) & (num_neg > 0)
        if not valid.any():
            return self.zero_losses()

        # Hardest first: positives by ascending score, negatives by descending score.
        positives = scores.masked_fill(~is_positive, float("inf")).sort(dim=1).values
        negatives = scores.masked_fill(~is_negative, float("-inf")).sort(dim=1, descending=True).values
        anchor_losses = torch.zeros(scores.shape[0], dtype=scores.dtype, device=scores.device)
        group_sizes = torch.stack((num_pos, num_neg), dim=1)[valid]
        for pos_count, neg_count in torch.unique(group_sizes, dim=0).tolist():
            rows = torch.nonzero(valid & (num_pos == pos_count) & (num_neg == neg_count)).squeeze(1)
            anchor_losses[rows] = group_ordering_loss(
                positives[rows, :pos_count], negatives[rows, :neg_count], **self.sort_kwargs
            )
        anchors = torch.nonzero(valid).squeeze(1)
        return {
            "loss": {
                "losses": scale_gradient(anchor_losses[anchors], self.gradient_scale),
                "indices": anchors,
                "reduction_type": "element",
            }
        }
