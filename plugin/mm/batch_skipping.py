"""Resume inside an epoch: draw the batches already trained on again, and skip them.

A run stopped mid-epoch restarts that epoch with the same generators (see
:mod:`rankssl.mm.rng_continuity`), so drawing and discarding its first ``n`` batches leaves
the loader exactly where the stopped run was, augmentations included.

Example:
    >>> loader = SkipFirstBatches([[0], [1], [2]], 2)
    >>> list(loader), len(loader)
    ([[2]], 3)
"""

from __future__ import annotations

from typing import Any, Iterator

__all__ = ["SkipFirstBatches", "skip_first_batches", "stop_skipping"]


class SkipFirstBatches:
    """A data loader that draws and discards its first ``n`` batches, then behaves as the original.

    ``len`` is the original's (mmengine counts the epoch's iterations from it); other
    attributes (``sampler``, ``dataset``, ...) are the original's.
    """

    def __init__(self, loader: Any, n: int) -> None:
        self._loader, self._n = loader, n

    @property
    def original(self) -> Any:
        """The wrapped data loader."""
        return self._loader

    def __iter__(self) -> Iterator:
        iterator = iter(self._loader)
        for _ in range(self._n):
            next(iterator, None)
        return iterator

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def skip_first_batches(loop, n: int) -> None:
    """Make ``loop``'s next epoch skip its first ``n`` batches (``loop``: mmengine's train loop)."""
    loop.dataloader = SkipFirstBatches(loop.dataloader, n)


def stop_skipping(loop) -> None:
    """Put ``loop``'s own data loader back after the epoch that skipped batches."""
    if isinstance(loop.dataloader, SkipFirstBatches):
        loop.dataloader = loop.dataloader.original
