"""S2R2: Self-Supervised Ranking.

Varamesh, Diba, Tuytelaars, Van Gool, "Self-Supervised Ranking for Representation
Learning" (arXiv:2010.07258). Every image of a batch is augmented into V views; every
view is a retrieval query against all the other views of the batch, where the V - 1
other views of its own image are relevant. The encoder maximises the average precision
(AP) of those rankings: loss = 1 - mean AP, a listwise objective over many views.

Only the paper's abstract is available to us (its body is not). Every setting the
abstract does not state is rankssl's choice, not the paper's: the AP estimator (the
default here is the binned estimator of :mod:`rankssl.ops.average_precision`, FastAP /
Revaud et al.'s quantised AP, with the Smooth-AP ``sigmoid`` and the sorting-network
``sorting`` estimators one argument away), its settings, the cosine similarity, the
number of views (the recipes' "8 to 16" views and their ResNet-18 backbones are
rankssl's reading, not figures taken from the paper's text) and the batch composition.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from rankssl.losses._views import Views, as_view_list, views_from_call
from rankssl.ops import dist
from rankssl.ops.average_precision import BATCH_RANGE, _average_precision, average_precision, check_ap_estimator
from rankssl.ops.validation import check_choice, check_embeddings, check_optional_positive_int, safe_normalize

__all__ = ["S2R2Loss", "ranking_ap_loss"]

SIMILARITIES = ("cosine", "dot")


def _check_similarity(similarity) -> None:
    if not callable(similarity):
        check_choice(similarity, "similarity", SIMILARITIES, "similarity")


def ranking_ap_loss(
    query_emb: torch.Tensor,
    db_emb: torch.Tensor,
    relevance: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    estimator: str = "binned",
    similarity: Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = "cosine",
    chunk_size: Optional[int] = None,
    **estimator_settings,
) -> torch.Tensor:
    """Per-query ``1 - AP`` of ranking a database by similarity to each query.

    The functional core of both :class:`S2R2Loss` and :class:`rankssl.pml.S2R2Loss`.

    Args:
        query_emb: (Q, D) floating embeddings of the queries.
        db_emb: (N, D) embeddings of the database.
        relevance: (Q, N) bool, ``True`` where a database item is relevant to a query.
            Every query needs at least one relevant valid item.
        valid: (Q, N) bool, database items ranked for each query (``False``: the query
            itself, ignored pairs). Default: all.
        estimator, chunk_size, **estimator_settings: see
            :func:`rankssl.ops.average_precision`.
        similarity: ``"cosine"`` (embeddings L2-normalised first), ``"dot"``, or a
            callable ``(query_emb, db_emb) -> (Q, N) scores`` (higher = more similar).
            The binned estimators bin scores over ``score_range`` (default [-1, 1],
            right for cosine); for other scores give their range, or
            ``score_range="batch"`` to bin over each call's own range of scores.

    Returns:
        (Q,) ``1 - AP`` per query, scores computed in float32.

    Example:
        >>> queries, database = torch.randn(4, 8), torch.randn(10, 8)
        >>> relevance = torch.zeros(4, 10, dtype=torch.bool)
        >>> relevance[:, 0] = True
        >>> ranking_ap_loss(queries, database, relevance).shape
        torch.Size([4])
    """
    _check_similarity(similarity)
    check_embeddings(query_emb, "query_emb")
    check_embeddings(db_emb, "db_emb")
    if query_emb.shape[1] != db_emb.shape[1]:
        raise ValueError(f"query_emb has dim {query_emb.shape[1]} but db_emb has dim {db_emb.shape[1]}.")
    if callable(similarity):
        scores = similarity(query_emb, db_emb)
    else:
        query_emb, db_emb = query_emb.float(), db_emb.float()
        if similarity == "cosine":
            query_emb, db_emb = safe_normalize(query_emb, dim=1), safe_normalize(db_emb, dim=1)
        scores = query_emb @ db_emb.T
    return 1 - average_precision(scores, relevance, valid, estimator, chunk_size, **estimator_settings)


_MASK_CACHE: Dict[Tuple, Tuple[torch.Tensor, torch.Tensor]] = {}
#: Masks up to this many entries are kept between calls (the shapes of a training run).
_CACHED_MASK_ELEMENTS = 1 << 24


def _view_masks(
    batch_size: int, num_views: int, processes: int, process: int, device: torch.device
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(Q, N) relevance and valid masks of S2R2's rankings: query ``v * B + b`` of this
    process ranks the N = processes * V * B views; relevant are the other views of image
    ``b``, valid all but the query itself. Built once per shape and device."""
    key = (batch_size, num_views, processes, process, str(device))
    cached = _MASK_CACHE.get(key)
    if cached is not None:
        return cached
    image = torch.arange(batch_size, device=device).repeat(num_views)
    db_image = torch.cat([image + p * batch_size for p in range(processes)])
    own = torch.arange(image.shape[0], device=device) + process * image.shape[0]
    valid = torch.arange(db_image.shape[0], device=device)[None, :] != own[:, None]
    relevance = ((image + process * batch_size)[:, None] == db_image[None, :]) & valid
    if relevance.numel() <= _CACHED_MASK_ELEMENTS and not torch.compiler.is_compiling():
        _MASK_CACHE[key] = (relevance, valid)
    return relevance, valid


