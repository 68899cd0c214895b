"""Hydra: contrastive learning from arbitrary class pairs through a learned feature filter.

Wu, Kittler, Awais, Atito, Mo, Feng, "Rethinking Positive Pairs in Contrastive Learning"
(arXiv:2410.18200; called SimLAP in its second version). Any two classes, the same class
included, may be positives of each other, compared only in the dimensions that a learned
gate g(y1, y2) keeps open (:class:`~rankssl.losses.feature_filter.FeatureFilter`).

For anchor i of class y1 paired with class y2, with gate g = g(y1, y2):

    l_ij = scale * cos(g * z_i, g * z_j)          (scale = 1 / temperature)
    l_ij <- l_ij - mean_j l_ij                   (row-centred; leaves the loss unchanged)
    P_i  = {j != i : y_j = y2}                    positives
    N_i  = {k : y_k not in {y1, y2}}              negatives
    L_i  = mean_{j in P_i} [ log(exp(l_ij) + sum_{k in N_i} exp(l_ik)) - l_ij ]

Samples of class y1 are neither positives nor negatives when y2 != y1. The batch loss
is the mean of L_i over anchors that have a positive.

The first author's public code (repository ``erow/hydra``) fixes four further choices
that rankssl leaves as parameters (``SIMLAP_SETTINGS`` selects the authors' ones):

- ``key_views``: which embeddings an anchor is compared with. ``"all"`` (rankssl's
  default): every view of the batch, the anchor itself excluded. ``"other"``
  (authors, ``cl/losses.py::simlap_loss``): the anchors of view 1 against the keys of
  view 2 and vice versa, the two directions averaged.
- ``reduction``: ``"anchor_mean"`` (default): L_i averaged over positives, then over
  anchors. ``"pair_mean"`` (authors, ``cl/losses.py::_multipos_ce`` and
  ``moco/builder.py::multipos_ce_loss``): the sum of the terms over all (anchor, positive)
  pairs divided by the number of pairs, so anchors with many positives weigh more.
- ``pair_draw``: ``"per_row"`` (default): every row (view) draws its own partner sample.
  ``"permutation"`` (authors, ``posy = y[randperm(B)]`` in ``cl/losses.py`` and the
  ``shuffle_idx`` of ``moco/builder.py``): one partner class per image, the class of the
  image a random permutation of the batch maps it to, shared by all views of that image.
- ``learn_scale``: a learned logit scale exp(s), s initialised at log(1 / temperature)
  (authors' v1, ``moco/builder.py``: ``scale_logit``, there initialised at log 20).
- ``filter_warmup_epochs``: for the first E epochs the embeddings are detached in this
  loss, so only the feature filter learns from it (authors' v1, ``moco/builder.py``:
  ``if epoch < self.warmup: q1, q2 = q1.detach(), q2.detach()``, E = 10). The epoch is
  set with :meth:`HydraLoss.set_epoch` (the mmengine ``Hydra`` algorithm does it).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from rankssl.losses._views import as_view_list
from rankssl.losses.feature_filter import FeatureFilter, check_class_labels
from rankssl.losses.pair_sampling import check_pairing, permutation_pair_labels, sample_pair_labels
from rankssl.ops import dist
from rankssl.ops.validation import (
    check_choice,
    check_embeddings,
    check_float,
    check_labels,
    check_positive_int,
    check_tensor,
)

__all__ = ["HydraLoss", "SIMLAP_SETTINGS", "gated_cosine_logits", "hydra_pair_loss", "hydra_pair_term_matrix",
           "hydra_pair_terms"]

KEY_MODES = ("all", "other")
REDUCTIONS = ("anchor_mean", "pair_mean")
PAIR_DRAWS = ("per_row", "permutation")
# The SimLAP recipe of the paper's second version (erow/hydra: cl/losses.py, main_cl.py).
SIMLAP_SETTINGS = dict(key_views="other", reduction="pair_mean", pair_draw="permutation")

_EPS = 1e-8


def _unit_max(x: torch.Tensor) -> torch.Tensor:
    scale = x.detach().abs().amax(dim=1, keepdim=True)
    return x / torch.where(scale > 0, scale, torch.ones_like(scale))


def gated_cosine_logits(anchors: torch.Tensor, keys: torch.Tensor, gates: torch.Tensor, scale: float) -> torch.Tensor:
    """(A, N) logits ``scale * cos(g_a * anchors[a], g_a * keys[n])``.

    Written with matmuls over squared gates, so memory is O(A*N), never O(A*N*D):
    <g*x, g*y> = (g^2 * x) . y and |g*y|^2 = g^2 . y^2.
    """
    # Cosine is scale invariant in each row: dividing by the row's largest entry first
    # keeps the squares below from overflowing (1e30) or underflowing.
    anchors, keys = _unit_max(anchors), _unit_max(keys)
    g2 = gates * gates
    numerator = (g2 * anchors) @ keys.T
    anchor_norm = (g2 * anchors * anchors).sum(dim=1).clamp_min(_EPS**2).sqrt()
    key_norm = (g2 @ (keys * keys).T).clamp_min(_EPS**2).sqrt()
    return scale * numerator / (anchor_norm[:, None] * key_norm)


def hydra_pair_term_matrix(
    anchors: torch.Tensor,
    keys: torch.Tensor,
    gates: torch.Tensor,
    anchor_labels: torch.Tensor,
    pair_labels: torch.Tensor,
    key_labels: torch.Tensor,
    self_index: Optional[torch.Tensor] = None,
    scale: Union[float, torch.Tensor] = 10.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Hydra's term of every (anchor, key) pair, and which pairs are positives.

    Arguments as for :func:`hydra_pair_loss` (``scale`` may be a learned 0-d tensor).

    Returns:
        ``(terms, positive)``: (A, N) float32 ``log(exp(l_ij) + sum_{k in N_i} exp(l_ik)) - l_ij``
        (finite everywhere; only entries where ``positive`` is True enter the loss) and the
        (A, N) boolean mask of positives P_i.
    """
    anchors = check_embeddings(anchors, "anchors")
    keys = check_embeddings(keys, "keys", dim=anchors.shape[1])
    check_tensor(gates, "gates", dims=(2,), shape_hint=f"{tuple(anchors.shape)} (one gate per anchor)")
    if gates.shape != anchors.shape:
        raise ValueError(f"gates must have the shape of anchors {tuple(anchors.shape)}, got {tuple(gates.shape)}.")
    anchor_labels = check_labels(anchor_labels, "anchor_labels", length=anchors.shape[0])
    pair_labels = check_labels(pair_labels, "pair_labels", length=anchors.shape[0])
    key_labels = check_labels(key_labels, "key_labels", length=keys.shape[0])
    if not isinstance(scale, torch.Tensor):  # a learned scale is a 0-d parameter
        check_float(scale, "scale", 0.0)
    logits = gated_cosine_logits(anchors.float(), keys.float(), gates.float(), scale)
    logits = logits - logits.mean(dim=1, keepdim=True)
    positive = key_labels[None, :] == pair_labels[:, None]
    if self_index is not None:
        positive[torch.arange(anchors.shape[0], device=anchors.device), self_index] = False
    negative = (key_labels[None, :] != anchor_labels[:, None]) & (key_labels[None, :] != pair_labels[:, None])
    has_negative = negative.any(dim=1, keepdim=True)
    # Rows without a negative get a finite dummy, so no NaN reaches the backward pass.
    negative_logits = torch.where(has_negative, logits.masked_fill(~negative, float("-inf")), torch.zeros_like(logits))
    negative_lse = torch.where(
        has_negative.squeeze(1),
        negative_logits.logsumexp(dim=1),
        torch.full_like(logits[:, 0], float("-inf")),
    )
    terms = torch.logaddexp(logits, negative_lse[:, None]) - logits
    return terms, positive


