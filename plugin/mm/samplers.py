"""pytorch-metric-learning's ``MPerClassSampler`` as an mmengine data sampler."""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Sampler

from rankssl.ops.validation import check_optional_positive_int, check_positive_int

__all__ = ["MPerClassSampler"]


def _dataset_labels(dataset) -> np.ndarray:
    if hasattr(dataset, "get_gt_labels"):
        return np.asarray(dataset.get_gt_labels())
    if hasattr(dataset, "get_data_info"):
        return np.array([dataset.get_data_info(i)["gt_label"] for i in range(len(dataset))])
    raise TypeError(f"{type(dataset).__name__} exposes no labels (get_gt_labels or get_data_info).")


class MPerClassSampler(Sampler):
    """``m`` samples per class in every batch (pytorch-metric-learning), for label-based losses.

    mmengine passes ``dataset`` and ``seed``; this adapter reads the labels, draws a
    fresh pml ``MPerClassSampler`` order per epoch (seeded by ``seed + epoch``) and,
    in distributed runs, gives each rank a contiguous share of every global batch so
    that the gathered global batch keeps the m-per-class structure.

    Args:
        dataset: the dataset (labels from ``get_gt_labels``).
        m: samples per class in a batch.
        batch_size: the *global* batch size (per-rank batch x world size); must be a
            multiple of ``m``.
        length_before_new_iter: samples per epoch (default: dataset length).
        seed: base random seed.
    """

    def __init__(
        self,
        dataset,
        m: int = 4,
        batch_size: Optional[int] = None,
        length_before_new_iter: Optional[int] = None,
        seed: Optional[int] = None,
    ) -> None:
        from mmengine.dist import get_dist_info

        self.labels = _dataset_labels(dataset)
        self.m = check_positive_int(m, "m (samples per class)")
        check_optional_positive_int(batch_size, "batch_size")
        self.rank, self.world_size = get_dist_info()
        self.batch_size = batch_size
        if batch_size is not None and batch_size % m:
            raise ValueError(f"batch_size={batch_size} must be a multiple of m={m}.")
        length = length_before_new_iter or len(self.labels)
        if batch_size is not None:
            length -= length % batch_size
        self.length = length
        self.seed = 0 if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_order(self) -> list:
        from pytorch_metric_learning.samplers import MPerClassSampler as PMLSampler

        state = torch.random.get_rng_state()
        np_state = np.random.get_state()
        torch.manual_seed(self.seed + self.epoch)
        np.random.seed(self.seed + self.epoch)
        try:
            sampler = PMLSampler(self.labels, m=self.m, batch_size=self.batch_size, length_before_new_iter=self.length)
            return list(iter(sampler))
        finally:
            torch.random.set_rng_state(state)
            np.random.set_state(np_state)

    def __iter__(self) -> Iterator[int]:
        order = self._global_order()
        if self.world_size == 1:
            return iter(order)
        step = (self.batch_size or len(order)) // self.world_size
        own = []
        for start in range(0, len(order), step * self.world_size):
            begin = start + self.rank * step
            own.extend(order[begin : begin + step])
        return iter(own)

    def __len__(self) -> int:
        return self.length // self.world_size
