"""Evaluation of frozen features inside mmengine's validation loop: weighted kNN and a linear probe."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric

__all__ = ["KNNAccuracy", "LinearProbeAccuracy", "weighted_knn_predict"]


def weighted_knn_predict(
    query: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Class scores of a weighted kNN classifier (Wu et al., CVPR 2018, as used by GroCo and lightly).

    Features are L2-normalised; each of the ``k`` most cosine-similar bank items votes
    for its class with weight ``exp(similarity / temperature)``.

    Args:
        query: (Q, D) features to classify.
        bank: (N, D) labelled features.
        bank_labels: (N,) integer labels in ``[0, num_classes)``.
        k: neighbours (clipped to N); temperature: vote temperature.

    Returns:
        (Q, num_classes) summed vote weights.

    Example:
        >>> import torch
        >>> bank = torch.eye(3); labels = torch.tensor([0, 1, 2])
        >>> weighted_knn_predict(torch.tensor([[0.9, 0.1, 0.0]]), bank, labels, 3, k=1).argmax(1)
        tensor([0])
    """
    if k < 1 or temperature <= 0:
        raise ValueError(f"k must be >= 1 and temperature > 0, got k={k}, temperature={temperature}.")
    if bank.shape[0] == 0:
        raise ValueError("The kNN memory bank is empty: the val dataset yielded no bank items (is_bank=True).")
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    scores = []
    for start in range(0, query.shape[0], chunk_size):
        q = F.normalize(query[start:start + chunk_size].float(), dim=1)
        sims, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], num_classes, dtype=sims.dtype)
        votes.scatter_add_(1, bank_labels[idx], (sims / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def _split_results(results: List[Dict[str, Any]]) -> Tuple[torch.Tensor, ...]:
    feats = torch.stack([r["feat"] for r in results]).float()
    labels = torch.tensor([int(r["label"]) for r in results])
    is_bank = torch.tensor([bool(r["is_bank"]) for r in results])
    return feats[is_bank], labels[is_bank], feats[~is_bank], labels[~is_bank]


def _topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, topk: Sequence[int]) -> Dict[str, float]:
    out = {}
    ranked = scores.argsort(dim=1, descending=True)
    for k in topk:
        k_eff = min(k, scores.shape[1])
        hit = (ranked[:, :k_eff] == labels[:, None]).any(dim=1).float().mean().item()
        out[f"top{k}"] = 100.0 * hit
    return out


class _FeatureMetric(BaseMetric):
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if "feat" not in sample or "is_bank" not in sample:
                raise KeyError(f"{type(self).__name__} needs 'feat' and 'is_bank' per sample; validate with a "
                               "KNNEvalDataset and an algorithm in predict mode.")
            self.results.append({"feat": sample["feat"].detach().cpu(), "label": int(sample["label"]),
                                 "is_bank": bool(sample["is_bank"])})


class KNNAccuracy(_FeatureMetric):
    """Weighted kNN top-k accuracy (%) of the queries against the bank (see :class:`KNNEvalDataset`).

    GroCo's protocol is ``k=20, temperature=0.07``; lightly's benchmarks use
    ``k=200, temperature=0.1``. Metric keys: ``{prefix}/top1`` (and ``top5`` ...).

    Args:
        k: neighbours; temperature: vote temperature; topk: accuracies to report.
        num_classes: number of classes (default: max label + 1).
        prefix: metric name prefix.
    """

    default_prefix = "knn"

    def __init__(self, k: int = 20, temperature: float = 0.07, topk: Sequence[int] = (1,),
                 num_classes: Optional[int] = None, collect_device: str = "cpu",
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if k < 1 or temperature <= 0:
            raise ValueError(f"k must be >= 1 and temperature > 0, got k={k}, temperature={temperature}.")
        self.k, self.temperature, self.topk, self.num_classes = k, temperature, tuple(topk), num_classes

    def compute_metrics(self, results: List[Dict[str, Any]]) -> Dict[str, float]:
        bank, bank_labels, query, query_labels = _split_results(results)
        num_classes = self.num_classes or int(torch.cat([bank_labels, query_labels]).max()) + 1
        scores = weighted_knn_predict(query, bank, bank_labels, num_classes, self.k, self.temperature)
        return _topk_accuracy(scores, query_labels, self.topk)


class LinearProbeAccuracy(_FeatureMetric):
    """Linear probe on frozen features: a softmax classifier fit on the bank, scored on the queries.

    Features are standardised with the bank's statistics; the classifier is trained
    full-batch with L-BFGS and L2 regularisation ``weight_decay``. Suited to
    features that fit in memory (the digits, CIFAR, STL); for ImageNet-scale probes
    train a linear head with a separate recipe.

    Args:
        weight_decay: L2 penalty on the weights; max_iter: L-BFGS iterations.
    """

    default_prefix = "linear"

    def __init__(self, weight_decay: float = 1e-4, max_iter: int = 200, topk: Sequence[int] = (1,),
                 num_classes: Optional[int] = None, collect_device: str = "cpu",
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.weight_decay, self.max_iter, self.topk, self.num_classes = weight_decay, max_iter, tuple(topk), num_classes

    def compute_metrics(self, results: List[Dict[str, Any]]) -> Dict[str, float]:
        bank, bank_labels, query, query_labels = _split_results(results)
        num_classes = self.num_classes or int(torch.cat([bank_labels, query_labels]).max()) + 1
        mean, std = bank.mean(0), bank.std(0).clamp_min(1e-6)
        x, xq = (bank - mean) / std, (query - mean) / std
        with torch.enable_grad():
            linear = torch.nn.Linear(x.shape[1], num_classes)
            optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=self.max_iter, line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                optimizer.zero_grad()
                loss = F.cross_entropy(linear(x), bank_labels) + self.weight_decay * linear.weight.pow(2).sum()
                loss.backward()
                return loss

            optimizer.step(closure)
        with torch.no_grad():
            scores = linear(xq)
        return _topk_accuracy(scores, query_labels, self.topk)
