"""GroCo: Group Ordering Constraints.

Shvetsova, Petersen, Kukleva, Schiele, Kuehne, "Learning by Sorting: Self-supervised
Learning with Group Ordering Constraints", ICCV 2023 (arXiv:2301.02009).

For every anchor, the scores of its K hardest negatives and of its P positives are
pre-ordered as ``[negatives ascending, positives ascending]``, so the correct ascending
order is the identity, and sorted with a relaxed sorting network. The loss asks each
input to land in its own group of ranks: positives in the top P ranks, negatives in
the bottom K. Only group membership is supervised, never the order inside a group.
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from rankssl.losses._views import Views, as_view_list, views_from_call
from rankssl.ops import dist, fused
from rankssl.ops.networks import check_network, get_network
from rankssl.ops.relaxations import check_relaxation
from rankssl.ops.sorting import soft_permutation_matmul
from rankssl.ops.validation import (
    check_finite,
    check_optional_positive_int,
    check_positive_int,
    check_tensor,
    safe_normalize,
)

__all__ = ["GroCoLoss", "group_ordering_loss", "check_gradient_scale", "scale_gradient"]


def check_gradient_scale(gradient_scale: float) -> float:
    """``gradient_scale`` as a float; ``ValueError`` unless it is a finite number > 0."""
    if (
        isinstance(gradient_scale, bool)
        or not isinstance(gradient_scale, (int, float))
        or not (0.0 < float(gradient_scale) < float("inf"))
    ):
        raise ValueError(f"gradient_scale must be a finite number > 0, got {gradient_scale!r}.")
    return float(gradient_scale)


def scale_gradient(loss: torch.Tensor, scale: float) -> torch.Tensor:
    """``loss`` unchanged in value, its gradient multiplied by ``scale``.

    ``loss.detach() + scale * (loss - loss.detach())``: the second term is exactly zero
    in the forward pass and carries ``scale`` times the gradient in the backward pass.

    Example:
        >>> import torch
        >>> x = torch.tensor(2.0, requires_grad=True)
        >>> y = scale_gradient(x * x, 10.0)
        >>> y.backward()
        >>> float(y.detach()), float(x.grad)
        (4.0, 40.0)
    """
    if scale == 1.0:
        return loss
    frozen = loss.detach()
    return frozen + scale * (loss - frozen)


def group_ordering_loss(
    positive_scores: torch.Tensor,
    negative_scores: torch.Tensor,
    sorting_network: str = "odd_even",
    distribution: str = "cauchy",
    steepness: float = 1.0,
    art_lambda: float = 0.25,
) -> torch.Tensor:
    """Per-anchor GroCo loss from similarity scores (higher = more similar).

    This is the functional core that the lightly-style and the pytorch-metric-learning
    losses share.

    Args:
        positive_scores: (A, P) scores of each anchor to its P >= 1 positives.
        negative_scores: (A, K) scores of each anchor to its K >= 1 negatives.
        sorting_network, distribution, steepness, art_lambda: the relaxed sorting
            network (see :func:`rankssl.ops.soft_sort`).

    Returns:
        (A,) loss per anchor: the binary cross-entropy between the mass each input puts
        on the positive block of ranks and its group (1 for positives, 0 for
        negatives), averaged with the same term for the negative block, as in the
        authors' code, and over the P + K inputs. Scores are computed in float32.
    """
    check_tensor(positive_scores, "positive_scores", dims=(2,), shape_hint="(A, P)")
    check_tensor(negative_scores, "negative_scores", dims=(2,), shape_hint="(A, K)")
    if positive_scores.shape[0] != negative_scores.shape[0]:
        raise ValueError(
            f"positive_scores has {positive_scores.shape[0]} anchors but negative_scores "
            f"has {negative_scores.shape[0]}."
        )
    num_neg, num_pos = negative_scores.shape[1], positive_scores.shape[1]
    if num_neg < 1 or num_pos < 1:
        raise ValueError(f"Every anchor needs at least one positive and one negative, got P={num_pos}, K={num_neg}.")
    check_finite([("positive_scores", positive_scores), ("negative_scores", negative_scores)], "anchor")
    return _ordered_group_ordering_loss(
        negative_scores.float().sort(dim=1).values,
        positive_scores.float().sort(dim=1).values,
        sorting_network,
        distribution,
        steepness,
        art_lambda,
    )


def _ordered_group_ordering_loss(
    negatives_ascending: torch.Tensor,
    positives_ascending: torch.Tensor,
    sorting_network: str,
    distribution: str,
    steepness: float,
    art_lambda: float,
) -> torch.Tensor:
    """:func:`group_ordering_loss` on checked float32 scores already in ascending order
    within each group: (A, K) negatives and (A, P) positives. :class:`GroCoLoss` calls it
    directly, because its negatives come sorted from ``topk`` and its scores come from
    checked views, so sorting and checking them again would only cost time. The relaxation
    is checked on every call (cheap), since a loss's settings may be changed after construction."""
    check_relaxation(distribution, steepness, art_lambda)
    scores = torch.cat((negatives_ascending, positives_ascending), dim=1)
    num_neg = negatives_ascending.shape[1]
    n = scores.shape[1]
    # One fused pass (value and gradient) where the CPU kernels are available.
    layers = get_network(sorting_network, n, scores.device)
    fused_loss = fused.group_ordering_mass_loss(scores, num_neg, layers, distribution, steepness, art_lambda)
    if fused_loss is not None:
        return fused_loss
    in_positive_ranks = torch.zeros(n, 2, dtype=scores.dtype, device=scores.device)
    in_positive_ranks[num_neg:, 0] = 1.0
    in_positive_ranks[:num_neg, 1] = 1.0
    # Column 0: mass of each input on the positive block; column 1: on the negative one.
    mass = soft_permutation_matmul(
        scores, in_positive_ranks, sorting_network, distribution, steepness, art_lambda
    ).clamp(0.0, 1.0)
    is_positive = torch.zeros(n, dtype=scores.dtype, device=scores.device)
    is_positive[num_neg:] = 1.0
    is_positive = is_positive.expand_as(mass[..., 0])
    loss_positive_block = F.binary_cross_entropy(mass[..., 0], is_positive, reduction="none")
    loss_negative_block = F.binary_cross_entropy(mass[..., 1], 1.0 - is_positive, reduction="none")
    return ((loss_positive_block + loss_negative_block) / 2).mean(dim=1)


