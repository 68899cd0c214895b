"""Dimensional-collapse diagnostics in mmengine's validation loop, for any algorithm.

:class:`EffectiveRank` computes the singular spectrum and the effective rank (Roy &
Vetterli 2007: exp of the entropy of the normalised singular values,
:func:`rankssl.ops.effective_rank`) of the features an algorithm returns in
``predict`` mode; :class:`SpectrumHook` plots the spectra of successive validations
into ``spectrum.png`` and saves them to ``spectrum.npz``. Hydra's claim that it
prevents dimensional collapse becomes a number comparable across SimCLR, GroCo and
Hydra on the same evaluation set.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook

from rankssl.ops.spectrum import effective_rank, singular_spectrum

__all__ = ["EffectiveRank", "SpectrumHook"]


class EffectiveRank(BaseMetric):
    """Effective rank and singular spectrum of the evaluation features.

    Metric keys: ``{prefix}/erank`` (in [1, min(N, D)]) and ``{prefix}/erank_ratio``
    (erank / min(N, D)). The last spectrum stays on the metric as ``last_spectrum``
    (a float64 NumPy array) for :class:`SpectrumHook`.

    Args:
        key: the per-sample field holding the features (``'feat'``: pooled backbone
            features of :class:`~rankssl.mm.algorithms.SelfSupervisedAlgorithm`).
        subset: ``'all'`` samples, or with a :class:`~rankssl.mm.datasets.KNNEvalDataset`
            only the ``'bank'`` or the ``'query'`` items.
        normalize: L2-normalise features first (the geometry of cosine losses and kNN).
        center: subtract the mean feature first (spectrum of the covariance).
        prefix: metric name prefix (default ``'spectrum'``).

    Example (a recipe)::

        val_evaluator = [dict(type='KNNAccuracy'), dict(type='EffectiveRank')]
        custom_hooks = [dict(type='SpectrumHook')]
    """

    default_prefix = "spectrum"

    def __init__(
        self,
        key: str = "feat",
        subset: str = "all",
        normalize: bool = True,
        center: bool = True,
        collect_device: str = "cpu",
        prefix: Optional[str] = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if subset not in ("all", "bank", "query"):
            raise ValueError(f"subset must be 'all', 'bank' or 'query', got {subset!r}.")
        self.key, self.subset, self.normalize, self.center = key, subset, normalize, center
        self.last_spectrum: Optional[np.ndarray] = None

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if self.key not in sample:
                raise KeyError(
                    f"EffectiveRank needs '{self.key}' in every predicted sample; got keys {sorted(sample)}."
                )
            if self.subset != "all":
                if "is_bank" not in sample:
                    raise KeyError(f"subset={self.subset!r} needs 'is_bank' per sample (use a KNNEvalDataset).")
                if bool(sample["is_bank"]) != (self.subset == "bank"):
                    continue
            self.results.append(torch.as_tensor(sample[self.key]).detach().float().flatten().cpu())

    def compute_metrics(self, results: List[torch.Tensor]) -> Dict[str, float]:
        if len(results) < 2:
            raise ValueError(f"EffectiveRank needs at least 2 evaluation samples, got {len(results)}.")
        features = torch.stack(results)
        spectrum = singular_spectrum(features, center=self.center, normalize=self.normalize)
        self.last_spectrum = spectrum.numpy()
        erank = effective_rank(spectrum, from_singular_values=True)
        return {"erank": erank, "erank_ratio": erank / spectrum.numel()}


class SpectrumHook(Hook):
    """Plot the singular spectra of :class:`EffectiveRank` into ``spectrum.png`` after each validation.

    One curve per validation (normalised singular values s_k / s_1 on a log scale,
    the latest drawn darkest), labelled with the epoch and effective rank; the spectra
    also go to ``spectrum.npz`` (``epoch_<n>`` arrays). Only rank 0 writes.

    Args:
        filename: PNG name inside the work dir.
    """

    priority = "LOW"

    def __init__(self, filename: str = "spectrum.png") -> None:
        self.filename = filename
        self.spectra: List[tuple] = []

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if runner.rank != 0:
            return
        metric = _find_effective_rank(runner)
        if metric is None or metric.last_spectrum is None:
            runner.logger.warning("SpectrumHook: no EffectiveRank metric in the val evaluator; nothing to plot.")
            return
        erank = effective_rank(torch.from_numpy(metric.last_spectrum), from_singular_values=True)
        self.spectra.append((runner.epoch, metric.last_spectrum.copy(), erank))
        recipe = os.path.splitext(
            os.path.basename(getattr(getattr(runner, "cfg", None), "filename", None) or "recipe")
        )[0]
        run = os.path.basename(os.path.normpath(runner.work_dir))
        stamp = getattr(runner, "timestamp", None)
        title = f"{recipe}\nrun {run}/{stamp}" if stamp else f"{recipe}\nrun {run}"
        self._write(runner.work_dir, title)

    def _write(self, work_dir: str, title: str = "") -> None:
        import matplotlib.pyplot as plt

        from rankssl.mm.plots import spectrum_figure

        np.savez(
            os.path.join(work_dir, os.path.splitext(self.filename)[0] + ".npz"),
            **{f"epoch_{epoch}": s for epoch, s, _ in self.spectra},
        )
        fig = spectrum_figure(self.spectra, title)  # titled like loss.png and metrics.png
        fig.savefig(os.path.join(work_dir, self.filename), dpi=100)
        plt.close(fig)


def _find_effective_rank(runner) -> Optional[EffectiveRank]:
    loop = getattr(runner, "val_loop", None)
    evaluator = getattr(loop, "evaluator", None)
    for metric in getattr(evaluator, "metrics", []) or []:
        if isinstance(metric, EffectiveRank):
            return metric
    return None
