"""How the protocol scores a backbone: frozen features, weighted kNN, a linear probe, the effective rank.

Pure functions on tensors; ``protocol_training`` calls them on a trained run, ``baseline_rows``
on raw pixels and on a random network. The tuning split (which training images selection
may see) is here too, since it decides what the validation score is computed on.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def stratified_split(y: torch.Tensor, fraction: float = 0.2, seed: int = 0) -> Tuple[List[int], List[int]]:
    """(fit, validation) indices of labels ``y`` (N,): ``fraction`` of each class, at least one, to validation.

    Deterministic for a given ``seed``; both lists are sorted.
    """
    generator = torch.Generator().manual_seed(seed)
    val_idx = []
    for label in y.unique():
        idx = torch.nonzero(y == label).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        val_idx.append(idx[: max(1, int(round(fraction * len(idx))))])
    val = torch.cat(val_idx)
    fit_mask = torch.ones(len(y), dtype=torch.bool)
    fit_mask[val] = False
    return torch.nonzero(fit_mask).squeeze(1).tolist(), sorted(val.tolist())


@torch.no_grad()
def features(backbone: nn.Module, x: torch.Tensor, device: str, batch: int = 512) -> torch.Tensor:
    """The backbone's output (N, D) float32 on the CPU for images ``x`` (N, C, H, W), in eval mode."""
    backbone.eval()
    out = [backbone(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
    return torch.cat(out)


def knn_accuracy(bank: torch.Tensor, bank_y: torch.Tensor, query: torch.Tensor, query_y: torch.Tensor,
                 k: int, temperature: float) -> float:
    """Weighted kNN top-1 (Wu et al. 2018) of ``query`` (Q, D) against ``bank`` (N, D): votes exp(cos / T)."""
    bank, query = F.normalize(bank, dim=1), F.normalize(query, dim=1)
    sims, idx = (query @ bank.T).topk(min(k, len(bank)), dim=1)
    votes = torch.zeros(len(query), int(bank_y.max()) + 1)
    votes.scatter_add_(1, bank_y[idx], torch.exp(sims / temperature))
    return (votes.argmax(1) == query_y).float().mean().item()


def linear_probe_accuracy(train: torch.Tensor, train_y: torch.Tensor, test: torch.Tensor,
                          test_y: torch.Tensor) -> float:
    """Logistic regression on standardised frozen features (N, D); top-1 on the test features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train.numpy())
    probe = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(train.numpy()), train_y.numpy())
    return float(probe.score(scaler.transform(test.numpy()), test_y.numpy()))


def evaluate(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
             probe: bool = True) -> Dict[str, float]:
    """kNN k=20 T=0.07 (GroCo's protocol), kNN k=200 T=0.1 (lightly's) and the linear probe, in 0..1."""
    scores = {
        "knn20": knn_accuracy(train_f, train_y, test_f, test_y, 20, 0.07),
        "knn200": knn_accuracy(train_f, train_y, test_f, test_y, 200, 0.1),
    }
    if probe:
        scores["linear"] = linear_probe_accuracy(train_f, train_y, test_f, test_y)
    return scores


def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of the L2-normalised features (N, D) (rankssl.ops)."""
    from rankssl.ops.spectrum import effective_rank as erank

    return float(erank(F.normalize(features.float(), dim=1)))
