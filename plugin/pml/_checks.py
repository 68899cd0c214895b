"""Input checks shared by the pytorch-metric-learning losses."""

from __future__ import annotations

from typing import Optional

import torch


def check_labels(
    embeddings: torch.Tensor,
    labels: Optional[torch.Tensor],
    ref_emb: torch.Tensor,
    ref_labels: Optional[torch.Tensor],
) -> None:
    """Raise a clear error for embeddings or labels of the wrong shape or dtype."""
    for name, emb in (("embeddings", embeddings), ("ref_emb", ref_emb)):
        if not isinstance(emb, torch.Tensor) or emb.dim() != 2:
            shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
            raise ValueError(f"{name} must have shape (batch_size, dim), got {shape}.")
        if not emb.is_floating_point():
            raise TypeError(f"{name} must be floating point, got dtype {emb.dtype}.")
    if embeddings.shape[1] != ref_emb.shape[1]:
        raise ValueError(
            f"embeddings have dim {embeddings.shape[1]} but ref_emb has dim {ref_emb.shape[1]}."
        )
    for name, lab, emb in (("labels", labels, embeddings), ("ref_labels", ref_labels, ref_emb)):
        if lab is None:
            continue
        if lab.dim() != 1 or lab.shape[0] != emb.shape[0]:
            raise ValueError(
                f"{name} must have shape ({emb.shape[0]},), one label per row, got {tuple(lab.shape)}."
            )
        if lab.is_floating_point() or lab.is_complex():
            raise TypeError(f"{name} must be an integer tensor, got dtype {lab.dtype}.")


class CheckedInputsMixin:
    """Checks embeddings and labels before pml's ``forward`` touches them.

    Put it first among the bases of a ``BaseMetricLossFunction`` subclass.
    """

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        check_labels(
            embeddings,
            labels,
            embeddings if ref_emb is None else ref_emb,
            labels if ref_emb is None else ref_labels,
        )
        return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)
