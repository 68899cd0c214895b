"""A clean stop on SIGTERM/SIGINT: note the first signal, let the caller save, stop at once on the second.

:class:`StopOnSignal` only records the signal; the training loop asks
:meth:`StopOnSignal.requested` after each iteration (every process agrees on the answer) and
saves before it exits with :func:`exit_status` (128 + the signal number, the shell's convention).

Example:
    >>> stop = StopOnSignal()
    >>> stop.install(); stop.signal is None
    True
    >>> stop.remove()
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Dict, Optional

__all__ = ["StopOnSignal", "SIGNALS", "exit_status"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_status(signum: int) -> int:
    """The status a process stopped by ``signum`` exits with: ``128 + signum``."""
    return 128 + signum


class StopOnSignal:
    """Handlers for SIGTERM/SIGINT that defer the first signal and let the second stop the process.

    ``install`` sets the handlers (main thread only; elsewhere signals cannot be caught and
    nothing changes), ``remove`` puts the previous handlers back. While installed, the first
    signal is stored in :attr:`signal` and a line on stderr says what happens next; a second
    signal, or one arriving after :meth:`deactivate`, removes the handlers and is re-raised
    (``KeyboardInterrupt`` for SIGINT).
    """

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self._active = False
        self._previous: Dict[int, Any] = {}

    def install(self) -> None:
        self._active, self.signal = True, None
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def remove(self) -> None:
        self._active = False
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        self._previous = {}

    def _on_signal(self, signum: int, frame) -> None:
        if not self._active or self.signal is not None:  # second signal, or a run that ended abnormally
            self.remove()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.signal = signum
        print(
            f"\nrankssl: received {signal.Signals(signum).name}; saving a checkpoint after the current "
            "iteration, then stopping (send it again to stop at once).",
            file=sys.stderr,
            flush=True,
        )

    def requested(self, world_size: int = 1) -> bool:
        """Whether a stop was asked for; with ``world_size > 1`` every process gets the same answer.

        Distributed runs all-reduce the signal number (max) so that all processes stop after
        the same iteration.
        """
        if world_size > 1:
            import torch
            import torch.distributed as dist

            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            flag = torch.tensor([self.signal or 0], dtype=torch.int64, device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.signal = int(flag.item()) or None
        return self.signal is not None
