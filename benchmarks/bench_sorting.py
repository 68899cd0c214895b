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
from result_record import record_on_exit  # noqa: E402

CASES = [
    dict(batch=1024, n=13, network="odd_even"),
    dict(batch=64, n=128, network="odd_even"),
    dict(batch=64, n=128, network="bitonic"),
    dict(batch=256, n=32, network="bitonic"),
]
QUICK_CASES = [dict(batch=8, n=5, network="odd_even")]


def make_step(impl: str, batch: int, n: int, network: str, device: str, seed: int = 0):
    """A forward + backward closure. impl: diffsort | full (soft_sort with P) | matmul (P @ v,
    the default path: fused where available) | torch (P @ v, pure-torch path) | kernel (the
    fused kernels' forward and backward called directly on preallocated buffers: the
    arithmetic alone, without autograd or Python around it)."""
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

    elif impl == "torch":
        from rankssl.ops import get_network
        from rankssl.ops.permutation_matmul import reference_permutation_matmul

        layers = get_network(network, n, device)

        def step():
            reference_permutation_matmul(x, v, layers, "cauchy", 1.0, 0.25).sum().backward()

    elif impl == "kernel":
        from rankssl.ops import fused, get_network

        layers = get_network(network, n, device)
        rows, grad_out = x.detach().contiguous(), torch.ones(batch, n, 1)
        out, grad_x = torch.empty(batch, n, 1), torch.empty(batch, n)

        def step():
            fused._run(layers, "cauchy", 1.0, 0.25, 0, rows, v, False, 1, out=out)
            fused._run(layers, "cauchy", 1.0, 0.25, 1, rows, v, False, 1, grad_out=grad_out, grad_x=grad_x)

    else:

        def step():
            soft_permutation_matmul(x, v, network, "cauchy", 1.0).sum().backward()

    return step


def run(cases, device: str, repeats: int) -> list:
    rows = []
    script = os.path.abspath(__file__)
    for case in cases:
        row = dict(case)
        for impl in ("diffsort", "full", "matmul", "torch", "kernel"):
            if impl == "kernel" and (device != "cpu" or not fused_available()):
                row["kernel_ms"] = float("nan")
                continue
            step = make_step(impl, **case, device=device)
            row[f"{impl}_ms"] = 1e3 * median_time(step, device, repeats=repeats)
            if impl in ("torch", "kernel"):
                continue
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
    "| network | B | n | diffsort ms | rankssl P ms | P@v torch ms | P@v fused ms | kernels alone ms "
    "| speed-up P | speed-up P@v torch | speed-up P@v fused | limit (diffsort / kernels) "
    "| diffsort MiB | P MiB | P@v MiB | memory ratio P@v |\n|" + "---|" * 16
)


def fused_available() -> bool:
    from rankssl.ops import fused

    return fused.available()


def format_row(r: dict) -> str:
    d = r["diffsort_ms"]
    return (
        f"| {r['network']} | {r['batch']} | {r['n']} | {d:.2f} | {r['full_ms']:.2f} | {r['torch_ms']:.3f} | "
        f"{r['matmul_ms']:.3f} | {r['kernel_ms']:.3f} | {d / r['full_ms']:.1f}x | {d / r['torch_ms']:.1f}x | "
        f"{d / r['matmul_ms']:.1f}x | {d / r['kernel_ms']:.1f}x | "
        f"{r['diffsort_mb']:.1f} | {r['full_mb']:.1f} | {r['matmul_mb']:.1f} | "
        f"{r['diffsort_mb'] / max(r['matmul_mb'], 1e-3):.1f}x |"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="toy sizes (used by the test suite)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH", help="also write the printed tables as a record for report.py")
    args = parser.parse_args(argv)
    record_on_exit(args.json)
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
