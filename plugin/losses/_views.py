"""Input checks shared by the view-based losses (see :mod:`rankssl.ops.validation`)."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch

from rankssl.ops.validation import check_views

Views = Union[torch.Tensor, Sequence[torch.Tensor]]


def as_view_list(
    views: Tuple[Views, ...],
    min_views: int = 2,
    loss_name: Optional[str] = None,
    labelled_alternative: Optional[str] = None,
) -> List[torch.Tensor]:
    """Normalise ``forward(*views)`` and ``forward(list_of_views)`` to a checked list.

    Every view must be a finite floating (B, D) tensor, all of the same shape, with
    B >= 2 and D >= 1. A label-free loss passes its ``loss_name`` and the pml class to
    use with labels, so that ``loss(views, labels)`` says so.

    Raises:
        ValueError / TypeError naming the view (and row) at fault and what is expected.
    """
    return check_views(views, min_views, 2, loss_name, labelled_alternative)
