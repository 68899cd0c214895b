"""Capture and restore the random number generators that drive data augmentation.

A checkpoint that holds the model and the optimizer but not the generators resumes
with a different augmentation stream than the uninterrupted run would have seen. These
helpers snapshot Python's ``random``, NumPy's global generator and torch's CPU (and
CUDA) generators as plain data that ``torch.load(weights_only=True)`` accepts (ints,
tuples, tensors), one snapshot per process.
"""

from __future__ import annotations

import random
from typing import Any, Dict, List

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state", "gather_rng_states"]


def capture_rng_state() -> Dict[str, Any]:
    """This process's generator states as weights-only-loadable data.

    Example:
        >>> state = capture_rng_state(); a = torch.rand(1)
        >>> restore_rng_state(state); bool(torch.rand(1) == a)
        True
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Set the generators to a :func:`capture_rng_state` snapshot."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def gather_rng_states() -> List[Dict[str, Any]]:
    """Every process's snapshot, indexed by rank (a list of one outside a process group).

    A collective: every process of the group must call it.
    """
    import torch.distributed as dist

    state = capture_rng_state()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    states: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states
