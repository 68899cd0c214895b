"""Capture and restore the random number generators that drive data augmentation.

A checkpoint that holds the model and the optimizer but not the generators resumes
with a different augmentation stream than the uninterrupted run would have seen. These
helpers snapshot Python's ``random``, NumPy's global generator and torch's CPU (and
CUDA) generators as plain data that ``torch.load(weights_only=True)`` accepts (ints,
tuples, tensors), one snapshot per process, and the generators a data loader's sampler
or dataset owns (:func:`loader_generators`).
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch

__all__ = [
    "capture_rng_state",
    "restore_rng_state",
    "gather_rng_states",
    "loader_generators",
    "capture_generators",
    "restore_generators",
]


def capture_rng_state() -> Dict[str, Any]:
    """This process's generator states as weights-only-loadable data.

    Example:
        >>> state = capture_rng_state(); a = torch.rand(1)
        >>> restore_rng_state(state); bool(torch.rand(1) == a)
        True
    """
    legacy = np.random.get_state(legacy=True)
    assert isinstance(legacy, tuple), "NumPy's legacy generator state is a tuple"
    kind, keys, pos, has_gauss, cached = legacy
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


def loader_generators(loader: Any) -> Dict[str, Any]:
    """The generators a data loader's sampler, batch sampler or dataset own, by attribute path.

    Finds ``torch.Generator`` and NumPy ``Generator`` / ``RandomState`` attributes of
    ``loader.sampler``, ``loader.batch_sampler`` (and its ``sampler``) and
    ``loader.dataset`` (one level deep), e.g. ``{"sampler.generator": <torch.Generator>}``.
    """
    while hasattr(loader, "_loader"):  # a wrapper that skips batches on resume
        loader = loader._loader
    found: Dict[str, Any] = {}
    roots = [
        ("sampler", getattr(loader, "sampler", None)),
        ("batch_sampler", getattr(loader, "batch_sampler", None)),
        ("batch_sampler.sampler", getattr(getattr(loader, "batch_sampler", None), "sampler", None)),
        ("dataset", getattr(loader, "dataset", None)),
    ]
    seen = set()
    for prefix, obj in roots:
        if obj is None or id(obj) in seen:  # a batch sampler's sampler is usually loader.sampler
            continue
        seen.add(id(obj))
        for name, value in vars(obj).items() if hasattr(obj, "__dict__") else ():
            if isinstance(value, (torch.Generator, np.random.Generator, np.random.RandomState)):
                found[f"{prefix}.{name}"] = value
    return found


def capture_generators(generators: Dict[str, Any]) -> Dict[str, Any]:
    """Weights-only-loadable snapshots of :func:`loader_generators`'s generators."""
    out: Dict[str, Any] = {}
    for name, gen in generators.items():
        if isinstance(gen, torch.Generator):
            out[name] = ("torch", gen.get_state())
        elif isinstance(gen, np.random.Generator):
            out[name] = ("numpy", repr(gen.bit_generator.state))
        else:
            kind, keys, pos, has_gauss, cached = gen.get_state()
            out[name] = (
                "randomstate",
                (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
            )
    return out


def restore_generators(generators: Dict[str, Any], states: Dict[str, Any]) -> List[str]:
    """Set each generator to its snapshot; return the names with no snapshot (left as they are)."""
    import ast

    missing = []
    for name, gen in generators.items():
        if name not in states:
            missing.append(name)
            continue
        kind, state = states[name]
        if kind == "torch":
            gen.set_state(state)
        elif kind == "numpy":
            gen.bit_generator.state = ast.literal_eval(state)
        else:
            kind_, keys, pos, has_gauss, cached = state
            gen.set_state((kind_, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    return missing


def gather_rng_states(extra: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Every process's snapshot, indexed by rank (a list of one outside a process group).

    ``extra`` entries (e.g. ``{"generators": capture_generators(...)}``) join this process's
    snapshot. A collective: every process of the group must call it.
    """
    import torch.distributed as dist

    state = capture_rng_state()
    state.update(extra or {})
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    states: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states
