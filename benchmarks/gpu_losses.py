"""Device time and host time of each loss's forward + backward against its peer, on a GPU.

For every row of :data:`launches.ROWS` (plus GroCo with K = 1,023 where the batch allows),
at each batch size and in fp32 and bf16 autocast: the median over ``--repeats`` steps of

* device time: CUDA events recorded around the step (what the GPU spends), and
* host time: the wall time until the step's Python call returns, without waiting for the
  GPU (what the CPU spends issuing it; the old H100 table of RESULTS.md measured this).

and each loss's ratio to its peer. Ready to run on a lent GPU::

    python benchmarks/gpu_losses.py --device cuda --sizes 256 1024 4096 > gpu_losses.md

``--device cpu --sizes 64`` is a smoke mode (both times are then wall times).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import launches  # noqa: E402
from result_record import record_on_exit  # noqa: E402


def _rows(batch_size: int) -> List[launches.Row]:
    rows = list(launches.ROWS)
    if 2 * batch_size > 1024:  # K = 1,023 needs more than 1,023 other images per anchor
        rows.insert(1, launches.Row(
            "GroCoLoss (K=1023)", launches._lightly_style("GroCoLoss", n_negatives=1023),
            "lightly NTXentLoss", launches._lightly_ntxent,
        ))
    return rows


def _inputs(batch_size: int, dim: int, device: torch.device):
    views, embeddings, labels = launches.inputs(batch_size, dim)
    move = lambda t: t.detach().to(device).requires_grad_(True)  # noqa: E731
    return [move(v) for v in views], move(embeddings), labels.to(device)


def time_step(step: Callable[[], torch.Tensor], device: torch.device, dtype: str, repeats: int) -> Dict[str, float]:
    """Median device and host milliseconds of ``step().backward()``."""
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
    )
    cuda = device.type == "cuda"

    def run():
        with autocast:
            loss = step()
        loss.backward()

    for _ in range(2):
        run()
    if cuda:
        torch.cuda.synchronize(device)
    device_ms, host_ms = [], []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        began = time.perf_counter()
        run()
        host_ms.append((time.perf_counter() - began) * 1e3)
        if cuda:
            end.record()
            end.synchronize()
            device_ms.append(start.elapsed_time(end))
        else:
            device_ms.append(host_ms[-1])
    return {"device_ms": statistics.median(device_ms), "host_ms": statistics.median(host_ms)}


def measure(device: str, sizes: List[int], dtypes: List[str], dim: int, repeats: int) -> List[dict]:
    from rankssl.ops.validation import flush

    target = torch.device(device)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch_size in sizes:
            for dtype in dtypes:
                for row in _rows(batch_size):
                    data = _inputs(batch_size, dim, target)
                    try:
                        ours = time_step(row.rankssl(*data), target, dtype, repeats)
                        theirs = time_step(row.peer(*data), target, dtype, repeats)
                        flush()
                    except (RuntimeError, ValueError, AssertionError) as error:  # e.g. out of memory
                        results.append(dict(row=row.name, batch_size=batch_size, dtype=dtype, error=str(error)[:80]))
                        continue
                    results.append(dict(row=row.name, peer=row.peer_name, batch_size=batch_size, dtype=dtype,
                                        **ours, **{f"peer_{k}": v for k, v in theirs.items()}))
    return results


def markdown(results: List[dict]) -> str:
    lines = [
        "| B | dtype | loss | device ms | host ms | peer | peer device ms | peer host ms | device ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['batch_size']} | {r['dtype']} | {r['row']} | failed: {r['error']} | | | | | |")
            continue
        ratio = r["device_ms"] / r["peer_device_ms"]
        lines.append(
            f"| {r['batch_size']} | {r['dtype']} | {r['row']} | {r['device_ms']:.3f} | {r['host_ms']:.3f} | "
            f"{r['peer']} | {r['peer_device_ms']:.3f} | {r['peer_host_ms']:.3f} | {ratio:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", metavar="PATH", help="also write the printed tables as a record for report.py")
    args = parser.parse_args(argv)
    record_on_exit(args.json)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda needs a GPU; use --device cpu --sizes 64 for a smoke run.")
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"{name}, torch {torch.__version__}, D={args.dim}, two views, median of {args.repeats}\n")
    print(markdown(measure(args.device, args.sizes, args.dtypes, args.dim, args.repeats)))


if __name__ == "__main__":
    main()
