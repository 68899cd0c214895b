"""Hydra's class-pair feature filter as a model component, and its analysis.

The filter's implementation lives in :mod:`rankssl.losses.feature_filter` because
:class:`rankssl.losses.HydraLoss` owns one and layer 2 may not import layer 3; this
module gives it its place among the models (``rankssl.models.FeatureFilter``) and adds
the class-relationship read-out: which dimensions each class pair keeps open, and how
much two pairs' open dimensions overlap.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch

from rankssl.losses.feature_filter import GATE_MODES, FeatureFilter, check_class_labels

__all__ = ["GATE_MODES", "FeatureFilter", "active_dimension_overlap", "check_class_labels", "class_pair_gates"]


def active_dimension_overlap(active: torch.Tensor) -> torch.Tensor:
    """Jaccard overlap of the active dimensions of every two rows.

    Args:
        active: (P, D) boolean mask, row p = dimensions open for class pair p.

    Returns:
        (P, P) float tensor |A_p & A_q| / |A_p | A_q|; 0 where both rows are empty.

    Example:
        >>> import torch
        >>> overlap = active_dimension_overlap(torch.tensor([[1, 1, 0], [0, 1, 1]], dtype=torch.bool))
        >>> round(overlap[0, 1].item(), 4)  # one shared of three open dimensions
        0.3333
    """
    if active.dim() != 2 or active.dtype != torch.bool:
        raise ValueError(f"active must be a (P, D) boolean mask, got {tuple(active.shape)} {active.dtype}.")
    a = active.float()
    intersection = a @ a.T
    sizes = a.sum(dim=1)
    union = sizes[:, None] + sizes[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.zeros_like(union))


@torch.no_grad()
def class_pair_gates(
    feature_filter: FeatureFilter, classes: Optional[Sequence[int]] = None, threshold: float = 0.5
) -> Dict[str, torch.Tensor]:
    """Gates of every unordered class pair (a <= b) among ``classes`` (default: all).

    Returns a dict of CPU tensors:
        ``classes`` (K,), ``pairs`` (P, 2) with P = K(K+1)/2, ``gates`` (P, D),
        ``active`` (P, D) = gates > threshold, ``overlap`` (P, P) Jaccard overlap of the
        active dimensions (:func:`active_dimension_overlap`), ``open_fraction`` (K, K)
        the fraction of open dimensions of each pair, ``mean_gate`` (K, K).

    Memory grows as K^2 * D and P^2: pick a subset of classes for large C.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}.")
    matrix = feature_filter.pair_gate_matrix(classes).cpu()  # (K, K, D)
    k = matrix.shape[0]
    cls = (
        torch.arange(feature_filter.num_classes)
        if classes is None
        else torch.as_tensor(list(classes), dtype=torch.long)
    )
    rows, cols = torch.triu_indices(k, k)
    gates = matrix[rows, cols]
    active = gates > threshold
    return {
        "classes": cls,
        "pairs": torch.stack((cls[rows], cls[cols]), dim=1),
        "gates": gates,
        "active": active,
        "overlap": active_dimension_overlap(active),
        "open_fraction": (matrix > threshold).float().mean(dim=2),
        "mean_gate": matrix.mean(dim=2),
    }