_OTHER_VIEWS: dict = {}


def _other_views(num_views: int, device: torch.device) -> torch.Tensor:
    """(V, V - 1) int64: row ``a`` lists the views other than ``a``, ascending. Cached."""
    key = (num_views, str(device))
    table = _OTHER_VIEWS.get(key)
    if table is None:
        table = torch.tensor([[p for p in range(num_views) if p != a] for a in range(num_views)], device=device)
        if torch.compiler.is_compiling():
            return table
        _OTHER_VIEWS[key] = table
    return table


class GroCoLoss(nn.Module):
    """Group Ordering Constraints loss (Shvetsova et al., ICCV 2023), lightly-style.

    Every view takes a turn as the anchor. Its positives are the same image's other
    positive (global) views; its negatives are the other images of the batch under the
    anchor's own view (gathered over processes with ``gather_distributed``), of which
    the ``n_negatives`` most similar are kept. Scores are cosine similarities computed
    in float32. The loss is the mean over all anchors of :func:`group_ordering_loss`.

    Args:
        n_negatives: K, the number of hardest negatives per anchor (10 in every
            published configuration). A batch with K or fewer images (over all
            processes) uses all B - 1 other images, as :class:`rankssl.pml.GroCoLoss`
            does for an anchor with fewer than K negatives (one rule for both).
        steepness: inverse temperature of the relaxed comparators (paper: 1).
        sorting_network: ``"odd_even"`` (paper), ``"bitonic"`` or ``"bitonic_mirrored"``.
        distribution: comparator relaxation (paper: ``"cauchy"``).
        art_lambda: exponent of the ``logistic_phi`` relaxation.
        stop_gradient: detach positives and negatives so that the gradient flows
            through the anchor only (paper: True).
        n_positive_views: how many leading views are global crops that may serve as
            positives (multi-crop). ``None``: all views. Views after them are anchors
            only, with every global view as positive.
        gather_distributed: take negatives from all processes, with gradients.
        gradient_scale: multiplies the loss's gradient (not its value). The default 1
            is the authors' loss, which they train with learning rate 24 at batch 1024:
            its gradients are 15-75x smaller than NT-Xent's. To swap GroCo in for
            lightly's ``NTXentLoss`` at lightly's usual settings (SGD, lr 0.06), use
            ``gradient_scale=50`` (or raise the learning rate about 50x). With SGD this
            is the same as multiplying the learning rate (up to weight decay). Judge it
            by kNN, not by the loss, which falls a few percent with or without it
            (``benchmarks/lightly_swap.py``).

    Shapes:
        ``forward(*views)``, ``forward([view0, view1, ...])`` or lightly's
        ``forward(out0=view0, out1=view1)`` with V >= 2 views of shape (B, D); returns a
        scalar. Settings changed after construction are re-checked on every call.

    Note:
        The loss's gradients are small (the paper trains with learning rate 24 at batch
        1024). On CPUs, back-propagating them through a network produces subnormal
        floats that slow training about tenfold; call ``torch.set_flush_denormal(True)``
        at the start of your program (before torch starts its threads), as
        ``rankssl.mm`` does.

    Example:
        >>> import torch
        >>> from rankssl.losses import GroCoLoss
        >>> loss_fn = GroCoLoss(n_negatives=4)
        >>> out0, out1 = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = loss_fn(out0, out1)
        >>> loss.shape
        torch.Size([])
    """

    def __init__(
        self,
        n_negatives: int = 10,
        steepness: float = 1.0,
        sorting_network: str = "odd_even",
        distribution: str = "cauchy",
        art_lambda: float = 0.25,
        stop_gradient: bool = True,
        n_positive_views: Optional[int] = None,
        gather_distributed: bool = False,
        gradient_scale: float = 1.0,
    ) -> None:
        super().__init__()
        check_positive_int(n_negatives, "n_negatives")
        # A global anchor needs another global view as positive.
        check_optional_positive_int(n_positive_views, "n_positive_views", minimum=2)
        check_network(sorting_network)
        check_relaxation(distribution, steepness, art_lambda)
        self.n_negatives = n_negatives
        self.steepness = steepness
        self.sorting_network = sorting_network
        self.distribution = distribution
        self.art_lambda = art_lambda
        self.stop_gradient = stop_gradient
        self.n_positive_views = n_positive_views
        dist.check_gather_distributed(gather_distributed)
        self.gather_distributed = gather_distributed
        self.gradient_scale = check_gradient_scale(gradient_scale)

    def _check_settings(self) -> None:
        """Re-check the settings on every call (cheap, host-side): attributes may have been
        changed after construction (``loss.n_negatives = 0``)."""
        check_positive_int(self.n_negatives, "n_negatives")
        check_optional_positive_int(self.n_positive_views, "n_positive_views", minimum=2)
        check_network(self.sorting_network)
        check_relaxation(self.distribution, self.steepness, self.art_lambda)
        check_gradient_scale(self.gradient_scale)

    def _sort_kwargs(self) -> dict:
        return dict(
            sorting_network=self.sorting_network,
            distribution=self.distribution,
            steepness=self.steepness,
            art_lambda=self.art_lambda,
        )

    def forward(
        self, *views: Views, out0: Optional[torch.Tensor] = None, out1: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        views = views_from_call(views, out0, out1, "GroCoLoss")
        view_list = as_view_list(views, loss_name="GroCoLoss", labelled_alternative="rankssl.pml.GroCoLoss")
        self._check_settings()
        # Scores in float32 as documented, also under autocast (bf16 scores would blur ranks).
        with torch.autocast(view_list[0].device.type, enabled=False):
            return self._forward(view_list)

    def _forward(self, views: List[torch.Tensor]) -> torch.Tensor:
        # One normalisation for all views (one set of launches, not one per view).
        normalized = list(safe_normalize(torch.stack([v.float() for v in views]), dim=2).unbind(0))
        num_views, batch_size = len(normalized), normalized[0].shape[0]
        num_global = num_views if self.n_positive_views is None else self.n_positive_views
        if num_global > num_views:
            raise ValueError(f"n_positive_views={num_global} but only {num_views} views were given.")
        num_candidates = batch_size * (dist.world_size() if self.gather_distributed else 1) - 1
        # As rankssl.pml.GroCoLoss: an anchor with fewer than K candidates uses all of them.
        num_negatives = min(self.n_negatives, num_candidates)
        global_views = torch.stack(normalized[:num_global])  # (Vg, B, D)
        keys = global_views.detach() if self.stop_gradient else global_views

        losses: List[torch.Tensor] = []
        # Global anchors: positives are the other global views of the same image.
        if num_global >= 2:
            positive_scores = torch.einsum("abd,pbd->apb", global_views, keys)  # (Vg, Vg, B)
            # Drop each anchor's own view with a gather (a boolean mask would be a host sync).
            others = _other_views(num_global, keys.device)  # (Vg, Vg - 1)
            positive_scores = positive_scores.gather(1, others[:, :, None].expand(-1, -1, batch_size))
            losses.append(self._anchor_losses(normalized[:num_global], positive_scores, num_negatives))
        # Local anchors (multi-crop): every global view is a positive.
        if num_views > num_global:
            local_views = torch.stack(normalized[num_global:])
            positive_scores = torch.einsum("abd,pbd->apb", local_views, keys)
            losses.append(self._anchor_losses(normalized[num_global:], positive_scores, num_negatives))
        return scale_gradient(torch.cat(losses).mean(), self.gradient_scale)

    def _anchor_losses(
        self, anchors: List[torch.Tensor], positive_scores: torch.Tensor, num_negatives: int
    ) -> torch.Tensor:
        """Losses of every (view, image) anchor; ``positive_scores`` is (V, P, B)."""
        negative_scores = torch.stack([self._hardest_negatives(anchor, num_negatives) for anchor in anchors])
        num_pos = positive_scores.shape[1]
        return _ordered_group_ordering_loss(
            negative_scores.reshape(-1, num_negatives),
            positive_scores.transpose(1, 2).reshape(-1, num_pos).sort(dim=1).values,
            **self._sort_kwargs(),
        )

    def _hardest_negatives(self, anchor: torch.Tensor, num_negatives: Optional[int] = None) -> torch.Tensor:
        """(B, K) scores of the K most similar other images under the anchor's view, ascending."""
        batch_size = anchor.shape[0]
        candidates = dist.gather(anchor) if self.gather_distributed else anchor
        if self.stop_gradient:
            candidates = candidates.detach()
        scores = anchor @ candidates.T  # (B, B_total)
        offset = dist.local_row_offset(batch_size) if self.gather_distributed else 0
        own = torch.arange(batch_size, device=anchor.device)
        scores = scores.index_put((own, own + offset), torch.tensor(float("-inf"), device=anchor.device))
        num_negatives = self.n_negatives if num_negatives is None else num_negatives
        if num_negatives == scores.shape[1] - 1:
            # Every other image is a negative: one ascending sort, then drop the anchor's own
            # -inf in column 0. Same values as topk + flip, and cheaper than topk at k ~ n.
            return scores.sort(dim=1).values[:, 1:]
        return scores.topk(num_negatives, dim=1).values.flip(1)  # topk sorts descending

    def extra_repr(self) -> str:
        return (
            f"n_negatives={self.n_negatives}, steepness={self.steepness}, "
            f"sorting_network={self.sorting_network!r}, distribution={self.distribution!r}, "
            f"stop_gradient={self.stop_gradient}, n_positive_views={self.n_positive_views}"
            + (f", gradient_scale={self.gradient_scale}" if self.gradient_scale != 1.0 else "")
        )
