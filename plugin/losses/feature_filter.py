"""Hydra's feature filter: a learned gate over embedding dimensions for a pair of classes.

Wu, Kittler, Awais, Atito, Mo, Feng, "Rethinking Positive Pairs in Contrastive Learning"
(arXiv:2410.18200). For a class pair (y1, y2) the filter returns a vector g in [0, 1]^D
that selects the dimensions in which the two classes are compared, so that different
pairs of classes can be positives of each other in different sub-spaces.

The gate is computed from a learned class embedding E (num_classes x embed_dim) by a
small MLP, so its parameters grow with the number of classes and never with the
number of class pairs: 1,000 classes (500,500 unordered pairs) need only a
1,000 x 512 table. Gates are computed for the pairs that occur in a batch; the full
pair table is never built (:meth:`FeatureFilter.pair_gate_matrix` builds it in chunks
for a chosen subset of classes, for analysis only).

This module is pure torch and lives beside the loss that owns it; it is also exported
as :class:`rankssl.models.FeatureFilter`.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rankssl.ops.validation import check_choice, check_labels, check_positive_int

__all__ = ["FeatureFilter", "GATE_MODES", "check_class_labels"]

GATE_MODES = ("fused", "product", "open")


def check_class_labels(
    labels: object, num_classes: int, length: Optional[int] = None, name: str = "labels"
) -> torch.Tensor:
    """Validate class indices in ``[0, num_classes)``; return them as a 1-D int64 tensor.

    Any integer dtype (int8, uint8, ...) or a Python sequence of integers is accepted.

    Raises:
        ValueError: labels missing, of the wrong shape or out of range.
        TypeError: labels not an integer tensor.
    """
    if labels is None:
        raise ValueError(
            f"Hydra needs class labels: pass {name} as a (batch_size,) integer tensor of class "
            f"indices in [0, {num_classes})."
        )
    return check_labels(labels, name, length=length, num_classes=num_classes)


class FeatureFilter(nn.Module):
    """Symmetric class-pair gate g(y1, y2) in [0, 1]^out_dim (Hydra, Wu et al. 2024).

    Modes:
        ``"fused"``: g = sigmoid(f_g((E[y1] + E[y2]) / 2)) (the authors' default).
        ``"product"``: g = sigmoid(f_g(E[y1])) * sigmoid(f_g(E[y2])).
        ``"open"``: g = 1 everywhere, no parameters; Hydra then reduces to a
        supervised-contrastive loss over class pairs (the baseline).

    f_g = ReLU, BatchNorm1d(embed_dim), Linear(embed_dim, hidden_dim), ReLU,
    BatchNorm1d(hidden_dim), Linear(hidden_dim, out_dim), as in the authors' code.
    Both modes are symmetric: g(a, b) == g(b, a). Because f_g holds BatchNorm layers,
    training-mode calls need at least two pairs; evaluation mode uses running statistics.

    Args:
        num_classes: number of classes C (the embedding table has C rows).
        out_dim: D, the dimension of the embeddings the gate multiplies.
        embed_dim: width of the class embedding (paper: 512).
        hidden_dim: hidden width of f_g (paper: 1024).
        mode: ``"fused"``, ``"product"`` or ``"open"``.

    Shapes:
        ``forward(y1, y2)``: two (N,) integer tensors -> (N, out_dim) gates.

    Example:
        >>> import torch
        >>> from rankssl.models import FeatureFilter
        >>> gate = FeatureFilter(num_classes=1000, out_dim=256)
        >>> y1, y2 = torch.randint(0, 1000, (2, 64))
        >>> gate(y1, y2).shape
        torch.Size([64, 256])
    """

    def __init__(
        self,
        num_classes: int,
        out_dim: int,
        embed_dim: int = 512,
        hidden_dim: int = 1024,
        mode: str = "fused",
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("out_dim", out_dim),
            ("embed_dim", embed_dim),
            ("hidden_dim", hidden_dim),
        ):
            check_positive_int(value, name)
        check_choice(mode, "gate_mode", GATE_MODES, "gate mode")
        self.num_classes = num_classes
        self.out_dim = out_dim
        self.embed_dim = embed_dim
        self.hidden_dim = hidden_dim
        self.mode = mode
        if mode != "open":
            self.class_embedding = nn.Embedding(num_classes, embed_dim)
            self.mlp = nn.Sequential(
                nn.ReLU(),
                nn.BatchNorm1d(embed_dim),
                nn.Linear(embed_dim, hidden_dim),
                nn.ReLU(),
                nn.BatchNorm1d(hidden_dim),
                nn.Linear(hidden_dim, out_dim),
            )

    def forward(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        """(N, out_dim) gates g(y1[n], y2[n]) for (N,) class indices ``y1``, ``y2`` (checked)."""
        y1 = check_class_labels(y1, self.num_classes, name="y1")
        y2 = check_class_labels(y2, self.num_classes, length=y1.shape[0], name="y2")
        return self.gates(y1, y2)

    def gates(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without the label checks, for callers that checked the labels already
        (the losses): reads no value on the host."""
        if self.mode == "open":
            return torch.ones(y1.shape[0], self.out_dim, device=y1.device)
        if self.training and y1.shape[0] < 2:
            raise ValueError(
                "FeatureFilter in training mode needs at least 2 pairs (its MLP has BatchNorm); "
                "call .eval() to gate a single pair."
            )
        if self.mode == "fused":
            # (E[y1] + E[y2]) / 2 as one bag of two rows per pair
            mean = F.embedding_bag(torch.stack((y1, y2), dim=1), self.class_embedding.weight, mode="mean")
            return torch.sigmoid(self.mlp(mean))
        # "product": two MLP passes, so each BatchNorm batch holds one side's classes, as in the
        # authors' code (moco/filter.py, BasicGate with fuse=False).
        return torch.sigmoid(self.mlp(self.class_embedding(y1))) * torch.sigmoid(self.mlp(self.class_embedding(y2)))

    @torch.no_grad()
    def pair_gate_matrix(self, classes: Optional[Sequence[int]] = None, chunk_size: int = 4096) -> torch.Tensor:
        """(K, K, out_dim) gates of every ordered pair of ``classes`` (default: all).

        Computed in chunks of ``chunk_size`` pairs in evaluation mode (running BatchNorm
        statistics), the module's mode restored afterwards. Memory is K*K*out_dim floats;
        choose a subset of classes when C is large.
        """
        if classes is None:
            cls = torch.arange(self.num_classes)
        else:
            cls = check_class_labels(torch.as_tensor(list(classes), dtype=torch.long), self.num_classes, name="classes")
        device = next(self.parameters()).device if self.mode != "open" else torch.device("cpu")
        cls = cls.to(device)
        k = cls.shape[0]
        a, b = torch.meshgrid(cls, cls, indexing="ij")
        out = torch.empty(k * k, self.out_dim, device=device)
        was_training = self.training
        self.eval()
        try:
            for start, stop in _chunks(k * k, chunk_size):
                out[start:stop] = self(a.reshape(-1)[start:stop], b.reshape(-1)[start:stop])
        finally:
            self.train(was_training)
        return out.view(k, k, self.out_dim)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, out_dim={self.out_dim}, embed_dim={self.embed_dim}, "
            f"hidden_dim={self.hidden_dim}, mode={self.mode!r}"
        )


def _chunks(total: int, size: int) -> Iterator[tuple]:
    for start in range(0, total, size):
        yield start, min(start + size, total)
