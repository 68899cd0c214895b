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
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from rankssl.losses._views import as_view_list
from rankssl.losses.feature_filter import FeatureFilter, check_class_labels
from rankssl.losses.pair_sampling import check_pairing, sample_pair_labels
from rankssl.ops import dist
from rankssl.ops.validation import check_embeddings, check_float, check_labels, check_tensor

__all__ = ["HydraLoss", "gated_cosine_logits", "hydra_pair_loss"]

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


def hydra_pair_loss(
    anchors: torch.Tensor,
    keys: torch.Tensor,
    gates: torch.Tensor,
    anchor_labels: torch.Tensor,
    pair_labels: torch.Tensor,
    key_labels: torch.Tensor,
    self_index: Optional[torch.Tensor] = None,
    scale: float = 10.0,
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
    anchors = check_embeddings(anchors, "anchors")
    keys = check_embeddings(keys, "keys", dim=anchors.shape[1])
    check_tensor(gates, "gates", dims=(2,), shape_hint=f"{tuple(anchors.shape)} (one gate per anchor)")
    if gates.shape != anchors.shape:
        raise ValueError(f"gates must have the shape of anchors {tuple(anchors.shape)}, got {tuple(gates.shape)}.")
    anchor_labels = check_labels(anchor_labels, "anchor_labels", length=anchors.shape[0])
    pair_labels = check_labels(pair_labels, "pair_labels", length=anchors.shape[0])
    key_labels = check_labels(key_labels, "key_labels", length=keys.shape[0])
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
    num_positive = positive.sum(dim=1)
    losses = (terms * positive).sum(dim=1) / num_positive.clamp_min(1)
    return losses, num_positive > 0


def check_hydra_settings(temperature: float, gate_penalty: float, pairing: str) -> None:
    """Raise a ``ValueError`` for a non-positive temperature, a negative gate penalty or an
    unknown pairing (shared by the lightly-style and the pml loss)."""
    check_float(temperature, "temperature", 0.0)
    check_float(gate_penalty, "gate_penalty", 0.0, inclusive=True)
    check_pairing(pairing)


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
    ) -> None:
        super().__init__()
        check_hydra_settings(temperature, gate_penalty, pairing)
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

    @property
    def gate_mode(self) -> str:
        return self.feature_filter.mode

    def _pair_generator(self) -> Optional[torch.Generator]:
        if self.seed is None:
            return None
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed + dist.rank())
        return self._generator

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
        if pair_labels is None:
            pair_labels = sample_pair_labels(
                y, self.pairing, key_labels, self_index, self.class_pair_weight, self._pair_generator()
            )
        else:
            pair_labels = check_class_labels(pair_labels, self.num_classes, name="pair_labels")
            if pair_labels.shape[0] == batch_size:
                pair_labels = pair_labels.repeat(len(views))
            pair_labels = check_class_labels(pair_labels, self.num_classes, length=z.shape[0], name="pair_labels")
            pair_labels = pair_labels.to(z.device)
        gates = self.feature_filter(y, pair_labels)
        losses, has_positive = hydra_pair_loss(
            z, keys, gates, y, pair_labels, key_labels, self_index, 1.0 / self.temperature
        )
        if not bool(has_positive.any()):
            raise ValueError(
                "No anchor has a positive: every paired class occurs only as the anchor itself "
                "(with pairing='identical' each class needs at least two samples in the batch)."
            )
        loss = losses[has_positive].mean()
        if self.gate_penalty > 0:
            loss = loss + self.gate_penalty * (gates * (1 - gates)).mean()
        return loss

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, dim={self.dim}, temperature={self.temperature}, "
            f"pairing={self.pairing!r}, gate_penalty={self.gate_penalty}, "
            f"gather_distributed={self.gather_distributed}"
        )
