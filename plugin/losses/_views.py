"""Input checks shared by the view-based losses."""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch

Views = Union[torch.Tensor, Sequence[torch.Tensor]]


def as_view_list(views: Tuple[Views, ...], min_views: int = 2) -> List[torch.Tensor]:
    """Normalise ``forward(*views)`` and ``forward(list_of_views)`` to a checked list.

    Every view must be a floating (B, D) tensor, all of the same shape, with B >= 2.

    Raises:
        ValueError / TypeError naming what was wrong and what is expected.
    """
    if len(views) == 1 and isinstance(views[0], (list, tuple)):
        views = tuple(views[0])
    if len(views) < min_views:
        raise ValueError(
            f"Expected at least {min_views} views, each of shape (batch_size, dim), "
            f"got {len(views)}. Call loss(view0, view1, ...) or loss([view0, view1, ...])."
        )
    checked = []
    for index, view in enumerate(views):
        if not isinstance(view, torch.Tensor):
            raise TypeError(f"View {index} is a {type(view).__name__}, expected a torch.Tensor.")
        if not view.is_floating_point():
            raise TypeError(f"View {index} has dtype {view.dtype}; embeddings must be floating point.")
        if view.dim() != 2:
            raise ValueError(
                f"View {index} has shape {tuple(view.shape)}; expected (batch_size, dim)."
            )
        if view.shape != views[0].shape:
            raise ValueError(
                f"All views must have the same shape; view 0 is {tuple(views[0].shape)} "
                f"but view {index} is {tuple(view.shape)}."
            )
        checked.append(view)
    if checked[0].shape[0] < 2:
        raise ValueError(
            f"A batch of {checked[0].shape[0]} image(s) has no negatives; use at least 2."
        )
    return checked
