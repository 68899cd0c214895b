"""Data preprocessor for multi-view batches."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

__all__ = ["MultiViewDataPreprocessor"]


class MultiViewDataPreprocessor(BaseDataPreprocessor):
    """Move a multi-view batch to the device, normalise it and stack the views once.

    Input (what the collate function gives): ``data['inputs']`` is a list of V views,
    each a (B, C, H, W) tensor (``default_collate``) or a list of B (C, H, W) tensors
    (``pseudo_collate``); a single (B, C, H, W) tensor counts as one view. Pixel
    values are floats in [0, 1] (the transforms end with ``ToTensor``).

    Output: ``inputs`` is a list of groups; consecutive views of one resolution are
    stacked into one (n, B, C, H, W) tensor, so the backbone sees every view of a
    resolution in a single pass (2x224: one group; 2x224+6x96 multi-crop: two).
    ``data_samples`` (a dict of per-sample tensors: ``label``, ``is_bank``, ...) is
    moved to the device unchanged.

    Args:
        mean, std: per-channel normalisation in the [0, 1] pixel scale; ``None``
            leaves the pixels as they are.
    """

    def __init__(
        self, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None, non_blocking: bool = False
    ) -> None:
        super().__init__(non_blocking=non_blocking)
        if (mean is None) != (std is None):
            raise ValueError("Give both mean and std, or neither.")
        self._normalize = mean is not None
        if mean is not None and std is not None:
            if any(s <= 0 for s in std):
                raise ValueError(f"std must be positive, got {list(std)}.")
            self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1), False)
            self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1), False)

    def forward(self, data: Dict[str, Any], training: bool = False) -> Dict[str, Any]:
        data = self.cast_data(data)
        views = data["inputs"]
        if isinstance(views, torch.Tensor):
            views = [views]
        if not isinstance(views, (list, tuple)) or not views:
            raise TypeError(f"data['inputs'] must be a non-empty list of views, got {type(views).__name__}.")
        views = [torch.stack(list(v)) if isinstance(v, (list, tuple)) else v for v in views]
        for i, view in enumerate(views):
            if view.dim() != 4:
                raise ValueError(f"View {i} must have shape (B, C, H, W), got {tuple(view.shape)}.")
        views = [self._prepare(v) for v in views]
        return {"inputs": group_views(views), "data_samples": data.get("data_samples")}

    def _prepare(self, view: torch.Tensor) -> torch.Tensor:
        view = view.float() if not view.is_floating_point() else view
        if self._normalize:
            view = (view - self.mean) / self.std
        return view


def group_views(views: List[torch.Tensor]) -> List[torch.Tensor]:
    """Stack consecutive views of equal shape: list of (B, C, H, W) -> list of (n, B, C, H, W)."""
    groups: List[List[torch.Tensor]] = []
    for view in views:
        if groups and groups[-1][0].shape == view.shape:
            groups[-1].append(view)
        else:
            groups.append([view])
    return [torch.stack(g) for g in groups]