#: The constructor arguments that each estimator uses (the others must stay None).
ESTIMATOR_ARGUMENTS = {
    "binned": ("num_bins", "score_range"),
    "fastap": ("num_bins", "score_range"),
    "sigmoid": ("temperature",),
    "sorting": ("steepness", "sorting_network", "distribution"),
}


def estimator_settings_from_arguments(estimator: str, **arguments) -> Dict[str, Any]:
    """The estimator's settings from the loss's constructor arguments (None: default).

    An argument the estimator does not use is refused (``S2R2Loss(temperature=0.01)``
    with the binned estimator would otherwise be silently ignored).

    Raises:
        ValueError: an unknown estimator, or an argument the estimator does not use.
    """
    check_choice(estimator, "estimator", ESTIMATOR_ARGUMENTS, "AP estimator")
    used = ESTIMATOR_ARGUMENTS[estimator]
    ignored = [name for name, value in arguments.items() if value is not None and name not in used]
    if ignored:
        users = {name: [e for e, names in ESTIMATOR_ARGUMENTS.items() if name in names] for name in ignored}
        detail = "; ".join(f"{name} applies to estimator {' or '.join(map(repr, users[name]))}" for name in ignored)
        raise ValueError(
            f"estimator={estimator!r} does not use {', '.join(ignored)} ({detail}); drop the argument or "
            "choose that estimator."
        )
    settings = {name: value for name, value in arguments.items() if value is not None}
    if isinstance(settings.get("score_range"), (list, tuple)):
        settings["score_range"] = tuple(settings["score_range"])
    return settings


