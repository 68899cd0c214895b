"""Hooks that leave readable traces of a run in its work dir."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from mmengine.hooks import Hook

__all__ = ["CurvesHook", "FlushDenormalHook"]


class CurvesHook(Hook):
    """Write ``scalars.json`` and PNG plots of the loss and validation metrics into the work dir.

    Records the training loss and learning rate every ``interval`` iterations and
    every validation metric; rewrites ``scalars.json``, ``loss.png`` and
    ``metrics.png`` after each validation and at the end of training. Only rank 0
    writes, unless ``all_ranks=True`` (then rank r writes ``scalars_rank{r}.json``
    besides, which the distributed tests read).

    The figures are drawn by :mod:`rankssl.mm.plots`: titled with the recipe and the
    run, the learning rate beside the loss, accuracies on a 0-100 % axis.

    Args:
        interval: record the loss every ``interval`` iterations.
        all_ranks: also write per-rank scalars.
        baselines: values drawn as horizontal lines on ``metrics.png``, keyed
            ``"<metric> <name>"``, e.g. ``{"knn/top1 raw pixels": 41.1}``
            (``rankssl demo`` passes its raw-pixel and random-init kNN accuracies).
    """

    priority = "LOW"

    def __init__(self, interval: int = 1, all_ranks: bool = False,
                 baselines: Optional[Dict[str, float]] = None) -> None:
        self.interval = interval
        self.all_ranks = all_ranks
        self.baselines = dict(baselines or {})
        self.train: List[Dict[str, float]] = []
        self.val: List[Dict[str, float]] = []

    def before_train(self, runner) -> None:
        # After a resume, keep the curves of the iterations that the checkpoint covers.
        path = os.path.join(runner.work_dir, "scalars.json")
        if runner.iter > 0 and not self.train and os.path.isfile(path):
            with open(path) as f:
                data = json.load(f)
            self.train = [r for r in data.get("train", []) if r["iter"] <= runner.iter]
            self.val = [r for r in data.get("val", []) if r["iter"] <= runner.iter]

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Optional[dict] = None) -> None:
        if outputs is None or not self.every_n_train_iters(runner, self.interval):
            return
        record = {"iter": runner.iter + 1, "epoch": runner.epoch + 1}
        for key, value in outputs.items():
            try:
                record[key] = float(value.detach()) if hasattr(value, "detach") else float(value)
            except (TypeError, ValueError):
                continue
        lrs = runner.optim_wrapper.get_lr()
        if lrs:
            record["lr"] = float(next(iter(lrs.values()))[0])
        self.train.append(record)

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if metrics:
            record = {"iter": runner.iter, "epoch": runner.epoch}
            record.update({k: float(v) for k, v in metrics.items()})
            self.val.append(record)
        self._write(runner)

    def after_train(self, runner) -> None:
        self._write(runner)

    def _write(self, runner) -> None:
        data = {"train": self.train, "val": self.val}
        if self.all_ranks:
            with open(os.path.join(runner.work_dir, f"scalars_rank{runner.rank}.json"), "w") as f:
                json.dump(data, f)
        if runner.rank != 0:
            return
        with open(os.path.join(runner.work_dir, "scalars.json"), "w") as f:
            json.dump(data, f, indent=1)
        self._plot(runner)

    def _plot(self, runner) -> None:
        from rankssl.mm.plots import plot_loss, plot_metrics

        recipe = os.path.splitext(os.path.basename(getattr(runner.cfg, "filename", None) or "recipe"))[0]
        title = f"{recipe}\nrun {os.path.basename(os.path.normpath(runner.work_dir))}/{runner.timestamp}"
        if self.train:
            plot_loss(self.train, os.path.join(runner.work_dir, "loss.png"), title)
        if self.val:
            plot_metrics(self.val, os.path.join(runner.work_dir, "metrics.png"), title,
                         max_epochs=getattr(runner._train_loop, "max_epochs", None), baselines=self.baselines)


class FlushDenormalHook(Hook):
    """Flush subnormal floats to zero on the CPU for the whole run.

    GroCo's gradients are small (the paper compensates with a learning rate of 24 at
    batch 1024); on CPUs, back-propagating them through a network produces subnormal
    floats, which the floating-point unit handles about 10x slower. Flushing them to
    zero changes nothing measurable in training and restores normal speed (measured on
    the digits recipe: 5 s -> 0.55 s per iteration). No effect on GPUs.
    """

    priority = "VERY_HIGH"

    def before_run(self, runner) -> None:
        import torch

        torch.set_flush_denormal(True)
