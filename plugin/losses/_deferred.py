"""Value-dependent checks of the Hydra losses, immediate or deferred by the validation mode.

Under lazy validation (CUDA tensors by default, see :mod:`rankssl.ops.validation`) a check
whose answer lives on the device is handed to ``defer_check`` and raised at the next
validated call, so the loss never waits for the device; otherwise it is answered at once.
"""

from __future__ import annotations

import os

import torch

from rankssl.ops import validation

__all__ = ["defer_check", "is_lazy"]


def is_lazy(tensor: torch.Tensor) -> bool:
    """Whether checks on ``tensor`` are deferred (no host sync) under the current mode."""
    getter = getattr(validation, "is_lazy", None)
    if getter is not None:
        return bool(getter(tensor))
    mode = getattr(validation, "current_mode", None)
    mode = mode() if callable(mode) else os.environ.get("RANKSSL_VALIDATE", "auto")
    return mode == "lazy" or (mode == "auto" and tensor.device.type != "cpu")


def defer_check(bad: torch.Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` where ``bad`` (0-d bool) is True: now, or deferred."""
    deferred = getattr(validation, "defer_check", None)
    if deferred is not None:
        deferred(bad, message)
    elif bool(bad):
        raise ValueError(message)