def hydra_pair_terms(*args, **kwargs) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor sums of Hydra's terms over the anchor's positives, and their counts.

    Arguments as for :func:`hydra_pair_term_matrix`.

    Returns:
        ``(sums, num_positive)``: (A,) float32 sum over j in P_i of
        ``log(exp(l_ij) + sum_{k in N_i} exp(l_ik)) - l_ij`` and the (A,) number |P_i|.
    """
    terms, positive = hydra_pair_term_matrix(*args, **kwargs)
    return (terms * positive).sum(dim=1), positive.sum(dim=1)


def hydra_pair_loss(
    anchors: torch.Tensor,
    keys: torch.Tensor,
    gates: torch.Tensor,
    anchor_labels: torch.Tensor,
    pair_labels: torch.Tensor,
    key_labels: torch.Tensor,
    self_index: Optional[torch.Tensor] = None,
    scale: Union[float, torch.Tensor] = 10.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor Hydra loss: the functional core shared by the lightly-style and pml losses.

    Args:
        anchors: (A, D) anchor embeddings.
        keys: (N, D) embeddings the anchors are compared with (may contain the anchors).
        gates: (A, D) gate g(y1, y2) of each anchor's pair.
        anchor_labels: (A,) y1; pair_labels: (A,) y2; key_labels: (N,).
        self_index: (A,) row of each anchor in ``keys`` (excluded from its positives), or
            None when the anchors are not among the keys.
        scale: logit scale, 1 / temperature.

    Returns:
        ``(losses, has_positive)``: (A,) float32 losses (0 where the anchor has no
        positive) and the (A,) mask of anchors with at least one positive.
    """
    sums, num_positive = hydra_pair_terms(anchors, keys, gates, anchor_labels, pair_labels, key_labels,
                                          self_index, scale)
    return sums / num_positive.clamp_min(1), num_positive > 0


