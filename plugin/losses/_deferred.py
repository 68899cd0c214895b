"""Value-dependent checks of the Hydra losses, immediate or deferred by the validation mode.

Under lazy validation (CUDA tensors by default, see :mod:`rankssl.ops.validation`) a check
whose answer lives on the device goes to :func:`rankssl.ops.validation.defer_check` and is
raised at the next validated call, so the loss never waits for the device; otherwise the
caller answers it at once, with the row at fault in the message.
"""

from __future__ import annotations

import torch

from rankssl.ops.validation import checks_lazily, defer_check

__all__ = ["defer_check", "is_lazy"]


def is_lazy(tensor: torch.Tensor) -> bool:
    """Whether checks on ``tensor`` are deferred (no host sync) under the current mode."""
    return checks_lazily(tensor)
