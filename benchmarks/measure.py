"""Timing and peak-memory helpers shared by the benchmarks.

Time: median wall time of forward + backward over repeats, after warm-up, with the
peers interleaved in the same process. Peak memory: on CUDA, ``max_memory_allocated``
above the level before the step; on the CPU, the highest resident set size sampled
every 0.2 ms during one forward + backward, above the level just before it, in a fresh
subprocess per case whose allocator returns every released block to the system (after
one warm-up step, so that lazy initialisation is not counted).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable

import torch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(step: Callable[[], None], device: str = "cpu", repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of ``step()`` over ``repeats`` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


class _RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _current_rss_bytes()
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, _current_rss_bytes())
            time.sleep(0.0002)


def peak_memory_of(step: Callable[[], None], device: str = "cpu") -> int:
    """Bytes above the starting level used at the peak of ``step()`` (run it in a fresh process on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    step()  # warm-up: lazy initialisation, allocator pools
    gc.collect()
    base = _current_rss_bytes()
    sampler = _RssSampler()
    sampler.start()
    step()
    sampler.running = False
    sampler.join()
    return max(0, max(sampler.peak, _current_rss_bytes()) - base)


def peak_memory_in_subprocess(script: str, case: dict) -> int:
    """Run ``python script --memory-case JSON`` and read the bytes it prints last."""
    # glibc keeps freed heap memory for reuse, which would hide a later peak; with a
    # fixed, low mmap threshold every tensor-sized block is mapped on allocation and
    # unmapped on release, so the resident set follows the live tensors.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="16384")
    output = subprocess.run(
        [sys.executable, script, "--memory-case", json.dumps(case)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(output.strip().splitlines()[-1])


def machine_description(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    import platform

    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}"
