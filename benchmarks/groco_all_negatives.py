"""GroCo with every other image as a negative (K = B - 1) against lightly's NTXentLoss on the CPU.

    python benchmarks/groco_all_negatives.py                 # B = 1,024, K = 1,023, one thread
    python benchmarks/groco_all_negatives.py --batch 256 --repeats 5
    python benchmarks/groco_all_negatives.py --quick         # B = 64, a smoke run

Forward + backward of ``GroCoLoss(n_negatives=B - 1, sorting_network="bitonic")`` (as in
``speed.py --groco-scaling``: the default odd-even network has n(n-1)/2 comparators, 19x
bitonic's at n = 1,024) and ``NTXentLoss(temperature=0.5)`` on the same two views (B x 128),
timed in one process at one thread, interleaved call by call; the figure is the ratio of the
medians. "GroCoLoss (topk)" is the same loss with the negatives selected by ``topk`` + flip,
as before the sort path, for the gain of that change. A torch.profiler table of one GroCo
call follows, which says where its time goes (the fused sorting-network kernel, the
selection of negatives, the rest).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from result_record import record_on_exit  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--network", default="bitonic")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the printed tables as a record for report.py")
    args = parser.parse_args(argv)
    record_on_exit(args.json)
    if args.quick:
        args.batch, args.repeats = 64, 2
    torch.set_num_threads(args.threads)

    from lightly.loss import NTXentLoss
    from torch.profiler import ProfilerActivity, profile

    from rankssl.losses import GroCoLoss

    generator = torch.Generator().manual_seed(0)
    views = [torch.randn(args.batch, args.dim, generator=generator) for _ in range(2)]
    groco = GroCoLoss(n_negatives=args.batch - 1, sorting_network=args.network)
    with_topk = GroCoLoss(n_negatives=args.batch - 1, sorting_network=args.network)

    def topk_negatives(anchor: torch.Tensor, num_negatives: Optional[int] = None) -> torch.Tensor:
        candidates = anchor.detach() if with_topk.stop_gradient else anchor
        own = torch.arange(anchor.shape[0])
        scores = (anchor @ candidates.T).index_put((own, own), torch.tensor(float("-inf")))
        return scores.topk(num_negatives or with_topk.n_negatives, dim=1).values.flip(1)

    with_topk._hardest_negatives = topk_negatives
    losses = {"NTXentLoss": NTXentLoss(temperature=0.5), "GroCoLoss": groco, "GroCoLoss (topk)": with_topk}

    def call(fn) -> None:
        leaves = [v.clone().requires_grad_(True) for v in views]
        fn(*leaves).backward()

    for fn in losses.values():  # warm-up (and the first-use kernel build)
        call(fn)
    times = {name: [] for name in losses}
    for _ in range(args.repeats):
        for name, fn in losses.items():
            start = time.perf_counter()
            call(fn)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), B={args.batch}, D={args.dim}, "
          f"K={args.batch - 1}, {args.network}, load {os.getloadavg()[0]:.2f}")
    for name, values in times.items():
        print(f"{name}: median {1e3 * median[name]:.1f} ms  (" + ", ".join(f"{1e3 * v:.0f}" for v in values) + ")")
    for name in ("GroCoLoss", "GroCoLoss (topk)"):
        print(f"{name} / NTXentLoss: {median[name] / median['NTXentLoss']:.2f}x")
    ratio = {name: median[name] / median["NTXentLoss"] for name in ("GroCoLoss", "GroCoLoss (topk)")}
    print("\n| load | NTXent ms | GroCo ms (sort) | GroCo ms (topk) | GroCo / NTXent (sort) | (topk) |\n|---|---|---|---|---|---|")
    print(f"| {os.getloadavg()[0]:.1f} | {1e3 * median['NTXentLoss']:,.0f} | {1e3 * median['GroCoLoss']:,.0f} | "
          f"{1e3 * median['GroCoLoss (topk)']:,.0f} | {ratio['GroCoLoss']:.2f}x | {ratio['GroCoLoss (topk)']:.2f}x |")

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call(groco)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print("\nOne GroCo call, self CPU time by op:")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:6]:
        print(f"  {event.key:32s} {event.self_cpu_time_total / 1e3:9.1f} ms  {100 * event.self_cpu_time_total / total:5.1f}%")


if __name__ == "__main__":
    main()
