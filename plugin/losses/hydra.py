"""Hydra: contrastive learning from arbitrary class pairs through a learned feature filter.

Wu, Kittler, Awais, Atito, Mo, Feng, "Rethinking Positive Pairs in Contrastive Learning"
(arXiv:2410.18200; called SimLAP in its second version). Any two classes, the same class
included, may be positives of each other, compared only in the dimensions that a learned
gate g(y1, y2) keeps open (:class:`~rankssl.losses.feature_filter.FeatureFilter`).

For anchor i of class y1 paired with class y2, with gate g = g(y1, y2):

    l_ij = scale * cos(g * z_i, g * z_j)          (scale = 1 / temperature)
    P_i  = {j != i : y_j = y2}                    positives
    N_i  = {k : y_k not in {y1, y2}}              negatives
    L_i  = mean_{j in P_i} [ log(exp(l_ij) + sum_{k in N_i} exp(l_ik)) - l_ij ]

Samples of class y1 are neither positives nor negatives when y2 != y1. The authors centre
each row of logits by its mean first; every term is invariant to a per-row constant, so
rankssl skips it and computes ``softplus(LSE_{k in N_i} l_ik - l_ij)`` at the positives.

The defaults are the first author's SimLAP code (repository ``erow/hydra``,
``cl/losses.py::simlap_loss``, the paper's second version). Three choices stay parameters,
each with rankssl's own variant as a named option (``RANKSSL_VARIANT`` selects all three,
``SIMLAP_SETTINGS`` spells out the defaults):

- ``key_views``: which embeddings an anchor is compared with. ``"other"`` (default,
  SimLAP): the anchors of view 1 against the keys of view 2 and vice versa, the
  directions averaged (with V views, each view against all the others). ``"all"``
  (rankssl's variant): every view of the batch, the anchor itself excluded.
- ``reduction``: ``"pair_mean"`` (default, SimLAP ``cl/losses.py::_multipos_ce`` and
  ``moco/builder.py::multipos_ce_loss``): the sum of the terms over all (anchor,
  positive) pairs divided by the number of pairs, per direction, so anchors with many
  positives weigh more. ``"anchor_mean"`` (variant): L_i averaged over positives, then
  over anchors.
- ``pair_draw``: ``"permutation"`` (default, SimLAP ``posy = y[randperm(B)]`` and the
  ``shuffle_idx`` of ``moco/builder.py``): one partner class per image, the class of the
  image a random permutation of the batch maps it to, shared by all views of that image.
  ``"per_row"`` (variant): every row (view) draws its own partner sample.
- ``learn_scale``: a learned logit scale exp(s), s initialised at log(1 / temperature)
  (authors' v1, ``moco/builder.py``: ``scale_logit``, there initialised at log 20).
- ``filter_warmup_epochs``: for the first E epochs the embeddings are detached in this
  loss, so only the feature filter learns from it (authors' v1, ``moco/builder.py``:
  ``if epoch < self.warmup: q1, q2 = q1.detach(), q2.detach()``, E = 10). The epoch is
  set with :meth:`HydraLoss.set_epoch` (the mmengine ``Hydra`` algorithm does it).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch.nn import functional as F

from rankssl.losses._deferred import defer_check, is_lazy
from rankssl.losses._views import as_view_list
from rankssl.losses.feature_filter import FeatureFilter, check_class_labels
from rankssl.losses.hydra_base import (  # noqa: F401  (re-exported: the pml loss and users import them from here)
    KEY_MODES,
    PAIR_DRAWS,
    RANKSSL_VARIANT,
    REDUCTIONS,
    SIMLAP_SETTINGS,
    HydraLossBase,
    check_hydra_settings,
    check_variant_settings,
    checked_class_pair_weight,
    defer_or_raise,
    feature_filter_for,
)
from rankssl.ops import dist
from rankssl.ops.validation import (
    check_embeddings,
    check_float,
    check_labels,
    check_tensor,
    collect_checks,
    send_collected_checks,
)

__all__ = [
    "HydraLoss",
    "RANKSSL_VARIANT",
    "SIMLAP_SETTINGS",
    "gated_cosine_logits",
    "hydra_pair_loss",
    "hydra_pair_term_matrix",
    "hydra_pair_terms",
]

_EPS = 1e-8
# Stands in for log(0) at the logits that are not negatives: finite, so rows without a
# negative give a zero term and a zero (not NaN) gradient; far below any logit.
_NOT_NEGATIVE = torch.finfo(torch.float32).min / 4


def gated_cosine_logits(
    anchors: torch.Tensor, keys: Optional[torch.Tensor], gates: torch.Tensor, scale: Union[float, torch.Tensor]
) -> torch.Tensor:
    """(A, N) logits ``scale * cos(g_a * anchors[a], g_a * keys[n])``; ``keys=None``: the anchors.

    Written with matmuls over squared gates, so memory is O(A*N), never O(A*N*D):
    <g*x, g*y> = (g^2 * x) . y and |g*y|^2 = g^2 . y^2.
    """
    # The cosine is invariant to scaling either row: unit rows first keep the squares below
    # from overflowing (1e30) or underflowing.
    anchors = F.normalize(anchors, dim=1)
    keys = anchors if keys is None else F.normalize(keys, dim=1)
    g2 = gates * gates
    gated = g2 * anchors
    numerator = gated @ keys.T
    anchor_norm2 = (gated * anchors).sum(dim=1, keepdim=True)
    key_norm2 = g2 @ (keys * keys).T
    return numerator * (anchor_norm2 * key_norm2).clamp_min(_EPS**4).rsqrt() * scale


def _unit_rows(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x / c, c)`` with c the row's largest magnitude: squares of x / c cannot overflow."""
    c = torch.linalg.vector_norm(x, float("inf"), dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return x / c, c


class _GatedTerms(torch.autograd.Function):
    """Hydra's (..., A, N) terms ``softplus(LSE_{k in N_i} l_ik - l_ij)`` at the positives, with a
    hand-written backward (about half the kernels autograd would run). Leading dimensions are
    batched (SimLAP's directions: each view's anchors against the other views' keys).

    l_ij = s * n_ij / sqrt(a_i k_ij), n = (G U) V^T, a_i = sum_d G_id U_id^2, k = G (V^2)^T,
    G = g^2, U and V the anchors and keys scaled to unit row maximum (the cosine does not see
    the scale, so the gradient through the scaling is a division by it). With
    lambda = dLoss/dl, A_i = sum_j lambda_ij l_ij, m = lambda * l / k:
    dU = (lambda*s/sqrt(a k)) V * G - (A/a) * G U,  dV = (lambda*s/sqrt(a k))^T (G U) - (m^T G) * V,
    dG = ((lambda*s/sqrt(a k)) V) * U - (A/a) U^2 / 2 - m V^2 / 2,  ds = sum(A) / s.
    """

    @staticmethod
    def forward(ctx, anchors, keys, gates, to_pair, not_negative, scale):
        # keys: a tensor, None (the anchors themselves) or "flip" (the anchors' views in reverse order)
        u, cu = _unit_rows(anchors)
        if isinstance(keys, str):
            v, cv = u.flip(0), None
        else:
            v, cv = (u, cu) if keys is None else _unit_rows(keys)
        g2 = gates * gates
        gu = g2 * u
        a = (gu * u).sum(dim=-1, keepdim=True)
        vv = v * v
        k = g2 @ vv.mT
        rs = (a * k).clamp_min(_EPS**4).rsqrt() * scale
        logits = (gu @ v.mT) * rs
        masked = logits.masked_fill(not_negative, _NOT_NEGATIVE)
        lse = masked.logsumexp(dim=-1, keepdim=True)
        # -inf off the positives: softplus gives their 0 term and sigmoid their 0 gradient
        x = torch.where(to_pair, lse - logits, float("-inf"))
        ctx.keys_mode = keys if keys is None or isinstance(keys, str) else "tensor"
        ctx.scale_is_tensor = isinstance(scale, torch.Tensor)
        ctx.save_for_backward(
            u, cu, v, cv, gates, g2, gu, vv, a, k, rs, logits, masked, x, scale if ctx.scale_is_tensor else None
        )
        return F.softplus(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        u, cu, v, cv, gates, g2, gu, vv, a, k, rs, logits, masked, x, scale = ctx.saved_tensors
        q = grad * torch.sigmoid(x)  # d loss / d x, 0 off the positives
        # nlam = -lambda = -(d loss / d logits) = q - softmax over the negatives * sum(q): every
        # gradient is linear in lambda, so the sign is folded into the alpha/beta/value arguments below.
        nlam = torch.addcmul(q, masked.softmax(dim=-1), q.sum(dim=-1, keepdim=True), value=-1.0)
        gn = nlam * rs
        lam_l = nlam * logits
        row = lam_l.sum(dim=-1, keepdim=True)
        c = row / a
        m = lam_l / k
        gnv = gn @ v
        # dG = (gnv - c U / 2) * U - (m V^2) / 2 (signs of lambda); d gates = 2 gates dG
        half = torch.addcmul(gnv, c, u, value=-0.5)
        dgates = _addmm(half * u, m, vv, beta=-2.0, alpha=1.0) * gates
        dv = _addmm((m.mT @ g2) * v, gn.mT, gu, beta=1.0, alpha=-1.0)
        inner = torch.addcmul(gnv, c, u, value=-1.0)  # = c U - gnv in true signs: dU = -G * inner
        dkeys = None
        if ctx.keys_mode is None:
            du = torch.addcmul(dv, g2, inner, value=-1.0)
        elif ctx.keys_mode == "flip":
            du = torch.addcmul(dv.flip(0), g2, inner, value=-1.0)
        else:
            du = inner.mul_(g2).neg_()
            dkeys = dv.div_(cv)
        dscale = (row.sum() / scale).neg_() if ctx.scale_is_tensor and ctx.needs_input_grad[5] else None
        return du.div_(cu), dkeys, dgates, None, None, dscale


def _addmm(input: torch.Tensor, a: torch.Tensor, b: torch.Tensor, beta: float, alpha: float) -> torch.Tensor:
    """``beta * input + alpha * (a @ b)`` for 2-D or batched 3-D operands, in one kernel."""
    if a.dim() == 3:
        return torch.baddbmm(input, a, b, beta=beta, alpha=alpha)
    return torch.addmm(input, a, b, beta=beta, alpha=alpha)


def _masked_terms(
    anchors: torch.Tensor,
    keys: Optional[torch.Tensor],
    gates: torch.Tensor,
    anchor_labels: torch.Tensor,
    pair_labels: torch.Tensor,
    key_labels: torch.Tensor,
    invalid: Optional[torch.Tensor],
    scale: Union[float, torch.Tensor],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Unchecked core: (A, N) float32 terms (0 off the positives) and the (A, N) boolean positives.

    ``keys=None`` compares the anchors with themselves; ``invalid`` (A, N) bool marks the
    keys an anchor must not see at all (itself, its own view; None: none).
    """
    to_pair = key_labels[None, :] == pair_labels[:, None]
    not_negative = to_pair | (key_labels[None, :] == anchor_labels[:, None])
    if invalid is not None:
        not_negative = not_negative | invalid
        to_pair = to_pair > invalid  # to_pair and not invalid
    # log(exp(l_ij) + sum_k exp(l_ik)) - l_ij = softplus(LSE_k l_ik - l_ij): no row centring needed.
    terms = _GatedTerms.apply(
        anchors.float(), None if keys is None else keys.float(), gates.float(), to_pair, not_negative, scale
    )
    return terms, to_pair


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
        (0 off the positives) and the (A, N) boolean mask of positives P_i.
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
    invalid = None
    if self_index is not None:
        self_index = check_labels(self_index, "self_index", length=anchors.shape[0])
        invalid = torch.arange(keys.shape[0], device=keys.device)[None, :] == self_index.to(keys.device)[:, None]
    return _masked_terms(anchors, keys, gates, anchor_labels, pair_labels, key_labels, invalid, scale)


def hydra_pair_terms(*args, **kwargs) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor sums of Hydra's terms over the anchor's positives, and their counts.

    Arguments as for :func:`hydra_pair_term_matrix`.

    Returns:
        ``(sums, num_positive)``: (A,) float32 sum over j in P_i of
        ``log(exp(l_ij) + sum_{k in N_i} exp(l_ik)) - l_ij`` and the (A,) number |P_i|.
    """
    terms, positive = hydra_pair_term_matrix(*args, **kwargs)
    return terms.sum(dim=1), positive.sum(dim=1)


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
    """Per-anchor Hydra loss: the functional form of the lightly-style and pml losses.

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

    Example:
        >>> import torch
        >>> z, g = torch.randn(6, 4), torch.ones(6, 4)
        >>> y = torch.tensor([0, 0, 1, 1, 2, 2])
        >>> losses, has = hydra_pair_loss(z, z, g, y, y, y, torch.arange(6))
        >>> bool(has.all())
        True
    """
    sums, num_positive = hydra_pair_terms(
        anchors, keys, gates, anchor_labels, pair_labels, key_labels, self_index, scale
    )
    return sums / num_positive.clamp_min(1), num_positive > 0


def _split_call(args: tuple, labels, pair_labels, out0, out1) -> Tuple[list, Any, Any]:
    """Views, labels and pair labels of ``forward``'s accepted call forms (see HydraLoss.forward)."""
    if out0 is not None or out1 is not None:
        if args:
            raise TypeError("Pass the views either positionally or as out0=/out1=, not both.")
        if out0 is None or out1 is None:
            raise TypeError("lightly's keywords come in pairs: pass both out0= and out1=.")
        return [out0, out1], labels, pair_labels
    if not args:
        raise TypeError("HydraLoss needs views: loss([view0, view1], labels) or loss(view0, view1, labels=labels).")
    if isinstance(args[0], (list, tuple)):
        views, rest = list(args[0]), list(args[1:])
    else:
        views = [args[0]]
        rest = list(args[1:])
        while rest and isinstance(rest[0], torch.Tensor) and rest[0].is_floating_point() and rest[0].dim() == 2:
            views.append(rest.pop(0))
        if len(views) > 1 and rest:
            raise TypeError(
                f"HydraLoss got {len(views)} views and then {len(rest)} more positional argument(s): with views "
                "passed one by one, pass the class labels as a keyword: loss(view0, view1, labels=labels) "
                "(or loss([view0, view1], labels))."
            )
    for name, value in (("labels", labels), ("pair_labels", pair_labels)):
        if rest:
            if value is not None:
                raise TypeError(f"HydraLoss got {name} both positionally and as a keyword.")
            value = rest.pop(0)
        if name == "labels":
            labels = value
        else:
            pair_labels = value
    if rest:
        raise TypeError(f"HydraLoss takes (views, labels, pair_labels); got {len(rest)} positional argument(s) more.")
    if isinstance(labels, torch.Tensor) and labels.is_floating_point() and labels.dim() == 2:
        raise TypeError(
            "labels is a 2-D floating tensor, i.e. a view: pass the views as a list, "
            "loss([view0, view1], labels), or the labels as labels=."
        )
    return views, labels, pair_labels


class HydraLoss(HydraLossBase):
    """Hydra loss (Wu et al., arXiv:2410.18200), lightly-style; needs class labels.

    With its defaults this is the authors' SimLAP loss (``erow/hydra``
    ``cl/losses.py::simlap_loss``): the anchors of each view against the keys of the other
    view(s), one partner class per image by a permutation of the batch, the sum over
    (anchor, positive) pairs divided by their number, directions averaged.

    The loss owns a learned :class:`~rankssl.losses.feature_filter.FeatureFilter`, so
    unlike most losses it **has parameters**: build the optimizer over
    ``list(model.parameters()) + list(loss_fn.parameters())`` (or make the loss a
    submodule of the model).

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
            drawing partners (``pair_draw='per_row'``).
        seed: seed of the pair draw's own ``torch.Generator``, created on the input's
            device and offset by the process rank (each process draws for its own
            anchors); saved in ``state_dict()``. ``None`` uses torch's global generator.
        gather_distributed: compare with keys from all processes (gathered with gradients)
            and draw partners from the global batch.
        feature_filter: use this filter instead of building one (its ``num_classes`` and
            ``out_dim`` must match).
        key_views: ``"other"`` (default, SimLAP; needs >= 2 views) or ``"all"`` (variant).
        reduction: ``"pair_mean"`` (default, SimLAP) or ``"anchor_mean"`` (variant).
        pair_draw: ``"permutation"`` (default, SimLAP: one partner per image, shared by its
            views) or ``"per_row"`` (variant).
        learn_scale: learn the logit scale, initialised at 1 / temperature (authors' v1).
        filter_warmup_epochs: epochs during which only the feature filter learns from this
            loss (embeddings detached; authors' v1: 10). Needs :meth:`set_epoch`.
        See the module docstring for the source of each choice; ``HydraLoss(C, D)`` is the
        authors' SimLAP loss, ``HydraLoss(C, D, **RANKSSL_VARIANT)`` rankssl's variant.

    Shapes:
        ``forward([view0, view1, ...], labels)``, ``forward(view0, view1, labels=labels)``
        or lightly's ``forward(out0=view0, out1=view1, labels=labels)`` with V views of
        (B, D) (every view of image b has class ``labels[b]``), or ``forward(embeddings,
        labels)`` with one (B, D) tensor (only with ``key_views='all'``); labels (B,)
        integer; optional ``pair_labels`` (B,) or (V*B,). Returns a scalar.

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
        key_views: str = "other",
        reduction: str = "pair_mean",
        pair_draw: str = "permutation",
        learn_scale: bool = False,
        filter_warmup_epochs: int = 0,
    ) -> None:
        super().__init__()
        self._init_common(
            num_classes,
            dim,
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
            key_views=key_views,
            filter_warmup_epochs=filter_warmup_epochs,
        )
        self.dim = dim
        dist.check_gather_distributed(gather_distributed)
        self.gather_distributed = gather_distributed
        self.key_views = key_views
        self.filter_warmup_epochs = filter_warmup_epochs
        self.epoch = 0
        self._invalid_cache: dict = {}

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss the current training epoch (0-based), for ``filter_warmup_epochs``."""
        self.epoch = int(epoch)

    def _check_settings(self) -> None:
        super()._check_settings()
        check_variant_settings(self.key_views, self.reduction, self.pair_draw, self.pairing, self.filter_warmup_epochs)

    def forward(
        self,
        *views: Union[torch.Tensor, Sequence[torch.Tensor]],
        labels: Optional[torch.Tensor] = None,
        pair_labels: Optional[torch.Tensor] = None,
        out0: Optional[torch.Tensor] = None,
        out1: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        started = collect_checks()  # the lazy verdicts of this call reach the host in one copy
        try:
            return self._forward(views, labels, pair_labels, out0, out1)
        finally:
            send_collected_checks(started)

    def _forward(self, views, labels, pair_labels, out0, out1) -> torch.Tensor:
        views, labels, pair_labels = _split_call(views, labels, pair_labels, out0, out1)
        views = as_view_list((views,), min_views=1)
        self._check_settings()
        batch_size, num_views = views[0].shape[0], len(views)
        labels = check_class_labels(labels, self.num_classes, length=batch_size)
        if views[0].shape[1] != self.dim:
            raise ValueError(
                f"Embeddings have dim {views[0].shape[1]} but the feature filter gates {self.dim} "
                f"dimensions; build HydraLoss(dim={views[0].shape[1]}, ...) or change the projector."
            )
        if self.key_views == "other" and num_views < 2:
            raise ValueError(
                "key_views='other' (SimLAP, the default) compares each view with the others: pass at "
                "least two views, loss([view0, view1], labels), or use key_views='all'."
            )
        if self.epoch < self.filter_warmup_epochs:  # filter-only warm-up: no gradient to the embeddings
            views = [v.detach() for v in views]
        if self.key_views == "other" and not self.gather_distributed:
            return self._other_views_loss(views, labels.to(views[0].device), pair_labels)
        z = torch.cat(views) if num_views > 1 else views[0]
        device = z.device
        labels = labels.to(device)
        y = labels.repeat(num_views)
        keys, key_labels, offset = None, y, 0
        if self.gather_distributed:
            keys, key_labels = dist.gather(z), dist.gather(y)
            offset = dist.local_row_offset(z.shape[0])
        self._check_classes(key_labels)
        invalid, anchor_rows = self._invalid_keys(z.shape[0], key_labels.shape[0], offset, batch_size, device)
        rows = anchor_rows if pair_labels is None and self.pair_draw == "per_row" else None
        pair_labels, admissible = self._partners(labels, y, key_labels, rows, pair_labels)
        if pair_labels.shape[0] == batch_size and num_views > 1:
            # one partner per image: its gates once per image (the filter's BatchNorm sees the
            # batch's images, as in the authors' code), shared by the image's views
            gates = self.feature_filter.gates(labels, pair_labels).repeat(num_views, 1)
            pair_labels = pair_labels.repeat(num_views)
        else:
            gates = self.feature_filter.gates(y, pair_labels)
        if admissible is not None:
            invalid = invalid | ~admissible[:, None]
        terms, positive = _masked_terms(z, keys, gates, y, pair_labels, key_labels, invalid, self.scale)
        loss = self._reduce(terms, positive, num_views)
        if self.gate_penalty > 0:
            loss = loss + self._gate_penalty(gates)
        return loss

    def _other_views_loss(self, views: List[torch.Tensor], labels: torch.Tensor, pair_labels) -> torch.Tensor:
        """SimLAP's directions batched: (V, B) anchors, each view against the (V-1)*B keys of the others."""
        num_views, batch_size = len(views), labels.shape[0]
        z = torch.stack(views).float()
        keys: Union[str, torch.Tensor]
        if num_views == 2:
            keys = "flip"
        else:
            others = torch.tensor([[u for u in range(num_views) if u != v] for v in range(num_views)], device=z.device)
            keys = z[others].reshape(num_views, (num_views - 1) * batch_size, -1)
        key_labels = labels if num_views == 2 else labels.repeat(num_views - 1)
        self._check_classes(labels)
        per_row = pair_labels is None and self.pair_draw == "per_row"
        # the rows' classes, except for the authors' permutation draw, which reads only the images' labels
        permutation = pair_labels is None and self.pairing == "arbitrary" and self.pair_draw == "permutation"
        y = labels if permutation else labels.repeat(num_views)
        rows = torch.arange(y.shape[0], device=z.device) if per_row else None
        pair_labels, admissible = self._partners(labels, y, y, rows, pair_labels)
        if pair_labels.shape[0] == batch_size:  # one partner per image, shared by its views
            gates = self.feature_filter.gates(labels, pair_labels).expand(num_views, -1, -1)
            pairs = pair_labels.expand(num_views, -1)
        else:
            gates = self.feature_filter.gates(y, pair_labels).view(num_views, batch_size, -1)
            pairs = pair_labels.view(num_views, batch_size)
        to_pair = key_labels[None, None, :] == pairs[:, :, None]
        not_negative = to_pair | (key_labels[None, :] == labels[:, None])
        if admissible is not None:
            inadmissible = ~admissible.view(num_views, batch_size, 1)
            not_negative, to_pair = not_negative | inadmissible, to_pair > inadmissible
        terms = _GatedTerms.apply(
            z, keys if isinstance(keys, str) else keys.float(), gates.float(), to_pair, not_negative, self.scale
        )
        loss = self._reduce(terms, to_pair, num_views)
        if self.gate_penalty > 0:
            loss = loss + self._gate_penalty(gates)
        return loss

    def _invalid_keys(
        self, rows: int, num_keys: int, offset: int, batch_size: int, device
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(rows, num_keys) keys each anchor must not see: itself ('all') or its own view ('other'),
        and the (rows,) anchors' rows among the keys.

        Depends on shapes only, so it is built once per shape and device and kept."""
        key = (self.key_views, rows, num_keys, offset, batch_size, str(device))
        cache = self.__dict__.setdefault("_invalid_cache", {})  # modules saved before it was made in __init__
        if key not in cache:
            anchor_rows = torch.arange(rows, device=device) + offset
            key_rows = torch.arange(num_keys, device=device)
            if self.key_views == "all":
                invalid = key_rows[None, :] == anchor_rows[:, None]
            else:  # a key is visible to the anchors of the other views only
                invalid = ((key_rows % rows) // batch_size)[None, :] == ((anchor_rows % rows) // batch_size)[:, None]
            cache.clear()
            cache[key] = (invalid, anchor_rows)
        return cache[key]

    def _check_classes(self, key_labels: torch.Tensor) -> None:
        message = (
            "The batch holds a single class: Hydra has no negatives. Batches need several classes "
            "(e.g. pytorch-metric-learning's MPerClassSampler)."
        )
        single = (key_labels == key_labels[0]).all()
        if is_lazy(key_labels):
            defer_check(single, message)
        elif bool(single):
            raise ValueError(message.replace("a single class", f"a single class ({int(key_labels[0])})"))

    def _reduce(self, terms: torch.Tensor, positive: torch.Tensor, num_views: int) -> torch.Tensor:
        if self.reduction == "anchor_mean":
            sums, counts = terms.sum(dim=-1).view(-1), positive.sum(dim=-1).view(-1)
        else:  # pair_mean: sum over (anchor, positive) pairs / number of pairs, per direction; directions averaged
            groups = num_views if self.key_views == "other" else 1
            sums, counts = terms.view(groups, -1).sum(dim=1), positive.view(groups, -1).sum(dim=1)
        with_positive = (counts > 0).sum()
        defer_or_raise(
            with_positive == 0,
            "No anchor has a positive: every paired class occurs only as the anchor "
            "itself (with pairing='identical' each class needs at least two samples in the batch).",
            counts,
        )
        # sums are 0 where counts are (any divisor does there; 1 keeps it finite): the mean over the
        # groups (anchors or directions) that have a positive
        return (sums / (counts * with_positive).clamp_min(1)).sum()

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, dim={self.dim}, temperature={self.temperature}, "
            f"pairing={self.pairing!r}, gate_penalty={self.gate_penalty}, "
            f"gather_distributed={self.gather_distributed}, key_views={self.key_views!r}, "
            f"reduction={self.reduction!r}, "
            f"pair_draw={self.pair_draw!r}, learn_scale={self.learn_scale}, "
            f"filter_warmup_epochs={self.filter_warmup_epochs}"
        )
