"""Hooks that leave readable traces of a run in its work dir."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Dict, List, Optional, Tuple

from mmengine.hooks import Hook

__all__ = ["CurvesHook", "FlushDenormalHook", "read_scalars"]


class CurvesHook(Hook):
    """Write ``scalars.json`` and PNG plots of the loss and validation metrics into the work dir.

    Records the training loss and learning rate every ``interval`` iterations and
    every validation metric. Each record is appended to ``scalars.jsonl`` (one JSON
    object a line, ``"split": "train"`` or ``"val"``) as soon as it is made, so a killed
    run loses no point recorded before the kill; ``scalars.json``, ``loss.png`` and
    ``metrics.png`` are rewritten (atomically) after each validation and at the end of
    training. On resume the curves recorded up to the checkpoint's iteration are read
    back and continued. Only rank 0 writes, unless ``all_ranks=True`` (then rank r
    writes ``scalars_rank{r}.json`` besides, which the distributed tests read).

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
    LOG_NAME = "scalars.jsonl"

    def __init__(
        self, interval: int = 1, all_ranks: bool = False, baselines: Optional[Dict[str, float]] = None
    ) -> None:
        self.interval = interval
        self.all_ranks = all_ranks
        self.baselines = dict(baselines or {})
        self.train: List[Dict[str, float]] = []
        self.val: List[Dict[str, float]] = []

    def before_train(self, runner) -> None:
        # After a resume, keep the curves of the iterations that the checkpoint covers.
        if runner.iter > 0 and not self.train:
            train, val = read_scalars(runner.work_dir)
            self.train = [r for r in train if r["iter"] <= runner.iter]
            self.val = [r for r in val if r["iter"] <= runner.iter]
        if runner.rank == 0:  # the log restarts with what the run keeps
            lines = [json.dumps(dict(r, split="train")) + "\n" for r in self.train]
            lines += [json.dumps(dict(r, split="val")) + "\n" for r in self.val]
            _atomic_write(os.path.join(runner.work_dir, self.LOG_NAME), "".join(lines))

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
        self._append(runner, record, "train")

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if metrics:
            record = {"iter": runner.iter, "epoch": runner.epoch}
            record.update({k: float(v) for k, v in metrics.items()})
            self.val.append(record)
            self._append(runner, record, "val")
        self._write(runner)

    def after_train(self, runner) -> None:
        self._write(runner)

    def _append(self, runner, record: Dict[str, float], split: str) -> None:
        if runner.rank != 0:
            return
        with open(os.path.join(runner.work_dir, self.LOG_NAME), "a") as f:
            f.write(json.dumps(dict(record, split=split)) + "\n")

    def _write(self, runner) -> None:
        data = {"train": self.train, "val": self.val}
        if self.all_ranks:
            _atomic_write(os.path.join(runner.work_dir, f"scalars_rank{runner.rank}.json"), json.dumps(data))
        if runner.rank != 0:
            return
        _atomic_write(os.path.join(runner.work_dir, "scalars.json"), json.dumps(data, indent=1))
        self._plot(runner)

    def _plot(self, runner) -> None:
        from rankssl.mm.plots import plot_loss, plot_metrics

        recipe = os.path.splitext(os.path.basename(getattr(runner.cfg, "filename", None) or "recipe"))[0]
        title = f"{recipe}\nrun {os.path.basename(os.path.normpath(runner.work_dir))}/{runner.timestamp}"
        if self.train:
            plot_loss(self.train, os.path.join(runner.work_dir, "loss.png"), title)
        if self.val:
            plot_metrics(
                self.val,
                os.path.join(runner.work_dir, "metrics.png"),
                title,
                max_epochs=getattr(runner._train_loop, "max_epochs", None),
                baselines=self.baselines,
            )


def read_scalars(work_dir: str) -> Tuple[List[Dict[str, float]], List[Dict[str, float]]]:
    """(train, val) records of a run: from ``scalars.jsonl``, else ``scalars.json``.

    A damaged line of ``scalars.jsonl`` (torn by a kill, not UTF-8, not JSON, ``null``, a
    record without a numeric ``iter`` (and ``epoch`` for validation) or with a value that
    is not a number) is skipped with a warning naming the file and the line; the lines
    around it are kept. A damaged ``scalars.json`` is ignored with a warning.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> _ = open(os.path.join(d, "scalars.jsonl"), "w").write('{"iter": 1, "loss": 2.0}\\n')
        >>> read_scalars(d)
        ([{'iter': 1, 'loss': 2.0}], [])
    """
    log = os.path.join(work_dir, CurvesHook.LOG_NAME)
    train: List[Dict[str, float]] = []
    val: List[Dict[str, float]] = []
    if os.path.isfile(log):
        with open(log, "rb") as f:
            lines = f.read().split(b"\n")
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            record, problem = _parse_record(raw)
            if record is None:
                warnings.warn(f"{log}, line {number}: skipped ({problem}); the other lines are kept.", stacklevel=2)
                continue
            (val if record.pop("split", "train") == "val" else train).append(record)
        return train, val
    path = os.path.join(work_dir, "scalars.json")
    if os.path.isfile(path):
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
            records = {
                split: [
                    r
                    for r in data.get(split, [])
                    if _parse_record(json.dumps(dict(r, split=split)).encode())[1] is None
                ]
                for split in ("train", "val")
            }
        except (ValueError, AttributeError, TypeError) as exc:
            warnings.warn(f"{path}: ignored, it is damaged ({type(exc).__name__}: {exc}).", stacklevel=2)
            return train, val
        return records["train"], records["val"]
    return train, val


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_record(raw: bytes) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """(record, None) for a well-formed ``scalars.jsonl`` line, else (None, what is wrong)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text: byte {exc.start}"
    try:
        record = json.loads(text)
    except ValueError:
        return None, "not a complete JSON record (a write cut short?)"
    if not isinstance(record, dict):
        return None, f"a JSON {type(record).__name__}, not a record"
    split = record.get("split", "train")
    if split not in ("train", "val"):
        return None, f"unknown split {split!r}"
    for key in ("iter",) + (("epoch",) if split == "val" else ()):
        if not _is_number(record.get(key)):
            return None, f"no numeric {key!r}" if key not in record else f"{key!r} is {record[key]!r}, not a number"
    bad = [k for k, v in record.items() if k != "split" and not _is_number(v)]
    if bad:
        return None, f"{bad[0]!r} is {record[bad[0]]!r}, not a number"
    return record, None


def _atomic_write(path: str, text: str) -> None:
    from rankssl.mm.checkpoint import atomic_write_text

    atomic_write_text(path, text)


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
