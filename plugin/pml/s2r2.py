"""S2R2 as a pytorch-metric-learning loss.

Varamesh et al., "Self-Supervised Ranking for Representation Learning" (arXiv:2010.07258).
The AP objective of :mod:`rankssl.losses.s2r2` with relevance defined by labels (or a
miner's ``indices_tuple``) instead of views, so it goes wherever a pml loss goes: with
:class:`rankssl.pml.SelfSupervisedLoss` it is S2R2 over views, with
:class:`rankssl.pml.CrossBatchMemory` the database is a memory bank.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from rankssl.losses.s2r2 import ranking_ap_loss
from rankssl.ops.average_precision import check_ap_estimator
from rankssl.ops.validation import check_optional_positive_int
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
    bin scores over ``score_range`` (default [-1, 1], for cosine): set it to the range
    of other distances' scores.

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
        settings: dict = {}
        if estimator in ("binned", "fastap"):
            if num_bins is not None:
                settings["num_bins"] = num_bins
            if score_range is not None:
                settings["score_range"] = score_range if isinstance(score_range, str) else tuple(score_range)
        elif estimator == "sigmoid":
            settings["temperature"] = temperature
        elif estimator == "sorting":
            settings.update(steepness=steepness, sorting_network=sorting_network, distribution=distribution)
        settings = {name: value for name, value in settings.items() if value is not None}
        self.estimator_settings = check_ap_estimator(estimator, **settings)
        self.estimator = estimator
        self.chunk_size = chunk_size
        self.add_to_recordable_attributes(list_of_names=["num_queries_without_relevant"], is_stat=True)

    def get_default_distance(self) -> CosineSimilarity:
        return ScaleSafeCosineSimilarity()

    def _scores(self, query_emb: torch.Tensor, db_emb: torch.Tensor) -> torch.Tensor:
        scores = self.distance(query_emb, db_emb).float()
        return scores if self.distance.is_inverted else -scores

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.labels_or_indices_tuple_required(labels, indices_tuple)
        a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        shape = (embeddings.shape[0], ref_emb.shape[0])
        relevance = torch.zeros(shape, dtype=torch.bool, device=embeddings.device)
        valid = torch.zeros(shape, dtype=torch.bool, device=embeddings.device)
        relevance[a1, p] = True
        valid[a2, n] = True
        valid |= relevance
        has_relevant = relevance.any(1)
        self.num_queries_without_relevant = int((~has_relevant).sum())
        if not bool(has_relevant.any()):
            return self.zero_losses()
        queries = torch.nonzero(has_relevant).squeeze(1)
        if queries.shape[0] < embeddings.shape[0]:
            embeddings, relevance, valid = embeddings[queries], relevance[queries], valid[queries]
        losses = ranking_ap_loss(
            embeddings,
            ref_emb,
            relevance,
            valid,
            self.estimator,
            self._scores,
            self.chunk_size,
            **self.estimator_settings,
        )
        return {"loss": {"losses": losses, "indices": queries, "reduction_type": "element"}}