def check_hydra_settings(temperature: float, gate_penalty: float, pairing: str) -> None:
    """Raise a ``ValueError`` for a non-positive temperature, a negative gate penalty or an
    unknown pairing (shared by the lightly-style and the pml loss)."""
    check_float(temperature, "temperature", 0.0)
    check_float(gate_penalty, "gate_penalty", 0.0, inclusive=True)
    check_pairing(pairing)


def check_variant_settings(key_views: str, reduction: str, pair_draw: str, pairing: str, filter_warmup_epochs: int) -> None:
    """Raise a ``ValueError`` for an unknown key mode, reduction or pair draw, a permutation
    draw with ``pairing='distinct'`` (a permutation may map an image to its own class), or a
    negative warm-up."""
    check_choice(key_views, "key_views", KEY_MODES)
    check_choice(reduction, "reduction", REDUCTIONS)
    check_choice(pair_draw, "pair_draw", PAIR_DRAWS)
    if pair_draw == "permutation" and pairing == "distinct":
        raise ValueError("pair_draw='permutation' draws partners as the authors do and cannot guarantee "
                         "pairing='distinct'; use pair_draw='per_row' or pairing='arbitrary'.")
    check_positive_int(filter_warmup_epochs, "filter_warmup_epochs", minimum=0)


def feature_filter_for(
    num_classes: int,
    dim: int,
    embed_dim: int,
    hidden_dim: int,
    gate_mode: str,
    feature_filter: Optional[FeatureFilter] = None,
) -> FeatureFilter:
    """Build the loss's :class:`FeatureFilter`, or check that a given one gates ``dim``
    dimensions of ``num_classes`` classes."""
    if feature_filter is None:
        return FeatureFilter(num_classes, dim, embed_dim, hidden_dim, gate_mode)
    if feature_filter.num_classes != num_classes or feature_filter.out_dim != dim:
        raise ValueError(
            f"feature_filter has num_classes={feature_filter.num_classes}, out_dim="
            f"{feature_filter.out_dim} but the loss was given num_classes={num_classes}, dim={dim}."
        )
    return feature_filter


def checked_class_pair_weight(weight: Optional[torch.Tensor], num_classes: int) -> Optional[torch.Tensor]:
    """``weight`` as a (C, C) float32 tensor, or ``None``; a clear error for another shape."""
    if weight is None:
        return None
    weight = torch.as_tensor(weight, dtype=torch.float32)
    if weight.shape != (num_classes, num_classes):
        raise ValueError(
            f"class_pair_weight must have shape ({num_classes}, {num_classes}), got {tuple(weight.shape)}."
        )
    return weight


