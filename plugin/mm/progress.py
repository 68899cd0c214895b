"""Console progress for the ``rankssl`` command: short lines with ETA, the full log in the work dir.

mmengine's runner prints its environment and the whole config (hundreds of lines) and
then one progress line per logging interval. The ``rankssl`` command keeps all of that
in the work dir's log file (``<work_dir>/<timestamp>/<timestamp>.log``) and prints
its own lines instead: one after the first iteration, then every few iterations, each
with the loss, learning rate, speed and ETA, and one per validation.

Example (what ``rankssl train`` does):
    >>> from rankssl.mm.progress import build_quiet_runner  # doctest: +SKIP
    >>> runner = build_quiet_runner(cfg, label="GroCo")      # doctest: +SKIP
    >>> runner.train()                                       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, Dict, Optional, TextIO

from mmengine.hooks import Hook
from mmengine.runner import Runner

__all__ = ["ProgressHook", "QuietRunner", "build_quiet_runner", "format_duration", "log_file_of"]


def format_duration(seconds: float) -> str:
    """``'42 s'``, ``'3 min 05 s'`` or ``'1 h 02 min'``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ProgressHook(Hook):
    """Print a progress line after the first iteration, every ``interval`` iterations, and whenever
    ``max_silence`` seconds passed since the last line (a busy machine can make ``interval``
    iterations take minutes).

    Each line: epoch, iteration (and percent of the run), loss, learning rate, seconds
    per iteration and ETA (from the average time per iteration so far, validation
    included). After each validation, one line with the metrics. Rank 0 only.

    Args:
        label: prefix of every line (the method or recipe).
        interval: iterations between lines; ``None`` chooses about 25 lines per run.
        stream: where to print (default ``sys.stdout``).
        max_silence: the longest time in seconds between two lines, in training and in
            validation (default 30).
        clock: seconds as a float (default ``time.monotonic``; tests pass a fake clock).
    """

    priority = "LOW"

    def __init__(
        self,
        label: str,
        interval: Optional[int] = None,
        stream: Optional[TextIO] = None,
        max_silence: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not max_silence > 0:
            raise ValueError(f"max_silence must be a positive number of seconds, got {max_silence!r}.")
        self.label = label
        self.interval = interval
        self.stream = stream
        self.max_silence = float(max_silence)
        self.clock = clock
        self._start: Optional[float] = None
        self._start_iter = 0
        self._last_line = clock()

    def _print(self, runner, text: str) -> None:
        self._last_line = self.clock()
        if runner.rank == 0:
            print(f"[{self.label}] {text}", file=self.stream or sys.stdout, flush=True)

    def _silent_too_long(self) -> bool:
        return self.clock() - self._last_line >= self.max_silence

    def before_train(self, runner) -> None:
        self._start, self._start_iter = self.clock(), runner.iter
        self._last_line = self._start
        if self.interval is None:
            self.interval = max(1, runner.max_iters // 25)

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Optional[dict] = None) -> None:
        done = runner.iter + 1
        first = done == self._start_iter + 1
        if not (first or done % self.interval == 0 or done == runner.max_iters or self._silent_too_long()):
            return
        assert self._start is not None, "before_train starts the clock"
        per_iter = (self.clock() - self._start) / max(done - self._start_iter, 1)
        eta = per_iter * (runner.max_iters - done)
        parts = [
            f"epoch {runner.epoch + 1}/{runner.max_epochs}",
            f"iter {done}/{runner.max_iters} ({100.0 * done / runner.max_iters:3.0f}%)",
        ]
        loss = (outputs or {}).get("loss")
        if loss is not None:
            parts.append(f"loss {float(loss.detach() if hasattr(loss, 'detach') else loss):.4f}")
        lrs = runner.optim_wrapper.get_lr()
        if lrs:
            parts.append(f"lr {float(next(iter(lrs.values()))[0]):.4g}")
        parts.append(f"{per_iter:.2f} s/it")
        parts.append(f"ETA {format_duration(eta)}")
        self._print(runner, "  ".join(parts))

    def after_val_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self._silent_too_long():
            loader = getattr(getattr(runner, "val_loop", None), "dataloader", None)
            total = len(loader) if loader is not None else "?"
            self._print(runner, f"validating after epoch {runner.epoch}: batch {batch_idx + 1}/{total}")

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if metrics:
            values = "  ".join(f"{k} {float(v):.2f}" for k, v in metrics.items())
            self._print(runner, f"validation after epoch {runner.epoch}: {values}")


class QuietRunner(Runner):
    """mmengine's ``Runner`` whose console shows warnings and errors only.

    Everything mmengine logs (environment, config, its own progress lines) still goes
    to the log file in the work dir, at the recipe's ``log_level``.
    """

    def build_logger(self, log_level="INFO", log_file=None, **kwargs):
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:  # the console; file handlers subclass it
                handler.setLevel(max(handler.level, logging.WARNING))
                handler.addFilter(_drop_deprecation_notices)
        return logger


def _drop_deprecation_notices(record: logging.LogRecord) -> bool:
    # mmengine warns about its own deprecated internals (FileClient ...) on every run: log file only.
    return "deprecated" not in record.getMessage()


def log_file_of(runner) -> str:
    """Path of the runner's log file (``<work_dir>/<timestamp>/<timestamp>.log``)."""
    return os.path.join(runner.log_dir, f"{runner.timestamp}.log")


def build_quiet_runner(cfg, label: str, interval: Optional[int] = None):
    """A ``QuietRunner`` for ``cfg`` with a :class:`ProgressHook` printing under ``label``."""
    runner = QuietRunner.from_cfg(cfg)
    runner.register_hook(ProgressHook(label, interval), priority="LOW")
    return runner
