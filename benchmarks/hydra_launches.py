"""Hydra's kernel launches, host syncs and CPU time per forward + backward, against pml's SupConLoss.

Two views of B = 256 embeddings (D = 128, 10 classes), the default feature filter. Launches and
syncs are counted below autograd on the code path a CUDA tensor takes (``validation_mode("lazy")``,
:func:`launches.count_step`); CPU times are medians of interleaved steps in one process, as
ratios to SupCon's.

    OMP_NUM_THREADS=1 python benchmarks/hydra_launches.py [--json PATH]

The target of the GPU path: no host sync and no more launches than SupCon.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from launches import count_step  # noqa: E402
from result_record import record_on_exit  # noqa: E402

Step = Callable[[], torch.Tensor]


def steps(batch_size: int = 256, dim: int = 128, num_classes: int = 10) -> Dict[str, Step]:
    """One loss step per row, each clearing the gradients it produces, on the same two views."""
    from pytorch_metric_learning.losses import SupConLoss

    from rankssl.losses import HydraLoss
    from rankssl.losses.hydra import RANKSSL_VARIANT
    from rankssl.pml import HydraLoss as PMLHydraLoss

    generator = torch.Generator().manual_seed(0)
    z0, z1 = (torch.randn(batch_size, dim, generator=generator).requires_grad_(True) for _ in range(2))
    labels = torch.arange(batch_size) % num_classes
    both, both_labels = torch.cat([z0, z1]), torch.cat([labels, labels])
    simlap = HydraLoss(num_classes, dim, seed=0)
    variant = HydraLoss(num_classes, dim, seed=0, **RANKSSL_VARIANT)
    pml_hydra = PMLHydraLoss(num_classes, dim, seed=0)
    supcon = SupConLoss()

    def step(loss_fn, call) -> Step:
        def run() -> torch.Tensor:
            z0.grad = z1.grad = None
            for parameter in loss_fn.parameters():
                parameter.grad = None
            return call()

        return run

    return {
        "lightly-style `HydraLoss([z0, z1], y)`, default (SimLAP)": step(simlap, lambda: simlap([z0, z1], labels)),
        "lightly-style, rankssl variant (`RANKSSL_VARIANT`)": step(variant, lambda: variant([z0, z1], labels)),
        "pml `HydraLoss(cat(z0, z1), cat(y, y))`, default": step(pml_hydra, lambda: pml_hydra(both, both_labels)),
        "pml `SupConLoss` (peer)": step(supcon, lambda: supcon(both, both_labels)),
    }


def median_times(loss_steps: Dict[str, Step], repeats: int = 21) -> Dict[str, float]:
    """Median seconds of ``step().backward()`` per row, the rows interleaved so that drift hits all alike."""
    times: Dict[str, List[float]] = {name: [] for name in loss_steps}
    for _ in range(repeats):
        for name, step in loss_steps.items():
            start = time.perf_counter()
            step().backward()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def markdown(loss_steps: Dict[str, Step], repeats: int = 21) -> str:
    counts = {name: count_step(step) for name, step in loss_steps.items()}
    seconds = median_times(loss_steps, repeats)
    peer = list(loss_steps)[-1]
    lines = [
        "| loss (call) | launches | host syncs | CPU time / SupCon's | target met |",
        "|---|---|---|---|---|",
    ]
    for name in loss_steps:
        launches, syncs = counts[name]["launches"], counts[name]["syncs"]
        met = "-" if name == peer else ("yes" if syncs == 0 and launches <= counts[peer]["launches"] else "no")
        lines.append(f"| {name} | {launches} | {syncs} | {seconds[name] / seconds[peer]:.2f} | {met} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed steps per row (median)")
    parser.add_argument("--json", metavar="PATH", help="also write the printed table as a record for report.py")
    args = parser.parse_args(argv)
    record_on_exit(args.json)
    torch.set_num_threads(1)
    print(markdown(steps(), args.repeats))


if __name__ == "__main__":
    main()
