"""GroCo as a pytorch-metric-learning loss.

Shvetsova et al., "Learning by Sorting: Self-supervised Learning with Group Ordering
Constraints", ICCV 2023. The group-ordering objective of :mod:`rankssl.losses.groco`
with positives and negatives defined by labels (or a miner's ``indices_tuple``) instead
of views, so it goes wherever a pytorch-metric-learning loss goes.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from rankssl.losses.groco import _ordered_group_ordering_loss, check_gradient_scale, scale_gradient
from rankssl.ops.networks import check_network
from rankssl.ops.relaxations import check_relaxation
from rankssl.ops.validation import (
    check_finite,
    check_flag,
    check_optional_positive_int,
    check_positive_int,
    checks_lazily,
    defer_check,
)
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
        uniform_groups: promise that every anchor has at least ``n_positives``
            positives and at least ``n_negatives`` negatives (e.g. two views of each
            image, labels unique per image, a batch of more than ``n_negatives + 1``
            images; needs ``n_positives``). All anchors then share one sorting network
            of ``n_positives + n_negatives`` inputs, and the loss never reads the group
            sizes on the host: no host sync on the GPU, where the default groups the
            anchors by their (P, K) from a copy of the counts. The values are the
            default's. A batch that breaks the promise raises ``ValueError`` (at once
            for CPU tensors, lazily for CUDA tensors: see ``RANKSSL_VALIDATE``).
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
        uniform_groups: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_positive_int(n_negatives, "n_negatives")
        check_optional_positive_int(n_positives, "n_positives")
        _check_uniform_groups(uniform_groups, n_positives)
        check_network(sorting_network)
        check_relaxation(distribution, steepness, art_lambda)
        self.n_negatives = n_negatives
        self.n_positives = n_positives
        self.sort_kwargs: Dict[str, Any] = dict(
            sorting_network=sorting_network,
            distribution=distribution,
            steepness=steepness,
            art_lambda=art_lambda,
        )
        self.stop_gradient = stop_gradient
        self.gradient_scale = check_gradient_scale(gradient_scale)
        self.uniform_groups = uniform_groups
        self.add_to_recordable_attributes(list_of_names=["n_negatives"], is_stat=False)

    def get_default_distance(self) -> CosineSimilarity:
        return ScaleSafeCosineSimilarity()

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.labels_or_indices_tuple_required(labels, indices_tuple)
        # Settings may have been changed after construction: re-checked (host-side, cheap).
        check_positive_int(self.n_negatives, "n_negatives")
        check_optional_positive_int(self.n_positives, "n_positives")
        check_network(self.sort_kwargs["sorting_network"])
        check_relaxation(
            self.sort_kwargs["distribution"], self.sort_kwargs["steepness"], self.sort_kwargs["art_lambda"]
        )
        check_gradient_scale(self.gradient_scale)
        _check_uniform_groups(self.uniform_groups, self.n_positives)
        keys = ref_emb.detach() if self.stop_gradient else ref_emb
        scores = self.distance(embeddings, keys).float()
        if not self.distance.is_inverted:
            scores = -scores
        is_positive, is_negative = self._pair_masks(scores, labels, indices_tuple, ref_labels)
        if self.uniform_groups:
            return self._uniform_group_loss(scores, is_positive, is_negative)

        num_pos = is_positive.sum(1)
        if self.n_positives is not None:
            num_pos = num_pos.clamp(max=self.n_positives)
        num_neg = is_negative.sum(1).clamp(max=self.n_negatives)
        # Anchors are grouped by (P, K), since each size has its own sorting network: the
        # one host sync is the copy of the sorted group keys (-1: no positive or no negative).
        key = torch.where((num_pos > 0) & (num_neg > 0), num_pos * (self.n_negatives + 1) + num_neg, -1)
        sorted_keys, order = key.sort(stable=True)
        groups = _runs(sorted_keys.tolist())
        if not groups:
            return self.zero_losses()

        # Hardest first, each group ascending: the first P of the positives sorted
        # ascending, the last K of the negatives sorted ascending.
        positives = scores.masked_fill(~is_positive, float("inf")).sort(dim=1).values
        negatives = scores.masked_fill(~is_negative, float("-inf")).sort(dim=1).values
        check_finite([("scores", scores)], "anchor")
        num_ref = scores.shape[1]
        losses = []
        for group_key, begin, end in groups:
            pos_count, neg_count = divmod(group_key, self.n_negatives + 1)
            rows = order[begin:end]
            if end - begin == scores.shape[0]:  # every anchor: no gather
                pos, neg = positives[:, :pos_count], negatives[:, num_ref - neg_count :]
            else:
                pos, neg = positives[rows, :pos_count], negatives[rows, num_ref - neg_count :]
            losses.append(_ordered_group_ordering_loss(neg, pos, **self.sort_kwargs))
        anchors = order[groups[0][1] :]
        return {
            "loss": {
                "losses": scale_gradient(losses[0] if len(losses) == 1 else torch.cat(losses), self.gradient_scale),
                "indices": anchors,
                "reduction_type": "element",
            }
        }

    def _with_uniform_groups(self, n_positives: int, n_negatives: int) -> GroCoLoss:
        """This loss with ``uniform_groups=True`` for a batch whose every anchor is known to
        have ``n_positives`` positives and at least ``n_negatives`` negatives, as in
        :class:`rankssl.pml.SelfSupervisedLoss`: the same values without the host sync of
        the default grouping. A shallow copy: distance, reducer and regularizers are shared.
        """
        twin = copy.copy(self)
        twin.n_positives, twin.n_negatives, twin.uniform_groups = n_positives, n_negatives, True
        return twin

    def _uniform_group_loss(self, scores, is_positive, is_negative):
        """``compute_loss`` for ``uniform_groups``: every anchor in one group of
        (n_positives, n_negatives), the promise checked on the device."""
        num_pos, num_neg = self.n_positives, self.n_negatives
        short = (is_positive.sum(1) < num_pos) | (is_negative.sum(1) < num_neg)
        message = (
            f"uniform_groups=True promises at least n_positives={num_pos} positives and n_negatives={num_neg} "
            "negatives for every anchor, and some anchor has fewer; use uniform_groups=False (the default), "
            "which groups anchors by their counts."
        )
        if checks_lazily(scores):
            defer_check(short.any(), message)
        elif bool(short.any()):
            raise ValueError(message)
        # As the default path: the first P of the positives sorted ascending, the last
        # K of the negatives sorted ascending.
        positives = scores.masked_fill(~is_positive, float("inf")).sort(dim=1).values[:, :num_pos]
        negatives = scores.masked_fill(~is_negative, float("-inf")).sort(dim=1).values[:, scores.shape[1] - num_neg :]
        check_finite([("scores", scores)], "anchor")
        losses = _ordered_group_ordering_loss(negatives, positives, **self.sort_kwargs)
        return {
            "loss": {
                "losses": scale_gradient(losses, self.gradient_scale),
                "indices": torch.arange(scores.shape[0], device=scores.device),
                "reduction_type": "element",
            }
        }

    @staticmethod
    def _pair_masks(scores, labels, indices_tuple, ref_labels):
        """(A, N) positive and negative masks; from labels without a host sync."""
        if indices_tuple is None:
            # pml's get_all_pairs_indices as masks (its torch.where would be a host sync).
            is_positive = labels[:, None] == ref_labels[None, :]
            is_negative = ~is_positive
            if ref_labels is labels:
                rows = torch.arange(labels.shape[0], device=labels.device)
                is_positive = is_positive & (rows[:, None] != rows[None, :])
            return is_positive, is_negative
        a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        is_positive = torch.zeros_like(scores, dtype=torch.bool)
        is_negative = torch.zeros_like(scores, dtype=torch.bool)
        is_positive[a1, p] = True
        is_negative[a2, n] = True
        return is_positive, is_negative


def _check_uniform_groups(uniform_groups: object, n_positives: Optional[int]) -> None:
    if check_flag(uniform_groups, "uniform_groups") and n_positives is None:
        raise ValueError(
            "uniform_groups=True needs n_positives (the positives every anchor has at least, e.g. 1 for two views)."
        )


def _runs(sorted_keys: List[int]) -> List[Tuple[int, int, int]]:
    """``(key, begin, end)`` of each run of equal non-negative keys in a sorted list.

    >>> _runs([-1, 3, 3, 7])
    [(3, 1, 3), (7, 3, 4)]
    """
    runs: List[Tuple[int, int, int]] = []
    for index, key in enumerate(sorted_keys):
        if key < 0:
            continue
        if runs and runs[-1][0] == key:
            runs[-1] = (key, runs[-1][1], index + 1)
        else:
            runs.append((key, index, index + 1))
    return runs
