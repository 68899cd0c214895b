"""GroCo's and SimCLR's CPU training steps on a busy machine: how much each slows down.

    python benchmarks/contention.py                  # the main job's steps, 2 threads, 2 hogs
    python benchmarks/contention.py --threads 1 --hogs 2 --rounds 6
    python benchmarks/contention.py --quick          # toy sizes, a smoke run

The steps are those of the main job's recipes (``recipes/groco_smallcnn_1xb256-50e_digits.py``
and ``recipes/simclr_smallcnn_1xb256-50e_digits.py``): SmallCNN, each recipe's head and
loss, SGD, batch 256 of two 32x32 views (random pixels: the data does not change the
cost). Each loss is also timed alone (forward + backward on the projections).

The two methods are timed in ONE process, interleaved step by step, in rounds that
alternate "as is" (whatever else runs on the machine) with "hogged" (``--hogs`` extra
processes spinning in a busy loop). The figure of merit is each method's slowdown
(hogged / as-is median) and GroCo's step relative to SimCLR's in each state; the load
average is printed with every round, since the "as is" state is itself rarely idle.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from result_record import record_on_exit  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = {
    "SimCLR": os.path.join(ROOT, "recipes", "simclr_smallcnn_1xb256-50e_digits.py"),
    "GroCo": os.path.join(ROOT, "recipes", "groco_smallcnn_1xb256-50e_digits.py"),
}


def _hog() -> None:  # pragma: no cover - runs in a child process
    while True:
        pass


def _cases(batch: int) -> Dict[str, Callable[[], None]]:
    """Training-step and loss-only closures for both methods, built from the recipes."""
    from mmengine.config import Config

    from rankssl.mm.builder import build_module

    cases: Dict[str, Callable[[], None]] = {}
    generator = torch.Generator().manual_seed(0)
    views = torch.rand(2, batch, 1, 32, 32, generator=generator)
    for method, recipe in RECIPES.items():
        cfg = Config.fromfile(recipe)
        torch.manual_seed(0)
        model = build_module(dict(cfg.model)).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-6)

        def step(model=model, optimizer=optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            model([views], mode="loss")["loss"].backward()
            optimizer.step()

        with torch.no_grad():
            projections = [p.detach() for p in model([views], mode="tensor")]

        def loss_only(model=model, projections=projections) -> None:
            leaves = [p.clone().requires_grad_(True) for p in projections]
            model.compute_loss(leaves, None).backward()

        cases[f"{method} step"] = step
        cases[f"{method} loss"] = loss_only
    return cases


def _round(cases: Dict[str, Callable[[], None]], repeats: int) -> Dict[str, List[float]]:
    times: Dict[str, List[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():  # interleaved: both methods see the same load
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the main job uses all cores: 2)")
    parser.add_argument("--hogs", type=int, default=2, help="busy processes in the hogged rounds")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per state, alternating")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each case per round")
    parser.add_argument("--quick", action="store_true", help="batch 32, 1 round of 2 repeats")
    parser.add_argument("--json", metavar="PATH", help="also write the printed tables as a record for report.py")
    args = parser.parse_args(argv)
    record_on_exit(args.json)
    batch = 32 if args.quick else 256
    if args.quick:
        args.rounds, args.repeats = 1, 2
    torch.set_num_threads(args.threads)
    cases = _cases(batch)
    for fn in cases.values():  # warm-up (and the first-use kernel build)
        fn()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"batch {batch}, {args.hogs} hogs, kernels: RANKSSL_KERNELS={os.environ.get('RANKSSL_KERNELS', 'auto')}")
    samples: Dict[str, Dict[str, List[float]]] = {"as is": {n: [] for n in cases}, "hogged": {n: [] for n in cases}}
    for index in range(2 * args.rounds):
        state = "as is" if index % 2 == 0 else "hogged"
        hogs = []
        if state == "hogged":
            hogs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(args.hogs)]
            for hog in hogs:
                hog.start()
            time.sleep(0.5)
        try:
            times = _round(cases, args.repeats)
        finally:
            for hog in hogs:
                hog.terminate()
            for hog in hogs:
                hog.join()
        for name, values in times.items():
            samples[state][name].extend(values)
        medians = "  ".join(f"{name} {1e3 * statistics.median(v):.1f}" for name, v in times.items())
        print(f"round {index // 2 + 1} {state:6s} load {os.getloadavg()[0]:5.2f}  ms: {medians}", flush=True)

    median = {state: {n: statistics.median(v) for n, v in by.items()} for state, by in samples.items()}
    print("\n| case | as is (ms) | hogged (ms) | slowdown |")
    print("|---|---|---|---|")
    for name in cases:
        quiet, busy = median["as is"][name], median["hogged"][name]
        print(f"| {name} | {1e3 * quiet:.1f} | {1e3 * busy:.1f} | {busy / quiet:.2f}x |")
    for what in ("step", "loss"):
        ratio = {s: median[s][f"GroCo {what}"] / median[s][f"SimCLR {what}"] for s in median}
        print(f"GroCo/SimCLR {what}: as is {ratio['as is']:.2f}x, hogged {ratio['hogged']:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
