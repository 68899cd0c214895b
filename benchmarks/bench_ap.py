"""AP losses: rankssl's estimators against pytorch-metric-learning's FastAPLoss and
SmoothAPLoss, forward + backward on the same embeddings and labels; and S2R2 at
B = 256 images x V = 16 views.

    python benchmarks/bench_ap.py            # the AP-losses table of RESULTS.md (CPU: ~10 minutes)
    python benchmarks/bench_ap.py --quick    # toy sizes (used by the test suite)

Every loss is called through pml's interface (``loss(embeddings, labels)``) with the
default mean reducer: rankssl's as ``rankssl.pml.S2R2Loss(estimator=...)``. Labels are
C classes of C items each in contiguous blocks (N = C^2), the one layout pml's
SmoothAPLoss computes correctly. Time: median of forward + backward over rounds in
which all losses take turns, in one process (the machine may be shared). Peak memory: highest resident set size above the level
before the step, sampled during one forward + backward in a fresh subprocess per case
(see ``measure.py``). Ratios are peer / rankssl (higher is better for rankssl).
SmoothAPLoss forms several (N, N, N) float32 tensors; it is measured where that fits
this machine's memory, and elsewhere reported with the lower bound of its peak: one
such tensor, 4 N^3 bytes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import machine_description, peak_memory_in_subprocess, peak_memory_of  # noqa: E402
from result_record import record_on_exit  # noqa: E402

DIM = 128
SIZES = [256, 1024, 4096]
QUICK_SIZES = [36]
#: Largest N at which SmoothAPLoss is run (it needs about 5 x 4 N^3 bytes).
SMOOTH_AP_MAX_N = 512
S2R2_CASE = dict(batch=256, views=16)
QUICK_S2R2_CASE = dict(batch=4, views=4)

IMPLS = {
    "pml_fastap": "pml FastAPLoss (10 bins)",
    "rankssl_fastap": "rankssl fastap (10 bins)",
    "rankssl_binned": "rankssl binned (20 bins)",
    "pml_smoothap": "pml SmoothAPLoss (t=0.01)",
    "rankssl_sigmoid": "rankssl sigmoid (t=0.01)",
}


def make_loss(impl: str):
    from pytorch_metric_learning import losses as pml_losses

    from rankssl.pml import S2R2Loss

    return {
        "pml_fastap": lambda: pml_losses.FastAPLoss(num_bins=10),
        "rankssl_fastap": lambda: S2R2Loss("fastap", num_bins=10),
        "rankssl_binned": lambda: S2R2Loss("binned", num_bins=20),
        "pml_smoothap": lambda: pml_losses.SmoothAPLoss(temperature=0.01),
        "rankssl_sigmoid": lambda: S2R2Loss("sigmoid", temperature=0.01),
    }[impl]()


def make_step(impl: str, n: int, seed: int = 0):
    """Forward + backward of one loss on N = C^2 embeddings of C classes."""
    classes = math.isqrt(n)
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, DIM, generator=generator).requires_grad_(True)
    labels = torch.arange(classes).repeat_interleave(classes)
    loss_fn = make_loss(impl)

    def step():
        embeddings.grad = None
        loss_fn(embeddings, labels).backward()

    return step


def make_s2r2_step(batch: int, views: int, estimator: str = "binned", seed: int = 0):
    from rankssl.losses import S2R2Loss

    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, DIM, generator=generator)
    out = [(base + torch.randn(batch, DIM, generator=generator)).requires_grad_(True) for _ in range(views)]
    # The settings this file's RESULTS.md table was measured with (the estimators' defaults before they moved to unbiased ones).
    loss_fn = S2R2Loss(estimator, **{"binned": dict(num_bins=20), "sigmoid": dict(temperature=0.01)}.get(estimator, {}))

    def step():
        loss_fn(out).backward()

    return step


def interleaved_times(steps: dict, repeats: int) -> dict:
    """Median seconds per step, the steps taking turns in every round so that load
    changes on a shared machine hit all of them alike."""
    for step in steps.values():
        step()  # warm-up
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _runs(impl: str, n: int) -> bool:
    return impl != "pml_smoothap" or n <= SMOOTH_AP_MAX_N


def _peak_mb(case: dict, in_process: bool) -> float:
    if in_process:  # quick mode: same measurement without a subprocess per case
        step = make_s2r2_step(**case["s2r2"], estimator=case["estimator"]) if "s2r2" in case else make_step(**case)
        return peak_memory_of(step) / 2**20
    return peak_memory_in_subprocess(os.path.abspath(__file__), case) / 2**20


def run_sizes(sizes, repeats: int, in_process: bool = False) -> list:
    rows = []
    for n in sizes:
        row = dict(n=n)
        steps = {impl: make_step(impl, n) for impl in IMPLS if _runs(impl, n)}
        for impl, seconds in interleaved_times(steps, repeats).items():
            row[f"{impl}_ms"] = 1e3 * seconds
        for impl in steps:
            row[f"{impl}_mb"] = _peak_mb(dict(impl=impl, n=n), in_process)
        if "pml_smoothap_mb" not in row:
            row["pml_smoothap_bound_mb"] = 4 * n**3 / 2**20
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


HEADER = (
    "| N | FastAP ms | fastap ms | binned ms | FastAP / binned time | FastAP MiB | binned MiB "
    "| SmoothAP ms | sigmoid ms | SmoothAP MiB | sigmoid MiB | SmoothAP / sigmoid memory |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def format_row(r: dict) -> str:
    if "pml_smoothap_mb" in r:
        smooth_ms, smooth_mb = f"{r['pml_smoothap_ms']:.1f}", f"{r['pml_smoothap_mb']:.0f}"
        memory_ratio = f"{r['pml_smoothap_mb'] / max(r['rankssl_sigmoid_mb'], 1e-3):.0f}x"
    else:
        smooth_ms, smooth_mb = "not run", f">= {r['pml_smoothap_bound_mb']:.0f} (bound)"
        memory_ratio = f">= {r['pml_smoothap_bound_mb'] / max(r['rankssl_sigmoid_mb'], 1e-3):.0f}x"
    return (
        f"| {r['n']} | {r['pml_fastap_ms']:.1f} | {r['rankssl_fastap_ms']:.1f} | {r['rankssl_binned_ms']:.1f} | "
        f"{r['pml_fastap_ms'] / r['rankssl_binned_ms']:.1f}x | {r['pml_fastap_mb']:.0f} | "
        f"{r['rankssl_binned_mb']:.0f} | {smooth_ms} | {r['rankssl_sigmoid_ms']:.1f} | {smooth_mb} | "
        f"{r['rankssl_sigmoid_mb']:.0f} | {memory_ratio} |"
    )


def run_s2r2(case: dict, repeats: int, in_process: bool = False) -> None:
    print(f"\n| S2R2Loss, B x V = {case['batch']} x {case['views']} | ms | peak MiB |\n|---|---|---|")
    steps = {estimator: make_s2r2_step(**case, estimator=estimator) for estimator in ("binned", "sigmoid")}
    for estimator, seconds in interleaved_times(steps, repeats).items():
        ms = 1e3 * seconds
        mb = _peak_mb(dict(s2r2=case, estimator=estimator), in_process)
        print(f"| {estimator} | {ms:.0f} | {mb:.0f} |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="toy sizes (used by the test suite)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="N values (default: 256 1024 4096)")
    parser.add_argument("--no-s2r2", action="store_true", help="skip the B=256 x V=16 S2R2 case")
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH", help="also write the printed tables as a record for report.py")
    args = parser.parse_args(argv)
    record_on_exit(args.json)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.set_flush_denormal(True)  # as rankssl.mm does for training: subnormals slow CPUs ~10x
    if args.memory_case:
        case = json.loads(args.memory_case)
        if "s2r2" in case:
            step = make_s2r2_step(**case["s2r2"], estimator=case["estimator"])
        else:
            step = make_step(case["impl"], case["n"])
        print(peak_memory_of(step))
        return
    print(f"# AP losses, forward + backward; {machine_description('cpu')}; {datetime.date.today()}")
    print(HEADER)
    if args.quick:
        run_sizes(QUICK_SIZES, 1, in_process=True)
        run_s2r2(QUICK_S2R2_CASE, 1, in_process=True)
    else:
        run_sizes(args.sizes, args.repeats)
        if not args.no_s2r2:
            run_s2r2(S2R2_CASE, args.repeats)


if __name__ == "__main__":
    main()