class HydraLoss(nn.Module):
    """Hydra loss (Wu et al., arXiv:2410.18200), lightly-style; needs class labels.

    The loss owns a learned :class:`~rankssl.losses.feature_filter.FeatureFilter`, so
    unlike most losses it **has parameters**: build the optimizer over
    ``list(model.parameters()) + list(loss_fn.parameters())`` (or make the loss a
    submodule of the model). Each anchor's partner class is drawn by
    :func:`~rankssl.losses.pair_sampling.sample_pair_labels` (or passed in as
    ``pair_labels``).

    Args:
        num_classes: number of classes C.
        dim: D, the embedding dimension (the gate's width).
        temperature: logits are ``cos / temperature`` (paper: 0.1, i.e. scale 10).
        gate_mode: ``"fused"`` (paper), ``"product"`` or ``"open"`` (all-ones gate: the
            supervised-contrastive baseline).
        pairing: ``"arbitrary"`` (paper), ``"distinct"`` or ``"identical"``.
        embed_dim, hidden_dim: widths of the feature filter (paper: 512, 1024).
        gate_penalty: weight lambda of ``lambda * mean(g * (1 - g))`` over the batch's
            gates, which is 0 for binary gates and largest at g = 0.5, so it pushes gates
            to open or close. Default 0 (off, as in the authors' code).
        class_pair_weight: optional (C, C) non-negative prior over class pairs used when
            drawing partners.
        seed: seed of the pair sampler's own ``torch.Generator`` (offset by the process
            rank); ``None`` uses torch's global generator.
        gather_distributed: compare with keys from all processes (gathered with gradients)
            and draw partners from the global batch.
        feature_filter: use this filter instead of building one (its ``num_classes`` and
            ``out_dim`` must match).
        key_views: ``"all"`` (default) or ``"other"`` (authors; needs >= 2 views).
        reduction: ``"anchor_mean"`` (default) or ``"pair_mean"`` (authors).
        pair_draw: ``"per_row"`` (default) or ``"permutation"`` (authors: one partner per
            image, shared by its views).
        learn_scale: learn the logit scale, initialised at 1 / temperature (authors' v1).
        filter_warmup_epochs: epochs during which only the feature filter learns from this
            loss (embeddings detached; authors' v1: 10). Needs :meth:`set_epoch`.
        See the module docstring for the source of each variant; ``SIMLAP_SETTINGS`` holds
        the authors' SimLAP choices: ``HydraLoss(C, D, **SIMLAP_SETTINGS)``.

    Shapes:
        ``forward(embeddings, labels)`` with (B, D) embeddings, or
        ``forward([view0, view1, ...], labels)`` with V views of (B, D) (every view of
        image b has class ``labels[b]``); labels (B,) integer; optional ``pair_labels``
        (B,) or (V*B,). Returns a scalar.

    Example:
        >>> import torch
        >>> from rankssl.losses import HydraLoss
        >>> loss_fn = HydraLoss(num_classes=4, dim=16, seed=0)
        >>> out0, out1 = torch.randn(8, 16), torch.randn(8, 16)
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = loss_fn([out0, out1], labels)
        >>> loss.shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        temperature: float = 0.1,
        gate_mode: str = "fused",
        pairing: str = "arbitrary",
        embed_dim: int = 512,
        hidden_dim: int = 1024,
        gate_penalty: float = 0.0,
        class_pair_weight: Optional[torch.Tensor] = None,
        seed: Optional[int] = None,
        gather_distributed: bool = False,
        feature_filter: Optional[FeatureFilter] = None,
        key_views: str = "all",
        reduction: str = "anchor_mean",
        pair_draw: str = "per_row",
        learn_scale: bool = False,
        filter_warmup_epochs: int = 0,
    ) -> None:
        super().__init__()
        check_hydra_settings(temperature, gate_penalty, pairing)
        check_variant_settings(key_views, reduction, pair_draw, pairing, filter_warmup_epochs)
        feature_filter = feature_filter_for(num_classes, dim, embed_dim, hidden_dim, gate_mode, feature_filter)
        class_pair_weight = checked_class_pair_weight(class_pair_weight, num_classes)
        if class_pair_weight is not None:
            self.register_buffer("class_pair_weight", class_pair_weight, persistent=False)
        else:
            self.class_pair_weight = None
        self.feature_filter = feature_filter
        self.num_classes = num_classes
        self.dim = dim
        self.temperature = float(temperature)
        self.pairing = pairing
        self.gate_penalty = float(gate_penalty)
        self.seed = seed
        dist.check_gather_distributed(gather_distributed)
        self.gather_distributed = gather_distributed
        self._generator: Optional[torch.Generator] = None
        self.key_views = key_views
        self.reduction = reduction
        self.pair_draw = pair_draw
        self.learn_scale = bool(learn_scale)
        self.filter_warmup_epochs = filter_warmup_epochs
        self.epoch = 0
        if self.learn_scale:
            self.log_scale = nn.Parameter(torch.tensor(-math.log(self.temperature)))

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss the current training epoch (0-based), for ``filter_warmup_epochs``."""
        self.epoch = int(epoch)

    @property
    def scale(self) -> Union[float, torch.Tensor]:
        """The logit scale: 1 / temperature, or the learned exp(s)."""
        return self.log_scale.exp() if self.learn_scale else 1.0 / self.temperature

    @property
    def gate_mode(self) -> str:
        return self.feature_filter.mode

    def _pair_generator(self) -> Optional[torch.Generator]:
        if self.seed is None:
            return None
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed + dist.rank())
        return self._generator

    def _pair_labels(self, y, labels, pair_labels, num_views, key_labels, self_index) -> torch.Tensor:
        if pair_labels is not None:
            if isinstance(pair_labels, torch.Tensor) and pair_labels.dim() == 1 and pair_labels.shape[0] == labels.shape[0]:
                pair_labels = pair_labels.repeat(num_views)
            check_class_labels(pair_labels, self.num_classes, length=y.shape[0], name="pair_labels")
            return pair_labels.to(y.device)
        if self.pair_draw == "permutation" and self.pairing == "arbitrary":
            return permutation_pair_labels(labels.to(y.device), self._pair_generator()).repeat(num_views)
        return sample_pair_labels(y, self.pairing, key_labels, self_index, self.class_pair_weight, self._pair_generator())

    def forward(
        self,
        embeddings: Union[torch.Tensor, Sequence[torch.Tensor]],
        labels: Optional[torch.Tensor] = None,
        pair_labels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        views = as_view_list((embeddings,), min_views=1)
        batch_size = views[0].shape[0]
        labels = check_class_labels(labels, self.num_classes, length=batch_size)
        if views[0].shape[1] != self.dim:
            raise ValueError(
                f"Embeddings have dim {views[0].shape[1]} but the feature filter gates {self.dim} "
                f"dimensions; build HydraLoss(dim={views[0].shape[1]}, ...) or change the projector."
            )
        if self.key_views == "other" and len(views) < 2:
            raise ValueError("key_views='other' compares each view with the others: pass at least two views.")
        if self.epoch < self.filter_warmup_epochs:  # filter-only warm-up: no gradient to the embeddings
            views = [v.detach() for v in views]
        z = torch.cat(views) if len(views) > 1 else views[0]
        y = labels.to(z.device).repeat(len(views))
        keys, key_labels = z, y
        if self.gather_distributed:
            keys, key_labels = dist.gather(z), dist.gather(y)
        if torch.unique(key_labels).numel() < 2:
            raise ValueError(
                f"The batch holds a single class ({int(key_labels[0])}): Hydra has no negatives. "
                f"Batches need several classes (e.g. pytorch-metric-learning's MPerClassSampler)."
            )
        offset = dist.local_row_offset(z.shape[0]) if self.gather_distributed else 0
        self_index = torch.arange(z.shape[0], device=z.device) + offset
        pair_labels = self._pair_labels(y, labels, pair_labels, len(views), key_labels, self_index)
        gates = self.feature_filter(y, pair_labels)
        if self.key_views == "all":
            parts = [hydra_pair_terms(z, keys, gates, y, pair_labels, key_labels, self_index, self.scale)]
        else:
            parts = self._other_view_terms(views, y, pair_labels, gates, batch_size)
        loss = self._reduce(parts)
        if self.gate_penalty > 0:
            loss = loss + self.gate_penalty * (gates * (1 - gates)).mean()
        return loss

    def _other_view_terms(self, views, y, pair_labels, gates, batch_size) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """One (sums, counts) per view: its anchors against the keys of every other view."""
        labels = y[:batch_size]
        parts = []
        for v in range(len(views)):
            rows = slice(v * batch_size, (v + 1) * batch_size)
            others = [views[u] for u in range(len(views)) if u != v]
            keys = torch.cat(others) if len(others) > 1 else others[0]
            key_labels = labels.repeat(len(others))
            if self.gather_distributed:
                keys, key_labels = dist.gather(keys), dist.gather(key_labels)
            parts.append(hydra_pair_terms(views[v], keys, gates[rows], labels, pair_labels[rows], key_labels,
                                          None, self.scale))
        return parts

    def _reduce(self, parts: List[Tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        if not any(bool((counts > 0).any()) for _, counts in parts):
            raise ValueError(
                "No anchor has a positive: every paired class occurs only as the anchor itself "
                "(with pairing='identical' each class needs at least two samples in the batch)."
            )
        if self.reduction == "anchor_mean":
            sums = torch.cat([s for s, _ in parts])
            counts = torch.cat([c for _, c in parts])
            return (sums[counts > 0] / counts[counts > 0]).mean()
        # pair_mean: sum over (anchor, positive) pairs / number of pairs, per direction; directions averaged
        means = [s.sum() / c.sum() for s, c in parts if bool((c > 0).any())]
        return torch.stack(means).mean()

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, dim={self.dim}, temperature={self.temperature}, "
            f"pairing={self.pairing!r}, gate_penalty={self.gate_penalty}, "
            f"gather_distributed={self.gather_distributed}, key_views={self.key_views!r}, reduction={self.reduction!r}, "
            f"pair_draw={self.pair_draw!r}, learn_scale={self.learn_scale}, "
            f"filter_warmup_epochs={self.filter_warmup_epochs}"
        )
