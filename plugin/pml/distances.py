"""A pml cosine similarity that survives any magnitude of embeddings."""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import CosineSimilarity

from rankssl.ops.validation import safe_normalize

__all__ = ["ScaleSafeCosineSimilarity"]


class ScaleSafeCosineSimilarity(CosineSimilarity):
    """pml's :class:`CosineSimilarity` with an overflow-free normalisation.

    pml normalises with ``F.normalize``, whose squared norm overflows float32 for entries
    near 1e20 and underflows near 1e-20, so 1e30 embeddings score 0 against everything.
    Here every row is first divided by its largest absolute entry (a constant for
    autograd), which leaves cosine similarities and their gradients unchanged
    (:func:`rankssl.ops.validation.safe_normalize`). It is the default distance of
    rankssl's pml GroCo and S2R2 losses; it is still a ``CosineSimilarity`` for every
    ``isinstance`` check.
    """

    def normalize(self, embeddings: torch.Tensor, dim: int = 1, **kwargs) -> torch.Tensor:
        if self.p != 2 or kwargs:
            return super().normalize(embeddings, dim=dim, **kwargs)
        return safe_normalize(embeddings, dim=dim)
