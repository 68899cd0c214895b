"""Feature extraction outside the Runner, for baselines (raw pixels, random initialisation)."""

from __future__ import annotations

from typing import Callable, Tuple

import torch
from torch.utils.data import DataLoader

from rankssl.mm.builder import build_from_config
from rankssl.mm.metrics import knn_log_votes

__all__ = ["extract_features", "knn_accuracy"]


def _collate(items):
    from mmengine.dataset import default_collate

    return default_collate(items)


@torch.no_grad()
def extract_features(
    dataset_cfg, featurize: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 512
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Features (N, D) and labels (N,) of a dataset whose pipeline yields one view.

    ``featurize`` maps a batch (B, C, H, W) of pixels in [0, 1] to (B, D).
    """
    dataset = build_from_config(dataset_cfg, "DATASETS")
    feats, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate):
        feats.append(featurize(batch["inputs"][0].float()))
        labels.append(batch["data_samples"]["label"])
    return torch.cat(feats), torch.cat(labels)


def knn_accuracy(
    bank_cfg, query_cfg, featurize: Callable[[torch.Tensor], torch.Tensor], k: int = 20, temperature: float = 0.07
) -> float:
    """Weighted-kNN top-1 accuracy (%) of ``featurize`` features, queries against the bank."""
    bank, bank_labels = extract_features(bank_cfg, featurize)
    query, query_labels = extract_features(query_cfg, featurize)
    num_classes = int(torch.cat([bank_labels, query_labels]).max()) + 1
    scores = knn_log_votes(query, bank, bank_labels, num_classes, k, temperature)
    return 100.0 * (scores.argmax(1) == query_labels).float().mean().item()
