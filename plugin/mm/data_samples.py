"""Read class labels from a batch's ``data_samples``, in rankssl's and in mmpretrain's form.

rankssl's ``PackViews`` gives a dict of per-sample tensors (``label``, ``index``,
``is_bank``); mmpretrain's ``PackInputs`` gives a list of ``DataSample`` objects whose
``gt_label`` is a 1-element tensor (single-label classification). The algorithms that need
labels (Hydra, LabelledViews) and the mmpretrain head accept both.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

__all__ = ["labels_from_samples"]


def labels_from_samples(data_samples: Any, owner: str, device: Optional[torch.device] = None) -> torch.Tensor:
    """Labels (B,) int64 of a batch.

    Args:
        data_samples: a dict with ``label`` (B,) (rankssl's ``PackViews``), or a list of B
            objects with a ``gt_label`` of one element (mmpretrain's ``DataSample``).
        owner: the component asking, named in errors.
        device: where the labels go (default: where they are).

    Raises:
        ValueError: no labels in the batch, or a sample whose ``gt_label`` is not one class
            (multi-label or one-hot ``gt_label``), naming the sample.

    Example:
        >>> import torch
        >>> labels_from_samples(dict(label=torch.tensor([3, 1])), 'Hydra')
        tensor([3, 1])
    """
    if isinstance(data_samples, dict):
        labels = data_samples.get("label")
        if labels is None:
            raise ValueError(
                f"{owner} needs class labels: the batch's data_samples dict has no 'label' "
                "(pack the dataset's gt_label with PackViews)."
            )
        return torch.as_tensor(labels, device=device)
    if isinstance(data_samples, (list, tuple)) and data_samples:
        labels = []
        for i, sample in enumerate(data_samples):
            label = getattr(sample, "gt_label", None)
            if label is None:
                raise ValueError(
                    f"{owner} needs class labels: data sample {i} ({type(sample).__name__}) has no "
                    "gt_label (mmpretrain: a labelled dataset and PackInputs)."
                )
            label = torch.as_tensor(label).reshape(-1)
            if label.numel() != 1:
                raise ValueError(
                    f"{owner} needs one class per sample: data sample {i} has a gt_label of "
                    f"{label.numel()} values (multi-label or one-hot labels are not supported)."
                )
            labels.append(label)
        return torch.cat(labels).long().to(device) if device is not None else torch.cat(labels).long()
    raise ValueError(
        f"{owner} needs class labels: data_samples must be a dict with 'label' or a list of "
        f"mmpretrain DataSamples with gt_label, got {type(data_samples).__name__}."
    )
