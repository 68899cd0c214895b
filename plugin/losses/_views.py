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


def views_from_call(
    views: Tuple[Views, ...],
    out0: Optional[torch.Tensor],
    out1: Optional[torch.Tensor],
    loss_name: str,
) -> Tuple[Views, ...]:
    """The views of a call, also in lightly's keyword form ``loss(out0=a, out1=b)``.

    lightly's two-view losses take ``out0`` and ``out1``; a rankssl loss accepts them as
    its first two views. Mixing the forms, or giving only one keyword, is refused.

    Example:
        >>> import torch
        >>> a, b = torch.randn(4, 8), torch.randn(4, 8)
        >>> len(views_from_call((), a, b, "GroCoLoss"))
        2
    """
    if out0 is None and out1 is None:
        return views
    if views:
        raise TypeError(
            f"{loss_name} takes its views either positionally or as out0=..., out1=... (lightly's keywords), not both."
        )
    if out0 is None or out1 is None:
        missing = "out0" if out0 is None else "out1"
        raise TypeError(f"{loss_name}(out0=..., out1=...) needs both views; {missing} is missing.")
    return (out0, out1)
