"""Sorting networks: rankssl.ops against diffsort.DiffSortNet, forward + backward.

    python benchmarks/bench_sorting.py              # the table of the engine issue
    python benchmarks/bench_sorting.py --device cuda --quick

Ratios are diffsort / rankssl in the same process (higher is better for rankssl).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import machine_description, median_time, peak_memory_in_subprocess, peak_memory_of  # noqa: E402

CASES = [
    dict(batch=1024, n=13, network="odd_even"),
    dict(batch=64, n=128, network="odd_even"),
    dict(batch=256, n=32, network="bitonic"),
]
QUICK_CASES = [dict(batch=8, n=5, network="odd_even")]


def make_step(impl: str, batch: int, n: int, network: str, device: str, seed: int = 0):
    """A forward + backward closure. impl: diffsort | full (soft_sort with P) | matmul (P @ v)."""
    import diffsort

    from rankssl.ops import soft_permutation_matmul, soft_sort

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, generator=generator).to(device).requires_grad_(True)
    v = torch.zeros(n, 1, device=device)
    v[n // 2 :] = 1.0  # mass on the upper block of ranks, as GroCo asks
    if impl == "diffsort":
        sorter = diffsort.DiffSortNet(network, n, device=device, steepness=1.0, distribution="cauchy")

        def step():
            _, P = sorter(x)
            (P @ v).sum().backward()

    elif impl == "full":

        def step():
            _, P = soft_sort(x, network, "cauchy", 1.0)
            (P @ v).sum().backward()

    else:

        def step():
            soft_permutation_matmul(x, v, network, "cauchy", 1.0).sum().backward()

    return step


def run(cases, device: str, repeats: int) -> list:
    rows = []
    script = os.path.abspath(__file__)
    for case in cases:
        row = dict(case)
        for impl in ("diffsort", "full", "matmul"):
            step = make_step(impl, **case, device=device)
            row[f"{impl}_ms"] = 1e3 * median_time(step, device, repeats=repeats)
            memory_case = dict(case, impl=impl, device=device)
            row[f"{impl}_mb"] = (
                peak_memory_of(make_step(impl, **case, device=device), device)
                if device.startswith("cuda")
                else peak_memory_in_subprocess(script, memory_case)
            ) / 2**20
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


HEADER = (
    "| network | B | n | diffsort ms | rankssl P ms | rankssl P@v ms | speed-up P | speed-up P@v "
    "| diffsort MiB | P MiB | P@v MiB | memory ratio P@v |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def format_row(r: dict) -> str:
    return (
        f"| {r['network']} | {r['batch']} | {r['n']} | {r['diffsort_ms']:.2f} | {r['full_ms']:.2f} | "
        f"{r['matmul_ms']:.2f} | {r['diffsort_ms'] / r['full_ms']:.1f}x | {r['diffsort_ms'] / r['matmul_ms']:.1f}x | "
        f"{r['diffsort_mb']:.1f} | {r['full_mb']:.1f} | {r['matmul_mb']:.1f} | "
        f"{r['diffsort_mb'] / max(r['matmul_mb'], 1e-3):.1f}x |"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="toy sizes (used by the test suite)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_case:
        case = json.loads(args.memory_case)
        impl, device = case.pop("impl"), case.pop("device")
        step = make_step(impl, **case, device=device)
        print(peak_memory_of(step, device))
        return
    print(f"# Sorting networks, forward + backward; {machine_description(args.device)}; {datetime.date.today()}")
    print(HEADER)
    run(QUICK_CASES if args.quick else CASES, args.device, 2 if args.quick else args.repeats)


if __name__ == "__main__":
    main()
