"""Input checks shared by the pytorch-metric-learning losses (see :mod:`rankssl.ops.validation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Tuple

import torch

from rankssl.ops.validation import check_embeddings, check_finite, check_indices_tuple, check_labels

if TYPE_CHECKING:  # to a type checker, the mixin extends the pml base class it is mixed into
    from pytorch_metric_learning.losses import BaseMetricLossFunction as _MixinBase
else:
    _MixinBase = object


def check_inputs(
    embeddings: object,
    labels: object,
    indices_tuple: object,
    ref_emb: object,
    ref_labels: object,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[tuple], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Check pml's ``forward`` arguments; return them with labels and indices as int64 tensors.

    - ``embeddings`` and ``ref_emb``: finite floating (rows, dim) tensors of one width;
    - ``labels`` / ``ref_labels``: one integer per row; a Python sequence is converted;
    - ``ref_emb`` with labels but without ``ref_labels`` is refused (the reference rows
      would have no classes), unless an ``indices_tuple`` says which pairs to use;
    - ``indices_tuple``: triplets or pairs of in-range, non-negative integer indices.

    Raises:
        ValueError / TypeError naming the argument and what is expected.
    """
    embeddings = check_embeddings(embeddings, "embeddings", finite=False)
    if ref_emb is not None:
        ref_emb = check_embeddings(ref_emb, "ref_emb", finite=False)
        if ref_emb.shape[1] != embeddings.shape[1]:
            raise ValueError(f"embeddings have dim {embeddings.shape[1]} but ref_emb has dim {ref_emb.shape[1]}.")
        if ref_emb.dtype != embeddings.dtype:
            raise TypeError(
                f"ref_emb has dtype {ref_emb.dtype} but embeddings have {embeddings.dtype}: give both the same "
                f"dtype (e.g. ref_emb.to(embeddings.dtype))."
            )
        check_finite([("embeddings", embeddings), ("ref_emb", ref_emb)])
    else:
        check_finite([("embeddings", embeddings)])
    if labels is not None:
        labels = check_labels(labels, "labels", length=embeddings.shape[0], device=embeddings.device)
    if ref_labels is not None:
        if ref_emb is None:
            raise ValueError("ref_labels were given without ref_emb; pass ref_emb=... with them, or drop them.")
        ref_labels = check_labels(ref_labels, "ref_labels", length=ref_emb.shape[0], device=embeddings.device)
    if ref_emb is not None and ref_labels is None and indices_tuple is None:
        raise ValueError(
            "ref_emb needs ref_labels: pass ref_labels=... with one integer label per row of ref_emb "
            f"({ref_emb.shape[0]} rows), or an indices_tuple that names the pairs to use."
        )
    if indices_tuple is not None:
        num_ref = embeddings.shape[0] if ref_emb is None else ref_emb.shape[0]
        indices_tuple = tuple(
            part.to(embeddings.device) for part in check_indices_tuple(indices_tuple, embeddings.shape[0], num_ref)
        )
    return embeddings, labels, indices_tuple, ref_emb, ref_labels


def check_reducer(loss) -> None:
    """Refuse pml's ``DivisorReducer``: it divides each sub-loss by a ``"divisor"`` the loss
    must return, and rankssl's losses return per-element losses without one (pml fails
    with a ``KeyError`` deep inside the reducer)."""
    from pytorch_metric_learning.reducers import DivisorReducer

    if isinstance(getattr(loss, "reducer", None), DivisorReducer):
        raise ValueError(
            f"{type(loss).__name__} does not return the 'divisor' that DivisorReducer needs; use another pml "
            "reducer (MeanReducer, the default, or e.g. AvgNonZeroReducer, SumReducer)."
        )


class CheckedInputsMixin(_MixinBase):
    """Checks embeddings, labels and indices before pml's ``forward`` touches them.

    Put it first among the bases of a ``BaseMetricLossFunction`` subclass.
    """

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        check_reducer(self)
        embeddings, labels, indices_tuple, ref_emb, ref_labels = check_inputs(
            embeddings, labels, indices_tuple, ref_emb, ref_labels
        )
        return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)
