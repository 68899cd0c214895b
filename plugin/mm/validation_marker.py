"""Whether the validation after a checkpoint finished: a token in the work dir.

A checkpoint written just before a validation carries a fresh token; the finished
validation writes that token to ``.rankssl_validated``. A resume from a checkpoint whose
token is not there (a kill cut the validation short) validates first, as the
uninterrupted run did.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> token = new_token(); validation_finished(folder, token)
    False
    >>> mark_validated(folder, token); validation_finished(folder, token)
    True
"""

from __future__ import annotations

import os
import uuid
from typing import Optional

from rankssl.mm.checkpoint import atomic_write_text

__all__ = ["VALIDATED_NAME", "new_token", "mark_validated", "validation_finished", "validation_follows"]

VALIDATED_NAME = ".rankssl_validated"  # the token of the last checkpoint whose validation finished


def new_token() -> str:
    """A token that names one validation."""
    return uuid.uuid4().hex


def mark_validated(work_dir: str, token: str) -> None:
    """Record (atomically) that the validation named by ``token`` finished."""
    atomic_write_text(os.path.join(work_dir, VALIDATED_NAME), token)


def _read(work_dir: str) -> Optional[str]:
    try:
        with open(os.path.join(work_dir, VALIDATED_NAME)) as f:
            return f.read().strip()
    except OSError:
        return None


def validation_finished(work_dir: str, token: str) -> bool:
    """Whether the validation named by ``token`` finished in ``work_dir``."""
    return _read(work_dir) == token


def validation_follows(runner) -> bool:
    """Whether the training epoch ending now is followed by a validation (mmengine's epoch-based loop)."""
    loop = runner.train_loop
    if getattr(runner, "_val_loop", None) is None or not hasattr(loop, "val_interval"):
        return False
    epoch = runner.epoch + 1
    return epoch >= loop.val_begin and (epoch % loop.val_interval == 0 or epoch == loop.max_epochs)
