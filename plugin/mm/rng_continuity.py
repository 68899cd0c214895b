"""Random-number continuity across a stop and a resume, for mmengine's training loop.

Saved per checkpoint: every process's global generators (Python, NumPy, torch), the
generators the train loader's sampler or dataset own (:mod:`rankssl.mm.rng_state`), and the
sampler's seed. Restored before the next training epoch, so a resumed run sees the same
batches and augmentations as the uninterrupted one. A loss's own generator travels in the
model's state dict and needs nothing here.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from mmengine.logging import print_log

from rankssl.mm.rng_state import (
    capture_generators,
    gather_rng_states,
    loader_generators,
    restore_generators,
    restore_rng_state,
)

__all__ = ["capture_run_states", "restore_run_states", "sampler_seed", "restore_sampler_seed"]


def capture_run_states(runner) -> List[Dict[str, Any]]:
    """Every process's global generators and its train loader's own generators, indexed by rank."""
    owned = loader_generators(runner.train_loop.dataloader)
    return gather_rng_states({"generators": capture_generators(owned)} if owned else None)


def restore_run_states(runner, states: List[Dict[str, Any]]) -> None:
    """Set this process's generators to its entry of :func:`capture_run_states`'s list.

    A list from another number of processes, or without a state for one of the loader's
    generators, is not applied (or only partly) and the log says which stream is not continued.
    """
    if len(states) == runner.world_size:
        restore_rng_state(states[runner.rank])
        owned = loader_generators(runner.train_loop.dataloader)
        missing = restore_generators(owned, states[runner.rank].get("generators") or {})
        if missing:
            print_log(
                f"The checkpoint holds no state for the data loader's generator(s) {missing}: their "
                "stream is not continued.",
                logger="current",
                level=30,
            )
    elif states:
        print_log(
            f"The checkpoint holds the random state of {len(states)} processes, this run has "
            f"{runner.world_size}: the augmentation stream is not continued.",
            logger="current",
            level=30,
        )


def sampler_seed(runner) -> Optional[int]:
    """The train loader's sampler seed (mmengine's ``DefaultSampler``), None where it has none."""
    seed = getattr(getattr(runner.train_loop.dataloader, "sampler", None), "seed", None)
    return int(seed) if isinstance(seed, int) else None


def restore_sampler_seed(runner, seed: Optional[int]) -> None:
    """Give the train loader's sampler the saved seed (where both exist)."""
    sampler = getattr(runner.train_loop.dataloader, "sampler", None)
    if seed is not None and sampler is not None and hasattr(sampler, "seed"):
        sampler.seed = seed
