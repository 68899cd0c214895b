"""Differentiable average precision (AP) of retrieval rankings, computed in query chunks.

Every row of a (Q, N) score matrix ranks the N database items for one query (higher
score = ranked higher). A (Q, N) relevance mask marks the items that should come first,
and an optional (Q, N) ``valid`` mask drops items from the ranking altogether (the
query itself, padding). The exact AP of a row is the mean, over its relevant items
``j``, of the precision at ``j``'s score:

    AP = 1/|P| sum_{j in P} #{k in P: s_k >= s_j} / #{k valid: s_k >= s_j},

which is scikit-learn's ``average_precision_score`` (ties count as ranked together).
It is piecewise constant in the scores, so the estimators below relax it:

``binned`` (default)
    Soft histograms of the scores with triangular kernels over ``num_bins`` equal
    intervals of ``score_range``: the quantised AP of FastAP (Cakir, He, Xia, Kulis,
    Sclaroff, "Deep Metric Learning to Rank", CVPR 2019) and of Revaud, Almazan,
    Rezende, de Souza, "Learning with Average Precision: Training Image Retrieval with
    a Listwise Loss" (ICCV 2019). Each item's kernel touches two adjacent bin centres,
    so the histograms are built with two ``scatter_add`` calls: O(N + bins) memory per
    query instead of FastAP's O(N * bins). Precision is read per relevant item at its
    own kernel weights with its own mass taken out, which makes the estimate tend to the
    exact AP as bins grow; FastAP's formula (sum over bins of ``h+ H+ / H``) counts an
    item split over two bins as partly ranked above itself and keeps an O(1) bias.
    That formula is available as ``fastap`` and matches pytorch-metric-learning's
    ``FastAPLoss`` on cosine scores. The bias of ``binned`` falls about as ``1 /
    num_bins``; it grows with how densely the scores crowd round the relevant items,
    and so with N (about x2.5 from 256 to 4,096 items). The default 640 bins keeps it
    under 0.01 (worst measured -0.008) on S2R2's rankings up to N = 4,096. Fewer bins (e.g. 20-40)
    give a smoother, coarser objective that may train as well or better, but it is then not an AP
    estimate (-0.14 at 20 bins).
``sigmoid``
    Smooth-AP (Brown, Xie, Kalogeiton, Zisserman, "Smooth-AP: Smoothing the Path
    Towards Large-Scale Image Retrieval", ECCV 2020): ranks are sums of
    ``sigmoid((s_k - s_j) / temperature)``. The paper's 0.01 underestimates AP by up
    to 0.035 when scores crowd together; the default 0.0025 stays within 0.01. Only
    the rows of relevant items are formed, (chunk, P, N) at a time, never (Q, N, N).
``sorting``
    Relevance is carried through a relaxed sorting network of
    :mod:`rankssl.ops.sorting` (Petersen et al., ICML 2021 / ICLR 2022): the soft
    permutation ``P`` of each row maps relevance and validity to ranks
    (``relevance @ P``, i.e. ``P^T @ relevance``) without forming ``P``, and AP is
    computed on that soft ranking. The whole network is one fused operator
    (``soft_permutation_matmul(..., transpose=True)``: Triton on the GPU, C++ on the
    CPU) where the kernels apply, else the layers recorded one by one.
    Tends to the exact AP as ``steepness`` grows. A network of log2(N)^2 / 2 layers
    blurs the ranking at every layer, so the comparators must be sharp on the scale of
    the gaps between neighbouring scores (about 1 / N): the former default (Cauchy,
    steepness 100) underestimates AP by 0.2-0.6 at N >= 256. The default is the
    monotonic ``optimal`` relaxation (ICLR 2022; its error tails are ~5x smaller than
    Cauchy's at equal steepness) at steepness 1e4: bias under 0.005 for N = 256 to
    4,096, growing slowly with N (about x2 over that range). O(N * layers) per query.

Queries are processed ``chunk_size`` at a time; for ``sigmoid`` and for ``sorting`` on
the torch path each chunk is recomputed on the backward pass (activation checkpointing),
so the memory held for backward is that of the inputs, linear in Q for a fixed N, plus
one chunk's work. The fused ``sorting`` operator keeps only its inputs for the backward
and is not checkpointed.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch.utils.checkpoint import checkpoint

from rankssl.ops import fused
from rankssl.ops.networks import check_network, get_network
from rankssl.ops.permutation_matmul import permutation_matmul, under_functorch
from rankssl.ops.relaxations import check_relaxation
from rankssl.ops.validation import (
    check_choice,
    check_finite,
    check_float,
    check_positive_int,
    check_tensor,
    checks_lazily,
    defer_check,
)

__all__ = [
    "AP_ESTIMATORS",
    "average_precision",
    "check_ap_estimator",
    "exact_average_precision",
]

#: ``score_range`` value that bins over each call's own (detached) range of valid scores.
BATCH_RANGE = "batch"

#: Default settings of every estimator; ``average_precision`` accepts exactly these.
#: Chosen by measurement (``benchmarks/bench_ap_bias.py``, RESULTS.md): on S2R2's
#: rankings with N = 256 to 4,096 items and V = 4 to 16 views, ``binned``, ``sigmoid``
#: and ``sorting`` at these defaults are within 0.01 of the exact AP on average (worst
#: measured -0.008, -0.005 and -0.005). ``fastap`` keeps FastAP's (and
#: pytorch-metric-learning's) 10 bins: its formula is biased at any number of bins (up
#: to -0.010 even at 10,000, at N = 4,096), so no setting meets that bound, and it warns.
AP_ESTIMATORS: Dict[str, Dict[str, object]] = {
    "binned": dict(num_bins=640, score_range=(-1.0, 1.0)),
    "fastap": dict(num_bins=10, score_range=(-1.0, 1.0)),
    "sigmoid": dict(temperature=0.0025),
    "sorting": dict(sorting_network="bitonic_mirrored", distribution="optimal", steepness=1e4, art_lambda=0.25),
}

#: Bias of ``fastap`` that no number of bins removes (see AP_ESTIMATORS); said once.
FASTAP_WARNING = (
    "The 'fastap' estimator (FastAP's formula, as pytorch-metric-learning's FastAPLoss) is "
    "not an estimate of average precision: it lies below the exact AP by about 0.1 to 0.4 "
    "at its default 10 bins and still by up to about 0.01 at any number of bins "
    "(benchmarks/bench_ap_bias.py). Use estimator='binned' for an AP estimate."
)

#: Elements of one chunk's largest intermediate when ``chunk_size`` is None: the
#: per-chunk work is (chunk, N) for the binned estimators, (chunk, P, N) for sigmoid and
#: (chunk, N / 2, layers) for sorting. As few chunks as memory allows: every chunk costs
#: the same number of kernel launches whatever its size.
CHUNK_ELEMENTS = {"binned": 1 << 23, "fastap": 1 << 23, "sigmoid": 1 << 24, "sorting": 1 << 24}

#: Scores this far outside a fixed ``score_range`` (relative to its width) count as
#: rounding (a cosine of 1 + 1e-7), not as scores the bins would clamp.
RANGE_TOLERANCE = 1e-4


def default_chunk_size(estimator: str, num_items: int, max_relevant: int = 1) -> int:
    """Queries per chunk for ``chunk_size=None``: the largest chunk whose biggest
    intermediate holds ``CHUNK_ELEMENTS[estimator]`` elements."""
    per_query = num_items
    if estimator == "sigmoid":
        per_query = num_items * max(1, max_relevant)
    elif estimator == "sorting":
        per_query = num_items * max(1, math.ceil(math.log2(max(num_items, 2))) ** 2) // 2
    return max(1, CHUNK_ELEMENTS[estimator] // max(1, per_query))


def check_ap_estimator(estimator: str, _warn: bool = True, **settings) -> Dict[str, object]:
    """Validate an estimator name and its settings; return the full settings with defaults.

    Raises:
        ValueError: unknown estimator or a bad value; TypeError: a setting the estimator
        does not take.
    """
    check_choice(estimator, "estimator", AP_ESTIMATORS, "AP estimator")
    defaults = AP_ESTIMATORS[estimator]
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise TypeError(
            f"The {estimator!r} AP estimator does not take {', '.join(unknown)}; "
            f"its settings are {', '.join(defaults)}."
        )
    full = {**defaults, **settings}
    if estimator == "fastap" and _warn:
        warnings.warn(FASTAP_WARNING, UserWarning, stacklevel=3)
    if estimator in ("binned", "fastap"):
        check_positive_int(full["num_bins"], "num_bins")
        full["score_range"] = _check_score_range(full["score_range"])
    elif estimator == "sigmoid":
        check_float(full["temperature"], "temperature", 0.0)
    else:
        check_network(full["sorting_network"])
        check_relaxation(full["distribution"], full["steepness"], full["art_lambda"])
    return full


def _check_score_range(score_range):
    """``(low, high)`` finite floats with low < high, or ``"batch"``."""
    if isinstance(score_range, str) and score_range == BATCH_RANGE:
        return score_range
    try:
        low, high = (float(bound) for bound in score_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"score_range must be (low, high) with low < high, or {BATCH_RANGE!r}; got {score_range!r}."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"score_range must be (low, high) finite with low < high, got {score_range!r}.")
    return (low, high)


def _batch_score_range(scores: torch.Tensor, valid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The (detached) range of the valid scores, for ``score_range="batch"``, as two
    0-dim tensors on the scores' device (no host sync)."""
    detached = scores.detach().float()
    low = detached.masked_fill(~valid, float("inf")).amin()
    high = detached.masked_fill(~valid, float("-inf")).amax()
    margin = 1e-6 * torch.maximum(torch.maximum(low.abs(), high.abs()), torch.ones_like(low))
    # A row of equal scores: widen the range so the bins have a width.
    return low - margin, torch.maximum(high + margin, low + margin + 1e-6)


