"""Evaluation of frozen features inside mmengine's validation loop: weighted kNN and a linear probe."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric

from rankssl.ops.validation import (
    check_embeddings,
    check_finite,
    check_float,
    check_labels,
    check_optional_positive_int,
    check_positive_int,
    safe_normalize,
)

__all__ = ["KNNAccuracy", "LinearProbeAccuracy", "knn_log_votes", "weighted_knn_predict"]


def knn_log_votes(
    query: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Log of the weighted kNN votes per class, computed stably (log-sum-exp per class).

    The vote of class c is ``sum over the k nearest bank items j of class c of
    exp(s_j / temperature)``; its log is formed as ``m_c + log sum exp(s_j / T - m_c)``
    with ``m_c`` the class's largest ``s_j / T``, so no ``exp`` overflows at any
    temperature (``exp(1 / 0.005)`` is infinite in float32) and the order of the
    classes is that of the exact votes. Classes without a neighbour get ``-inf``.

    Args and checks: as :func:`weighted_knn_predict`.

    Returns:
        (Q, num_classes) float32 log-votes.
    """
    check_positive_int(k, "k")
    check_float(temperature, "temperature", 0.0)
    check_positive_int(num_classes, "num_classes")
    bank = check_embeddings(bank, "bank features", finite=False)
    query = check_embeddings(query, "query features", finite=False)
    if query.shape[1] != bank.shape[1]:
        raise ValueError(
            f"Query features have dim {query.shape[1]} but the bank's have dim {bank.shape[1]}: "
            "both must come from the same model and layer."
        )
    check_finite([("bank features", bank), ("query features", query)], "sample")
    bank_labels = check_labels(bank_labels, "bank_labels", length=bank.shape[0], num_classes=num_classes)
    bank = safe_normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    out = []
    for start in range(0, query.shape[0], chunk_size):
        q = safe_normalize(query[start : start + chunk_size].float(), dim=1)
        sims, idx = (q @ bank.T).topk(k, dim=1)
        logits = sims / temperature
        labels = bank_labels[idx]
        class_max = torch.full((q.shape[0], num_classes), float("-inf"), dtype=logits.dtype)
        class_max = class_max.scatter_reduce(1, labels, logits, reduce="amax")
        sums = torch.zeros_like(class_max).scatter_add_(1, labels, (logits - class_max.gather(1, labels)).exp())
        out.append(class_max + sums.log())
    return torch.cat(out)


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
    for its class with weight ``exp(similarity / temperature)``. The votes themselves
    overflow float32 for temperatures below about 0.0115; rank classes with
    :func:`knn_log_votes` there (as :class:`KNNAccuracy` does).

    Args:
        query: (Q, D) features to classify.
        bank: (N, D) labelled features, N >= 1.
        bank_labels: (N,) integer labels in ``[0, num_classes)``.
        k: neighbours (clipped to N); temperature: vote temperature, > 0.

    Returns:
        (Q, num_classes) summed vote weights.

    Raises:
        ValueError: an empty bank, NaN/inf features, a dimension mismatch, labels
        outside ``[0, num_classes)``, k < 1 or temperature <= 0.

    Example:
        >>> import torch
        >>> bank = torch.eye(3); labels = torch.tensor([0, 1, 2])
        >>> weighted_knn_predict(torch.tensor([[0.9, 0.1, 0.0]]), bank, labels, 3, k=1).argmax(1)
        tensor([0])
    """
    _check_bank(bank)
    return knn_log_votes(query, bank, bank_labels, num_classes, k, temperature, chunk_size).exp()


def _check_bank(bank) -> None:
    if isinstance(bank, torch.Tensor) and bank.shape[0] == 0:
        raise ValueError("The kNN memory bank is empty: the val dataset yielded no bank items (is_bank=True).")


def _split_results(results: List[Dict[str, Any]]) -> Tuple[torch.Tensor, ...]:
    if not results:
        raise ValueError("No evaluation samples were collected: the val dataloader yielded nothing.")
    shape = results[0]["feat"].shape
    for index, r in enumerate(results):
        if r["feat"].shape != shape:
            raise ValueError(
                f"Sample {index} has a feature of shape {tuple(r['feat'].shape)} but sample 0 has "
                f"{tuple(shape)}: every sample needs a feature of the same dimension."
            )
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
                raise KeyError(
                    f"{type(self).__name__} needs 'feat' and 'is_bank' per sample; validate with a "
                    "KNNEvalDataset and an algorithm in predict mode."
                )
            self.results.append(
                {
                    "feat": sample["feat"].detach().cpu(),
                    "label": int(sample["label"]),
                    "is_bank": bool(sample["is_bank"]),
                }
            )


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

    def __init__(
        self,
        k: int = 20,
        temperature: float = 0.07,
        topk: Sequence[int] = (1,),
        num_classes: Optional[int] = None,
        collect_device: str = "cpu",
        prefix: Optional[str] = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        check_positive_int(k, "k")
        check_float(temperature, "temperature", 0.0)
        check_optional_positive_int(num_classes, "num_classes")
        self.k, self.temperature, self.topk, self.num_classes = k, temperature, tuple(topk), num_classes

    def compute_metrics(self, results: List[Dict[str, Any]]) -> Dict[str, float]:
        bank, bank_labels, query, query_labels = _split_results(results)
        num_classes = self.num_classes or int(torch.cat([bank_labels, query_labels]).max()) + 1
        check_labels(query_labels, "query labels", num_classes=num_classes)
        _check_bank(bank)
        scores = knn_log_votes(query, bank, bank_labels, num_classes, self.k, self.temperature)
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

    def __init__(
        self,
        weight_decay: float = 1e-4,
        max_iter: int = 200,
        topk: Sequence[int] = (1,),
        num_classes: Optional[int] = None,
        collect_device: str = "cpu",
        prefix: Optional[str] = None,
    ) -> None:
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