class S2R2Loss(nn.Module):
    """Self-Supervised Ranking loss (Varamesh et al., 2020), lightly-style.

    The V views of B images make B * V queries. Each ranks all other B * V - 1 views
    (itself excluded); the V - 1 other views of its image are relevant. The loss is
    ``1 - mean AP`` over all queries, AP estimated by ``estimator``.

    Args:
        estimator: ``"binned"`` (default; FastAP-style triangular histograms),
            ``"sigmoid"`` (Smooth-AP), ``"sorting"`` (sorting network) or
            ``"fastap"`` (FastAP's own formula).
        num_bins, temperature, steepness, sorting_network, distribution: the
            estimator's settings (an argument the chosen estimator does not use, e.g.
            ``temperature`` with ``binned``, raises ``ValueError`` instead of being
            ignored); None (default) takes the estimator's own default
            (``rankssl.ops.AP_ESTIMATORS``: binned 640 bins, sigmoid temperature
            0.0025, sorting ``optimal`` relaxation at steepness 1e4, fastap 10 bins),
            chosen so that the estimate is within 0.01 of the exact AP (fastap
            excepted; see :mod:`rankssl.ops.average_precision`).
        similarity: ``"cosine"`` (default) or ``"dot"``.
        score_range: binned estimators only: the ``(low, high)`` score interval the bins
            cover. Default (None): ``(-1, 1)`` for cosine; for ``"dot"``, ``"batch"``:
            the bins span each batch's own (detached) range of dot products. Raw dot
            products are unbounded, and clamping them to [-1, 1] would put most of them
            on a boundary, where the estimator has zero gradient. The ``sigmoid``
            temperature and the ``sorting`` steepness act on the scores as they are:
            scale them to the dot products' spread yourself.
        chunk_size: queries per chunk (memory bound); None: the estimator's default.
        gather_distributed: rank against the views of every process (gathered with
            gradients); the queries stay the local views.

    Shapes:
        ``forward(*views)``, ``forward([view0, view1, ...])`` or lightly's
        ``forward(out0=view0, out1=view1)`` with V >= 2 views of shape (B, D), B >= 2;
        returns a scalar. Scores are float32, also under autocast. Settings changed after
        construction are re-checked on every call.

    Example:
        >>> import torch
        >>> from rankssl.losses import S2R2Loss
        >>> loss_fn = S2R2Loss()
        >>> views = [torch.randn(8, 16, requires_grad=True) for _ in range(4)]
        >>> loss = loss_fn(views)
        >>> loss.backward()
    """

    def __init__(
        self,
        estimator: str = "binned",
        num_bins: Optional[int] = None,
        temperature: Optional[float] = None,
        steepness: Optional[float] = None,
        sorting_network: Optional[str] = None,
        distribution: Optional[str] = None,
        similarity: str = "cosine",
        chunk_size: Optional[int] = None,
        gather_distributed: bool = False,
        score_range: Optional[Union[Tuple[float, float], str]] = None,
    ) -> None:
        super().__init__()
        _check_similarity(similarity)
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
        if estimator in ("binned", "fastap") and score_range is None and similarity == "dot":
            settings["score_range"] = BATCH_RANGE
        self.estimator_settings = check_ap_estimator(estimator, **settings)
        self.estimator = estimator
        self.similarity = similarity
        self.chunk_size = chunk_size
        dist.check_gather_distributed(gather_distributed)
        self.gather_distributed = gather_distributed

    def forward(
        self, *views: Views, out0: Optional[torch.Tensor] = None, out1: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        views = views_from_call(views, out0, out1, "S2R2Loss")
        view_list = as_view_list(views, loss_name="S2R2Loss", labelled_alternative="rankssl.pml.S2R2Loss")
        self._check_settings()
        # Scores in float32 as documented, also under autocast (bf16 scores would blur ranks).
        with torch.autocast(view_list[0].device.type, enabled=False):
            return self._forward(view_list)

    def _forward(self, view_list: List[torch.Tensor]) -> torch.Tensor:
        num_views, batch_size = len(view_list), view_list[0].shape[0]
        queries = torch.cat(view_list, dim=0)  # row v * B + b: view v of image b
        processes, process = 1, 0
        database = queries
        if self.gather_distributed and dist.is_distributed():
            database = dist.gather(queries)
            processes, process = dist.world_size(), dist.rank()
        relevance, valid = _view_masks(batch_size, num_views, processes, process, queries.device)
        query_scores = queries.float()
        if self.similarity == "cosine":
            query_scores = safe_normalize(query_scores, dim=1)
        if database is queries:
            db_scores = query_scores
        else:
            db_scores = database.float()
            db_scores = safe_normalize(db_scores, dim=1) if self.similarity == "cosine" else db_scores
        scores = query_scores @ db_scores.T
        # Every query has exactly V - 1 relevant items and only itself left out: the
        # masks need no check, and the estimators know their width without a host sync.
        ap = _average_precision(
            scores,
            relevance,
            valid,
            self.estimator,
            self.chunk_size,
            self.estimator_settings,
            max_relevant=num_views - 1,
            # Cosine scores lie in the default (-1, 1) by construction: no range check needed.
            bounded=self.similarity == "cosine" and self.estimator_settings.get("score_range") == (-1.0, 1.0),
        )
        return 1 - ap.mean()

    def _check_settings(self) -> None:
        """Re-check the settings on every call (cheap, host-side): attributes may have been
        changed after construction."""
        _check_similarity(self.similarity)
        check_optional_positive_int(self.chunk_size, "chunk_size")
        check_ap_estimator(self.estimator, _warn=False, **self.estimator_settings)

    def extra_repr(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.estimator_settings.items())
        return (
            f"estimator={self.estimator!r}, {settings}, similarity={self.similarity!r}, "
            f"chunk_size={self.chunk_size}, gather_distributed={self.gather_distributed}"
        )