def _check_in_range(scores: torch.Tensor, valid: torch.Tensor, score_range: Tuple[float, float]) -> None:
    """Refuse valid scores outside a fixed ``score_range``: the bins would clamp them to
    its ends, where the estimate has no gradient, and the AP would be that of the
    clamped scores. Lazy under ``RANKSSL_VALIDATE`` (see :mod:`rankssl.ops.validation`)."""
    low, high = score_range
    slack = RANGE_TOLERANCE * (high - low)
    detached = scores.detach()
    outside = ((detached < low - slack) | (detached > high + slack)) & valid
    advice = (
        "the bins would clamp them (zero gradient, a wrong AP). Give the scores' range as score_range=(low, "
        "high), or score_range='batch' to bin over each call's own range."
    )
    if checks_lazily(scores):
        defer_check(outside.any(), f"scores lie outside score_range {score_range}: {advice}")
        return
    if bool(outside.any()):
        ranked = detached[valid]
        raise ValueError(
            f"scores lie outside score_range {score_range} (valid scores span [{float(ranked.min()):.4g}, "
            f"{float(ranked.max()):.4g}]): {advice}"
        )


def _check_inputs(
    scores: torch.Tensor, relevance: torch.Tensor, valid: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    check_tensor(scores, "scores", dims=(2,), shape_hint="(num_queries, num_items)")
    if scores.shape[1] < 2:
        raise ValueError(f"A ranking needs at least 2 items per query, got {scores.shape[1]}.")
    check_finite([("scores", scores)], row_axis_name="query")
    masks = []
    for name, mask in (("relevance", relevance), ("valid", valid)):
        if mask is None:
            masks.append(torch.ones_like(scores, dtype=torch.bool))
            continue
        if not isinstance(mask, torch.Tensor) or mask.shape != scores.shape:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"{name} must have the shape of scores {tuple(scores.shape)}, got {shape}.")
        if mask.is_floating_point() or mask.is_complex():
            raise TypeError(f"{name} must be a bool (or 0/1 integer) mask, got dtype {mask.dtype}.")
        masks.append(mask.to(device=scores.device, dtype=torch.bool))
    valid_mask = masks[1]
    relevance_mask = masks[0] & valid_mask
    num_relevant = relevance_mask.sum(1)
    if checks_lazily(scores):
        defer_check(
            (num_relevant == 0).any(),
            "Some queries have no relevant valid item; AP is undefined for them. Drop those queries or give "
            "each at least one relevant item (found by a lazy check: see RANKSSL_VALIDATE).",
        )
    elif not bool((num_relevant > 0).all()):
        missing = torch.nonzero(num_relevant == 0).flatten()
        raise ValueError(
            f"{missing.numel()} of {scores.shape[0]} queries have no relevant valid item "
            f"(first: query {int(missing[0])}); AP is undefined for them. Drop those queries "
            "or give each at least one relevant item."
        )
    return relevance_mask, valid_mask


