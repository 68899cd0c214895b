"""Run a function in several CPU processes joined by a gloo process group."""

from __future__ import annotations

import os
import socket
import tempfile
from typing import Any, Callable, List

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out_dir: str, fn: Callable, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
        # Every rank done before any tears down: gloo aborts a rank (SIGABRT, "terminate called
        # without an active exception") whose peer destroys the group while it is still exchanging.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_distributed(fn: Callable, world_size: int = 2, *args: Any) -> List[Any]:
    """Call ``fn(rank, world_size, *args)`` in ``world_size`` processes; return their results.

    ``fn`` must be importable (defined at module level) and return torch-saveable data.
    """
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_worker, args=(world_size, _free_port(), out_dir, fn, args), nprocs=world_size)
        return [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(world_size)]
