"""Distributed helpers that keep gradients.

``torch.distributed.all_gather`` returns tensors cut off from autograd, so a loss that
uses other processes' embeddings as negatives would send no gradient back to them.
:func:`gather` concatenates every process's tensor and, on the backward pass, sums the
gradients from all processes and hands each process the slice of its own rows, which
is the gradient of the loss summed over processes.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        ctx.batch_size = tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return tuple(gathered)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(grads)
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[dist.get_rank()]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from all processes along dim 0, keeping gradients.

    Every process must pass the same shape. Returns (world_size * B, ...); rows
    ``rank * B : (rank + 1) * B`` are this process's own. Without a process group,
    returns ``tensor`` itself.
    """
    if not is_distributed():
        return tensor
    return torch.cat(_GatherWithGradient.apply(tensor), dim=0)


def local_row_offset(batch_size: int) -> int:
    """Index of this process's first row in a :func:`gather`-ed tensor."""
    return rank() * batch_size


def gather_list(tensors: List[torch.Tensor]) -> List[torch.Tensor]:
    """:func:`gather` applied to each tensor of a list."""
    return [gather(t) for t in tensors]


def check_gather_distributed(gather_distributed: bool) -> None:
    """Raise ``ValueError`` for ``gather_distributed=True`` without ``torch.distributed``, as lightly's losses do.

    Called by the losses' constructors, so the mistake shows where it is made.
    """
    if gather_distributed and not dist.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available. Set "
            "gather_distributed=False or install a torch build with distributed support."
        )