def exact_average_precision(
    scores: torch.Tensor, relevance: torch.Tensor, valid: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Exact AP per query (no gradient), ties counted as in scikit-learn.

    Args:
        scores: (Q, N) floating scores, higher = ranked higher.
        relevance: (Q, N) bool, the relevant items; every query needs one.
        valid: (Q, N) bool, items that take part in the ranking (default: all).

    Returns:
        (Q,) float tensor.

    Example:
        >>> scores = torch.tensor([[0.9, 0.8, 0.1]])
        >>> exact_average_precision(scores, torch.tensor([[True, False, True]]))
        tensor([0.8333])
    """
    relevance, valid = _check_inputs(scores, relevance, valid)
    scores = scores.detach().float()
    out = []
    # Only the rows of relevant items are compared, (chunk, P, N) at a time: the memory
    # is that of the inputs even at N in the thousands.
    for start in range(0, scores.shape[0], 64):
        s, rel, val = (t[start : start + 64] for t in (scores, relevance, valid))
        anchor, is_item = _relevant_scores(s, rel)
        at_or_above = s[:, None, :] >= anchor[:, :, None]  # [q, j, k]: item k scores >= item j
        relevant_above = (at_or_above & rel[:, None, :]).sum(-1).float()
        valid_above = (at_or_above & val[:, None, :]).sum(-1).float()
        precision = (relevant_above / valid_above.clamp_min(1.0)).masked_fill(~is_item, 0.0)
        out.append(precision.sum(1) / rel.sum(1))
    return torch.cat(out)


def _relevant_scores(s: torch.Tensor, rel: torch.Tensor, width: Optional[int] = None, with_order: bool = False):
    """(c, P) scores of each row's relevant items (padded to the widest row with +inf,
    which no item reaches) and the (c, P) mask of real entries (and, ``with_order``,
    their (c, P) column indices). ``width``: the most relevant items of any row, when
    the caller knows it; else it is read from ``rel`` (a host sync)."""
    num_relevant = rel.sum(1)
    if width is None:
        width = int(num_relevant.max())
    # Indices of each row's relevant items first (stable), padded to the widest row.
    order = torch.sort(rel.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :width]
    is_item = torch.arange(width, device=s.device) < num_relevant[:, None]
    scores = s.gather(1, order).masked_fill(~is_item, float("inf"))
    return (scores, is_item, order) if with_order else (scores, is_item)


def _binned_weights(s: torch.Tensor, num_bins: int, score_range: Sequence):
    """Triangular kernel of every score over num_bins + 1 centres numbered from the top
    (centre 0 at the range's high end): the index of the centre just above the score and
    the weight ``t`` of the one just below it (the one above gets ``1 - t``). Counting
    from the top makes "at or above" a plain cumulative sum. The bounds are floats or
    0-dim tensors (a batch's own range, kept on the device)."""
    low, high = score_range
    if isinstance(low, torch.Tensor):
        position = (high - torch.minimum(torch.maximum(s, low), high)) * (num_bins / (high - low))
    else:
        low, high = float(low), float(high)
        position = (high - s.clamp(low, high)) * (num_bins / (high - low))
    index = position.detach().long().clamp(max=num_bins - 1)  # position >= 0: truncation is the floor
    return index, position - index


def _histograms(s, rel, valid, num_bins, score_range):
    """Soft histograms of the relevant and of the valid items, (c, 2, num_bins + 1), over
    centres from the top, built together (items outside a mask go to a dropped bin);
    with the kernel of every item (``index``, ``t``) as :func:`_binned_weights`."""
    index, t = _binned_weights(s, num_bins, score_range)
    num_centres = num_bins + 1
    masked = index.unsqueeze(1).expand(-1, 2, -1).masked_fill(~torch.stack((rel, valid), dim=1), num_centres)
    hist = torch.zeros(s.shape[0], 2, num_centres + 2, dtype=t.dtype, device=s.device)
    below = t.unsqueeze(1).expand_as(masked)
    hist = hist.scatter_add(2, masked, 1 - below).scatter_add(2, masked + 1, below)
    return index, t, hist[..., :num_centres]


def _binned_ap(s, rel, valid, num_bins, score_range, max_relevant=None):
    index, t, hist = _histograms(s, rel, valid, num_bins, score_range)
    at_or_above = hist.cumsum(2)  # [q, (relevant, valid), b]: items at or above centre b
    # Each item's kernel-weighted count of items at or above it.
    both = index.unsqueeze(1).expand(-1, 2, -1)
    read = torch.lerp(at_or_above.gather(2, both), at_or_above.gather(2, both + 1), t.unsqueeze(1))
    # The item's own mass as read by its own kernel is sum_b w_b sum_{b'<=b} w_b' =
    # (1 + (1-t)^2 + t^2) / 2, so 1 - own = t (1 - t).
    not_own = (t * (1 - t)).unsqueeze(1)
    counts = not_own + read
    # For a relevant item both counts are >= 1; the clamp guards the others (masked out).
    precision = counts[:, 0] / counts[:, 1].clamp_min(1e-6)
    return (precision * rel).sum(1) / rel.sum(1)


def _fastap(s, rel, valid, num_bins, score_range, max_relevant=None):
    _, _, hist = _histograms(s, rel, valid, num_bins, score_range)
    at_or_above = hist.cumsum(2)
    ratio = at_or_above[:, 0] / at_or_above[:, 1].clamp_min(1e-12)
    return (hist[:, 0] * ratio).sum(1) / rel.sum(1)


def _sigmoid_ap(s, rel, valid, temperature, max_relevant=None):
    num_relevant = rel.sum(1)
    anchor, is_item = _relevant_scores(s, rel, max_relevant)
    anchor = anchor.masked_fill(~is_item, 0.0)  # (c, P)
    ranked = s.masked_fill(~valid, float("-inf"))
    above = torch.sigmoid_((ranked[:, None, :] - anchor[:, :, None]) / temperature)  # (c, P, N)
    # Each relevant item j adds sigmoid(0) = 1/2 for itself; Smooth-AP ranks exclude it.
    rank_all = 0.5 + above.sum(-1)
    rank_relevant = 0.5 + torch.bmm(above, rel.to(above.dtype)[:, :, None]).squeeze(-1)
    precision = (rank_relevant / rank_all).masked_fill(~is_item, 0.0)
    return precision.sum(1) / num_relevant


def _sorting_ap(s, rel, valid, sorting_network, distribution, steepness, art_lambda, max_relevant=None):
    # Invalid items go below every valid one; they carry no validity mass either way.
    floor = s.detach().masked_fill(~valid, float("inf")).min() - 1.0
    x = s.masked_fill(~valid, 0.0) + (~valid).to(s.dtype) * floor
    carried = torch.stack((rel, valid), dim=-1).to(s.dtype)  # (c, N, 2): [relevance, validity]
    layers = get_network(sorting_network, s.shape[1], s.device)
    # P^T @ carried = [relevance, validity] @ P: what lands at each rank, in one operator.
    ranked = permutation_matmul(x, carried, layers, distribution, steepness, art_lambda, transpose=True)
    relevant_at, valid_at = ranked[..., 0], ranked[..., 1]  # ascending ranks: the top is last
    precision = relevant_at.flip(1).cumsum(1).flip(1) / valid_at.flip(1).cumsum(1).flip(1).clamp_min(1e-6)
    return (relevant_at * precision).sum(1) / rel.sum(1)


_ESTIMATOR_FUNCTIONS: Dict[str, Callable[..., torch.Tensor]] = {
    "binned": _binned_ap,
    "fastap": _fastap,
    "sigmoid": _sigmoid_ap,
    "sorting": _sorting_ap,
}
_CHECKPOINTED = ("sigmoid", "sorting")


def _fused_sorting(scores: torch.Tensor) -> bool:
    """Whether the ``sorting`` estimator's network runs as one fused operator for these
    (float32) scores: it keeps only its inputs for the backward, so checkpointing would
    only run it twice."""
    return not under_functorch(scores) and fused.backend_for(scores.device.type, scores.dtype) is not None


def average_precision(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    estimator: str = "binned",
    chunk_size: Optional[int] = None,
    **settings,
) -> torch.Tensor:
    """Differentiable AP of every query's ranking, by the estimator named.

    Args:
        scores: (Q, N) floating scores (e.g. cosine similarities), higher = ranked
            higher. Computed in float32.
        relevance: (Q, N) bool mask of relevant items. Every query needs at least one
            relevant valid item (else ``ValueError``).
        valid: (Q, N) bool mask of items in the ranking (``False`` for the query itself
            or padding); default all.
        estimator: ``"binned"`` (default), ``"sigmoid"``, ``"sorting"`` or ``"fastap"``
            (see the module docstring).
        chunk_size: queries per chunk (default: as many as ``CHUNK_ELEMENTS`` allows).
        **settings: the estimator's settings (``AP_ESTIMATORS`` lists them with their
            defaults): ``num_bins``, ``score_range`` (binned, fastap; ``(low, high)``,
            or ``"batch"`` for the detached range of this call's valid scores, which
            suits unbounded scores such as raw dot products); ``temperature``
            (sigmoid); ``sorting_network``, ``distribution``, ``steepness``,
            ``art_lambda`` (sorting).

    Returns:
        (Q,) AP estimates in [0, 1], differentiable with respect to ``scores``.

    Example:
        >>> scores = torch.tensor([[0.9, 0.8, 0.1]], requires_grad=True)
        >>> relevant = torch.tensor([[True, False, True]])
        >>> ap = average_precision(scores, relevant, estimator="sigmoid", temperature=1e-3)
        >>> round(float(ap), 4)
        0.8333
        >>> (1 - ap).sum().backward()
    """
    settings = check_ap_estimator(estimator, **settings)
    if chunk_size is not None:
        check_positive_int(chunk_size, "chunk_size")
    relevance, valid = _check_inputs(scores, relevance, valid)
    return _average_precision(scores, relevance, valid, estimator, chunk_size, settings)


def _average_precision(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    valid: torch.Tensor,
    estimator: str,
    chunk_size: Optional[int],
    settings: Dict[str, Any],
    max_relevant: Optional[int] = None,
    bounded: bool = False,
) -> torch.Tensor:
    """:func:`average_precision` on checked inputs: bool ``relevance`` (within ``valid``),
    settings from :func:`check_ap_estimator`. ``max_relevant``: the most relevant items
    of any query, when the caller knows it (else the sigmoid estimator reads it from
    ``relevance``, a host sync; the sorting estimator does not need it). ``bounded``: the
    caller guarantees the scores lie in a fixed ``score_range`` (cosine similarities in
    [-1, 1]), so the range check is skipped. No host sync otherwise."""
    score_range = settings.get("score_range")
    if score_range == BATCH_RANGE:
        settings = {**settings, "score_range": _batch_score_range(scores, valid)}
    elif score_range is not None and not bounded:
        _check_in_range(scores, valid, score_range)
    scores = scores.float()
    if max_relevant is None and estimator == "sigmoid":
        # One width for every chunk, so that the chunking never changes the result.
        max_relevant = int(relevance.sum(1).max())
    if chunk_size is None:
        chunk_size = default_chunk_size(estimator, scores.shape[1], max_relevant or 1)
    function = _ESTIMATOR_FUNCTIONS[estimator]

    def run(s, rel, val):
        return function(s, rel, val, max_relevant=max_relevant, **settings)

    recompute = estimator in _CHECKPOINTED and torch.is_grad_enabled() and scores.requires_grad
    if recompute and (under_functorch(scores) or (estimator == "sorting" and _fused_sorting(scores))):
        recompute = False  # torch.func transforms refuse checkpointing's saved-tensor hooks
    chunks = []
    for start in range(0, scores.shape[0], chunk_size):
        args = [t[start : start + chunk_size] for t in (scores, relevance, valid)]
        chunks.append(checkpoint(run, *args, use_reentrant=False) if recompute else run(*args))
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)
