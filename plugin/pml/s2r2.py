"""S2R2 as a pytorch-metric-learning loss.

Varamesh et al., "Self-Supervised Ranking for Representation Learning" (arXiv:2010.07258).
The AP objective of :mod:`rankssl.losses.s2r2` with relevance defined by labels (or a
miner's ``indices_tuple``) instead of views, so it goes wherever a pml loss goes: with
:class:`rankssl.pml.SelfSupervisedLoss` it is S2R2 over views, with
:class:`rankssl.pml.CrossBatchMemory` the database is a memory bank.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import MeanReducer
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from rankssl.losses.s2r2 import estimator_settings_from_arguments
from rankssl.ops.average_precision import BATCH_RANGE, _average_precision, check_ap_estimator
from rankssl.ops.validation import check_optional_positive_int, checks_lazily
from rankssl.pml._checks import CheckedInputsMixin
from rankssl.pml.distances import ScaleSafeCosineSimilarity

__all__ = ["S2R2Loss"]


class S2R2Loss(CheckedInputsMixin, BaseMetricLossFunction):
    """Average-precision loss, ``1 - AP`` per query, for labelled (or mined) pairs.

    Each row of ``embeddings`` is a query that ranks the reference items (``ref_emb``,
    default ``embeddings`` itself) by score. Relevant items: those with the query's
    label (or the positive pairs of ``indices_tuple``). The ranking holds the relevant
    and the irrelevant items (or the negative pairs); other items are left out, so an
    ``indices_tuple`` restricts each query's ranking to its pairs, and the query itself
    never takes part when ``ref_emb`` is None.

    Queries with no relevant item have no AP: they get no loss and are left out of the
    reduction (as in pml's ``FastAPLoss``); if no query has one, the loss is zero.

    Scores come from ``distance`` (default :class:`CosineSimilarity`); a distance that
    is not inverted (smaller = closer) is negated into a score. The binned estimators
    bin scores over ``score_range``; without one they bin cosine similarities
    (``CosineSimilarity``, normalised ``DotProductSimilarity``) over [-1, 1] and any other
    distance's scores (``LpDistance``, ``SNRDistance``, unnormalised dot products) over
    each batch's own detached range, since a fixed range would clamp them. A
    ``score_range`` you give is checked on every call: scores outside it raise
    ``ValueError`` (lazily under ``RANKSSL_VALIDATE``) rather than train silently clamped.

    On the GPU path (lazy validation) with pml's default ``MeanReducer`` the loss issues
    no host sync: every query is ranked and those without a relevant item are weighted 0
    (see ``_sync_free_losses``); the ``sigmoid`` and ``sorting`` estimators read the most
    relevant items of any query on the host (one sync).

    Args:
        estimator: ``"binned"`` (default), ``"sigmoid"`` (Smooth-AP), ``"sorting"`` or
            ``"fastap"`` (FastAP's formula: equals pml's ``FastAPLoss`` on cosine
            scores); see :func:`rankssl.ops.average_precision`.
        num_bins, score_range: binned estimators (None: the estimator's default);
            ``score_range="batch"`` bins over each call's own range of scores.
        temperature: sigmoid estimator (None: the estimator's default).
        steepness, sorting_network, distribution: sorting estimator (None: defaults).
            The defaults (``rankssl.ops.AP_ESTIMATORS``) keep the estimate within 0.01
            of the exact AP, fastap excepted (see :mod:`rankssl.ops.average_precision`).
        chunk_size: queries per chunk (None: the estimator's default).
        **kwargs: ``distance``, ``reducer``, ``embedding_regularizer`` ... as for any
            pml loss.

    Example:
        >>> import torch
        >>> from rankssl.pml import S2R2Loss
        >>> loss_fn = S2R2Loss()
        >>> embeddings = torch.randn(12, 8, requires_grad=True)
        >>> labels = torch.arange(4).repeat(3)
        >>> loss = loss_fn(embeddings, labels)
        >>> loss.backward()
    """

    def __init__(
        self,
        estimator: str = "binned",
        num_bins: Optional[int] = None,
        score_range: Optional[Sequence[float]] = None,
        temperature: Optional[float] = None,
        steepness: Optional[float] = None,
        sorting_network: Optional[str] = None,
        distribution: Optional[str] = None,
        chunk_size: Optional[int] = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_optional_positive_int(chunk_size, "chunk_size")
        settings = estimator_settings_from_arguments(
            estimator,
            num_bins=num_bins,
            score_range=score_range,
            temperature=temperature,
            steepness=steepness,
            sorting_network=sorting_network,
            distribution=distribution,
        )
        self.estimator_settings = check_ap_estimator(estimator, **settings)
        self.score_range = settings.get("score_range")
        self.estimator = estimator
        self.chunk_size = chunk_size
        self.add_to_recordable_attributes(list_of_names=["num_queries_without_relevant"], is_stat=True)

    def get_default_distance(self) -> CosineSimilarity:
        return ScaleSafeCosineSimilarity()

    def _scores(self, query_emb: torch.Tensor, db_emb: torch.Tensor) -> torch.Tensor:
        # pml's distances normalise the database once more unless it is passed as None.
        scores = self.distance(query_emb, None if db_emb is query_emb else db_emb).float()
        return scores if self.distance.is_inverted else -scores

    def _cosine_scores(self) -> bool:
        """Whether ``distance`` gives cosine similarities, bounded by [-1, 1]."""
        distance = self.distance
        return (
            isinstance(distance, (CosineSimilarity, DotProductSimilarity))
            and distance.is_inverted
            and distance.normalize_embeddings
            and distance.p == 2
            and getattr(distance, "power", 1) == 1
        )

    def _settings(self) -> Tuple[Dict[str, object], bool]:
        """The estimator's settings for this call and whether the scores are known to lie
        in ``score_range``. A binned estimator without a ``score_range`` of the user's
        bins cosine scores over [-1, 1] and any other distance's scores over the batch's
        own range: a fixed range would clamp them (zero gradient, a wrong AP)."""
        settings = self.estimator_settings
        if "score_range" not in settings:
            return settings, False
        if self.score_range is not None:
            return settings, False  # the user's range: checked on every call
        if self._cosine_scores():
            return settings, True
        return {**settings, "score_range": BATCH_RANGE}, False

    def _pairs(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        """(Q, N) relevance and valid masks, without a host sync when there are labels."""
        if indices_tuple is None:
            # pml's get_matches_and_diffs, in bool and without its byte copies.
            relevance = labels[:, None] == ref_labels[None, :]
            if ref_labels is not labels:
                return relevance, torch.ones_like(relevance)
            not_self = _not_self(labels.shape[0], labels.device)
            return relevance & not_self, not_self
        a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        shape = (embeddings.shape[0], ref_emb.shape[0])
        relevance = torch.zeros(shape, dtype=torch.bool, device=embeddings.device)
        valid = torch.zeros(shape, dtype=torch.bool, device=embeddings.device)
        relevance[a1, p] = True
        valid[a2, n] = True
        return relevance, valid | relevance

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.labels_or_indices_tuple_required(labels, indices_tuple)
        # Settings may have been changed after construction: re-checked (host-side, cheap).
        check_optional_positive_int(self.chunk_size, "chunk_size")
        check_ap_estimator(self.estimator, _warn=False, **self.estimator_settings)
        relevance, valid = self._pairs(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        has_relevant = relevance.any(1)
        settings, bounded = self._settings()
        if type(self.reducer) is MeanReducer and checks_lazily(embeddings):
            may_lack_valid = indices_tuple is not None or ref_emb.shape[0] < 2
            return self._sync_free_losses(
                embeddings, ref_emb, relevance, valid, has_relevant, settings, bounded, may_lack_valid
            )
        self.num_queries_without_relevant = int((~has_relevant).sum())
        if not bool(has_relevant.any()):
            return self.zero_losses()
        queries = torch.nonzero(has_relevant).squeeze(1)
        if queries.shape[0] < embeddings.shape[0]:
            embeddings, relevance, valid = embeddings[queries], relevance[queries], valid[queries]
        scores = self._scores(embeddings, ref_emb)
        ap = _average_precision(scores, relevance, valid, self.estimator, self.chunk_size, settings, bounded=bounded)
        return {"loss": {"losses": 1 - ap, "indices": queries, "reduction_type": "element"}}

    def _sync_free_losses(self, embeddings, ref_emb, relevance, valid, has_relevant, settings, bounded, may_lack_valid):
        """The same loss without a host sync (lazy validation, pml's ``MeanReducer``):
        every query is ranked; a query without a relevant item ranks a stand-in (all its
        items relevant, AP 1) and is weighted 0, the others by Q / #queries with a
        relevant item, so that the reducer's mean over all Q rows is the mean over the
        queries that have one. The per-query values handed to the reducer carry that
        weight; other reducers see the unweighted losses of the kept queries instead."""
        num_kept = has_relevant.sum()
        self.num_queries_without_relevant = embeddings.shape[0] - num_kept
        if may_lack_valid:  # a query with no item at all ranks every item instead
            valid = valid | (~has_relevant[:, None] & ~valid.any(1, keepdim=True))
        # A query without a relevant item has an all-False relevance row: its stand-in is its valid row.
        relevance = torch.where(has_relevant[:, None], relevance, valid)
        scores = self._scores(embeddings, ref_emb)
        ap = _average_precision(scores, relevance, valid, self.estimator, self.chunk_size, settings, bounded=bounded)
        weight = has_relevant / (num_kept.clamp_min(1) / embeddings.shape[0])
        queries = _rows(embeddings.shape[0], embeddings.device)
        return {"loss": {"losses": (1 - ap) * weight, "indices": queries, "reduction_type": "element"}}


_CACHE: Dict[Tuple[str, int, torch.device], torch.Tensor] = {}


def _cached(kind: str, n: int, device: torch.device, make) -> torch.Tensor:
    """A constant index tensor, built once per (kind, n, device) (keeps a launch off every call)."""
    key = (kind, n, torch.device(device))
    if key not in _CACHE:
        if len(_CACHE) >= 8:
            _CACHE.clear()
        _CACHE[key] = make()
    return _CACHE[key]


def _rows(n: int, device: torch.device) -> torch.Tensor:
    """(n,) int64 ``0 .. n-1`` on ``device``."""
    return _cached("rows", n, device, lambda: torch.arange(n, device=device))


def _not_self(n: int, device: torch.device) -> torch.Tensor:
    """(n, n) bool, False on the diagonal."""
    return _cached("not_self", n, device, lambda: ~torch.eye(n, dtype=torch.bool, device=device))
