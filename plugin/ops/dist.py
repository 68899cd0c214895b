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


_MAX_DIMS = 8


def check_same_shape(tensor: torch.Tensor, what: str = "tensor") -> None:
    """Raise ``ValueError`` on every process unless all processes hold ``tensor``s of one shape and dtype.

    gloo and NCCL abort the whole process (SIGABRT) or hang when ``all_gather`` gets
    tensors of different sizes; one small ``all_gather`` of the shapes first turns that
    into an error every process raises with the same message.
    """
    if not is_distributed():
        return
    if tensor.dim() > _MAX_DIMS:
        raise ValueError(f"{what}: gather supports at most {_MAX_DIMS} dimensions, got {tensor.dim()}.")
    info = torch.full((_MAX_DIMS + 2,), -1, dtype=torch.int64)
    info[0] = tensor.dim()
    info[1] = _DTYPES.index(tensor.dtype) if tensor.dtype in _DTYPES else len(_DTYPES)
    info[2 : 2 + tensor.dim()] = torch.tensor(tensor.shape, dtype=torch.int64)
    device = tensor.device if tensor.device.type != "meta" else torch.device("cpu")
    if dist.get_backend() == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    info = info.to(device)
    infos = [torch.empty_like(info) for _ in range(dist.get_world_size())]
    dist.all_gather(infos, info)
    infos = [i.cpu() for i in infos]
    if all(torch.equal(i, infos[0]) for i in infos):
        return

    def describe(i: torch.Tensor) -> str:
        dims = tuple(int(d) for d in i[2 : 2 + int(i[0])])
        dtype = _DTYPES[int(i[1])] if int(i[1]) < len(_DTYPES) else "other dtype"
        return f"{dims} {dtype}"

    per_rank = ", ".join(f"rank {r}: {describe(i)}" for r, i in enumerate(infos))
    raise ValueError(
        f"gather_distributed=True needs the same {what} shape and dtype on every process, got {per_rank}. "
        "Give every process the same batch size (e.g. drop_last=True in the dataloader) or set "
        "gather_distributed=False."
    )


_DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
]


def gather(tensor: torch.Tensor, what: str = "tensor") -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from all processes along dim 0, keeping gradients.

    Every process must pass the same shape and dtype; otherwise every process raises
    ``ValueError`` naming each rank's shape (see :func:`check_same_shape`). Returns
    (world_size * B, ...); rows ``rank * B : (rank + 1) * B`` are this process's own.
    Without a process group, returns ``tensor`` itself.
    """
    if not is_distributed():
        return tensor
    check_same_shape(tensor, what)
    return torch.cat(_GatherWithGradient.apply(tensor), dim=0)


def local_row_offset(batch_size: int) -> int:
    """Index of this process's first row in a :func:`gather`-ed tensor."""
    return rank() * batch_size


def gather_list(tensors: List[torch.Tensor]) -> List[torch.Tensor]:
    """:func:`gather` applied to each tensor of a list."""
    return [gather(t, f"view {i}") for i, t in enumerate(tensors)]


def check_gather_distributed(gather_distributed: bool) -> None:
    """Raise ``ValueError`` for ``gather_distributed=True`` without ``torch.distributed``, as lightly's losses do.

    Called by the losses' constructors, so the mistake shows where it is made.
    """
    if gather_distributed and not dist.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available. Set "
            "gather_distributed=False or install a torch build with distributed support."
        )
