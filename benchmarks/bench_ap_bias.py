"""Bias of every AP estimator against exact AP, against its resolution, and its cost.

    python benchmarks/bench_ap_bias.py              # the tables and plot of RESULTS.md (CPU: ~15 min)
    python benchmarks/bench_ap_bias.py --cost-only  # re-measure the cost, keep the bias rows
    python benchmarks/bench_ap_bias.py --quick      # toy sizes (used by the test suite)

Problems are S2R2's: B images x V views, N = B * V items, every view a query ranking the
other N - 1 views by cosine similarity, the V - 1 other views of its image relevant.
Embeddings: ``normalize(base_b + sigma * noise)`` with a Gaussian ``base_b`` per image,
in two regimes of the score distribution:

``spread``
    dim 32, sigma 1.0: cosine scores with standard deviation ~0.19 and mean AP ~0.77 at
    64 x 8 (the setting in which the former defaults' bias was first measured).
``concentrated``
    dim 128, sigma 1.5: scores squeezed into a standard deviation of ~0.09 (many items
    per bin of a fixed-width histogram), mean AP ~0.8: the harder case for the binned
    estimators and the sigmoid.

Each case estimates AP for ``--queries`` randomly drawn queries (each ranking all N - 1
other items) and reports, over those queries, the mean of ``estimate - exact`` (the
bias), and the Pearson correlation of the per-query estimates with the exact AP
(``rankssl.ops.exact_average_precision``, which equals scikit-learn's
``average_precision_score``). Resolution: ``num_bins`` (binned, fastap), ``1 /
temperature`` (sigmoid), steepness (sorting; ``"auto"`` scales it with N).

Cost: forward + backward of ``S2R2Loss`` over all N queries at the estimator's default,
median time over interleaved rounds and peak memory (resident set above the level
before the step, sampled in a fresh subprocess; ``measure.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import machine_description, peak_memory_in_subprocess, peak_memory_of  # noqa: E402
from result_record import record_on_exit  # noqa: E402

REGIMES = {"spread": dict(dim=32, sigma=1.0), "concentrated": dict(dim=128, sigma=1.5)}

#: Resolution grids: (setting name, values, the value plotted on the x axis).
GRIDS = {
    "binned": ("num_bins", [20, 40, 80, 160, 320, 640, 1280, 2560]),
    "fastap": ("num_bins", [10, 40, 160, 640, 2560]),
    "sigmoid": ("temperature", [0.03, 0.01, 0.005, 0.0025, 0.001, 0.0003]),
    "sorting": ("steepness", [1e2, 1e3, 1e4, 1e5, 1e6]),
}
QUICK_GRIDS = {name: (setting, values[:2]) for name, (setting, values) in GRIDS.items()}

#: (batch, views): N from 256 to 4,096, V from 4 to 16.
CASES = [(64, 4), (32, 8), (16, 16), (256, 4), (128, 8), (64, 16), (1024, 4), (512, 8), (256, 16)]
QUICK_CASES = [(8, 4)]
#: The two sizes of the convergence plot and of the cost table.
PLOT_CASES = [(32, 8), (512, 8)]
QUICK_PLOT_CASES = [(8, 4)]
COST_CASES = [(32, 8), (128, 8)]
QUICK_COST_CASES = [(4, 4)]


def make_problem(batch: int, views: int, regime: str, num_queries: int, seed: int = 0):
    """(scores, relevance, valid), each (num_queries, N): S2R2's ranking problem for a
    random subset of the N = batch * views queries."""
    settings = REGIMES[regime]
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, settings["dim"], generator=generator)
    noise = [torch.randn(batch, settings["dim"], generator=generator) for _ in range(views)]
    x = F.normalize(torch.cat([base + settings["sigma"] * n for n in noise]), dim=1)
    image = torch.arange(batch).repeat(views)
    n = batch * views
    queries = torch.randperm(n, generator=generator)[: min(num_queries, n)]
    valid = torch.ones(len(queries), n, dtype=torch.bool)
    valid[torch.arange(len(queries)), queries] = False
    relevance = (image[queries][:, None] == image[None, :]) & valid
    return x[queries] @ x.T, relevance, valid


def bias_and_correlation(estimate: torch.Tensor, exact: torch.Tensor) -> Tuple[float, float]:
    bias = float((estimate - exact).mean())
    if float(exact.std()) < 1e-9 or float(estimate.std()) < 1e-9:
        return bias, float("nan")
    return bias, float(torch.corrcoef(torch.stack((estimate, exact)))[0, 1])


def measure_bias(cases, grids, regimes, num_queries: int, log) -> List[dict]:
    from rankssl.ops import average_precision, exact_average_precision

    rows = []
    for batch, views in cases:
        for regime in regimes:
            scores, relevance, valid = make_problem(batch, views, regime, num_queries)
            exact = exact_average_precision(scores, relevance, valid)
            settings_list = [(name, {setting: value}) for name, (setting, values) in grids.items() for value in values]
            settings_list += [(name, {}) for name in grids]  # the defaults
            for estimator, settings in settings_list:
                with torch.no_grad():
                    estimate = average_precision(scores, relevance, valid, estimator, **settings)
                bias, corr = bias_and_correlation(estimate, exact)
                row = dict(batch=batch, views=views, n=batch * views, regime=regime, estimator=estimator,
                           setting=next(iter(settings), "default"), value=next(iter(settings.values()), None),
                           exact=float(exact.mean()), bias=bias, corr=corr)
                rows.append(row)
            log(f"  {batch} x {views} {regime}: exact AP {float(exact.mean()):.3f}; defaults: " + ", ".join(
                f"{r['estimator']} {r['bias']:+.4f}" for r in rows[-len(grids):]))
    return rows


def make_step(batch: int, views: int, estimator: str, seed: int = 0):
    """Forward + backward of S2R2Loss at the estimator's default (all N queries)."""
    from rankssl.losses import S2R2Loss

    settings = REGIMES["spread"]
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, settings["dim"], generator=generator)
    out = [(base + torch.randn(batch, settings["dim"], generator=generator)).requires_grad_(True)
           for _ in range(views)]
    loss_fn = S2R2Loss(estimator)

    def step():
        for o in out:
            o.grad = None
        loss_fn(out).backward()

    return step


def measure_cost(cases, estimators: Sequence[str], repeats: int, in_process: bool, log) -> List[dict]:
    from bench_ap import interleaved_times

    rows = []
    for batch, views in cases:
        steps = {name: make_step(batch, views, name) for name in estimators}
        times = interleaved_times(steps, repeats)
        for name in estimators:
            case = dict(batch=batch, views=views, estimator=name)
            if in_process:
                peak = peak_memory_of(steps[name])
            else:
                peak = peak_memory_in_subprocess(os.path.abspath(__file__), case)
            rows.append(dict(case, n=batch * views, ms=1e3 * times[name], mib=peak / 2**20))
            log(f"  cost {batch} x {views} {name}: {1e3 * times[name]:.0f} ms, {peak / 2**20:.0f} MiB")
    return rows


def default_settings() -> Dict[str, dict]:
    from rankssl.ops import AP_ESTIMATORS

    return {name: dict(settings) for name, settings in AP_ESTIMATORS.items()}


def format_defaults_table(rows: List[dict], estimators: Sequence[str]) -> str:
    defaults = default_settings()
    header = "| N | B x V | regime | exact AP | " + " | ".join(
        f"{name} bias (corr)" for name in estimators) + " |"
    lines = [
        "Defaults: " + "; ".join(
            f"{name}: " + ", ".join(f"{k}={v}" for k, v in defaults[name].items()
                                   if k in ("num_bins", "temperature", "steepness", "distribution"))
            for name in estimators),
        "",
        header,
        "|" + "---|" * (4 + len(estimators)),
    ]
    keys = sorted({(r["n"], r["batch"], r["views"], r["regime"]) for r in rows}, key=lambda k: (k[0], k[2], k[3]))
    worst = {name: 0.0 for name in estimators}
    for n, batch, views, regime in keys:
        cells, exact = [], None
        for name in estimators:
            r = next(r for r in rows if (r["n"], r["batch"], r["views"], r["regime"], r["estimator"], r["setting"])
                     == (n, batch, views, regime, name, "default"))
            exact = r["exact"]
            worst[name] = max(worst[name], abs(r["bias"]))
            cells.append(f"{r['bias']:+.4f} ({r['corr']:.3f})")
        lines.append(f"| {n} | {batch} x {views} | {regime} | {exact:.3f} | " + " | ".join(cells) + " |")
    lines.append("| worst abs bias | | | | " + " | ".join(f"{worst[name]:.4f}" for name in estimators) + " |")
    return "\n".join(lines) + "\n"


def format_resolution_table(rows: List[dict], grids, cases) -> str:
    lines = []
    for estimator, (setting, values) in grids.items():
        lines += ["", f"{estimator}: bias against exact AP by {setting} (spread / concentrated)", "",
                  f"| {setting} | " + " | ".join(f"N={b * v} ({b}x{v})" for b, v in cases) + " |",
                  "|" + "---|" * (1 + len(cases))]
        for value in values:
            cells = []
            for batch, views in cases:
                pair = [next(r["bias"] for r in rows if (r["batch"], r["views"], r["regime"], r["estimator"],
                                                         r["value"]) == (batch, views, regime, estimator, value))
                        for regime in REGIMES]
                cells.append(" / ".join(f"{b:+.4f}" for b in pair))
            lines.append(f"| {value:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_cost_table(rows: List[dict]) -> str:
    lines = ["| S2R2Loss forward + backward, default settings | N | ms | peak MiB |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['estimator']} ({r['batch']} x {r['views']}) | {r['n']} | {r['ms']:.0f} | {r['mib']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows: List[dict], cost: List[dict], grids, cases, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    defaults = default_settings()
    panels = len(grids) + (1 if cost else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8))
    for ax, (estimator, (setting, values)) in zip(axes, grids.items()):
        x = [1 / v if setting == "temperature" else v for v in values]
        for (batch, views), colour in zip(cases, ("tab:blue", "tab:red", "tab:green")):
            for regime, style in zip(REGIMES, ("-", "--")):
                y = [next(r["bias"] for r in rows if (r["batch"], r["views"], r["regime"], r["estimator"], r["value"])
                          == (batch, views, regime, estimator, v)) for v in values]
                ax.plot(x, y, style, color=colour, marker="o", ms=3, label=f"N={batch * views} {regime}")
        ax.axhspan(-0.01, 0.01, color="grey", alpha=0.2, lw=0)
        default = defaults[estimator].get(setting)
        if isinstance(default, (int, float)):
            ax.axvline(1 / default if setting == "temperature" else default, color="k", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xlabel("1 / temperature" if setting == "temperature" else setting)
        ax.set_title(estimator)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean(estimate - exact AP)")
    axes[0].legend(fontsize=7)
    if not cost:
        fig.suptitle("AP estimators: bias against resolution (grey: +-0.01, dotted: default)", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return
    ax = axes[-1]
    names = list(grids)
    for i, (batch, views) in enumerate(sorted({(r["batch"], r["views"]) for r in cost}, key=lambda c: c[0] * c[1])):
        ms = [next(r["ms"] for r in cost if (r["batch"], r["views"], r["estimator"]) == (batch, views, name))
              for name in names]
        mib = [next(r["mib"] for r in cost if (r["batch"], r["views"], r["estimator"]) == (batch, views, name))
               for name in names]
        positions = [j + 0.4 * i for j in range(len(names))]
        bars = ax.bar(positions, ms, width=0.38, label=f"N={batch * views} ({batch}x{views})")
        for bar, m in zip(bars, mib):
            ax.annotate(f"{m:.0f} MiB", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_xticks([j + 0.2 for j in range(len(names))], names)
    ax.set_yscale("log")
    ax.set_ylabel("forward + backward, ms (label: peak MiB)")
    ax.set_title("cost at the default")
    ax.legend(fontsize=7)
    fig.suptitle("AP estimators: bias against resolution (grey: +-0.01, dotted: default)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="toy sizes (used by the test suite)")
    parser.add_argument("--queries", type=int, default=128, help="queries drawn per case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--estimators", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--defaults-only", action="store_true", help="skip the resolution grids and the plot")
    parser.add_argument("--no-cost", action="store_true")
    parser.add_argument("--cost-only", action="store_true",
                        help="re-measure the cost only; reuse the bias rows of --out/ap_bias.json")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine two spinning threads "
                             "inflate small steps many times over)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ap_bias"))
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH", help="also write the printed tables as a record for report.py")
    args = parser.parse_args(argv)
    record_on_exit(args.json)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    warnings.filterwarnings("ignore", message="The 'fastap' estimator")  # it is measured on purpose
    if args.memory_case:
        case = json.loads(args.memory_case)
        print(peak_memory_of(make_step(case["batch"], case["views"], case["estimator"])))
        return
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    grids = QUICK_GRIDS if args.quick else GRIDS
    grids = {name: grids[name] for name in args.estimators}
    cases = QUICK_CASES if args.quick else CASES
    plot_cases = QUICK_PLOT_CASES if args.quick else PLOT_CASES
    os.makedirs(args.out, exist_ok=True)
    log(f"# AP estimator bias; {machine_description('cpu')}; {datetime.date.today()}")
    previous = {}
    if args.cost_only:
        with open(os.path.join(args.out, "ap_bias.json")) as handle:
            previous = json.load(handle)
        defaults_rows = previous["defaults"]
    else:
        defaults_rows = measure_bias(cases, {name: (s, []) for name, (s, _) in grids.items()}, list(REGIMES),
                                     args.queries, log)
    report = format_defaults_table(defaults_rows, list(grids))
    results = dict(defaults=defaults_rows)
    if not args.defaults_only:
        if "grid" in previous:
            grid_rows = previous["grid"]
        else:
            grid_rows = measure_bias(plot_cases, grids, list(REGIMES), args.queries, log)
        results["grid"] = grid_rows
        report += format_resolution_table(grid_rows, grids, plot_cases)
        cost = []
        if not args.no_cost:
            cost = measure_cost(QUICK_COST_CASES if args.quick else COST_CASES, list(grids),
                                1 if args.quick else args.repeats, args.quick, log)
            results["cost"] = cost
            report += "\n" + format_cost_table(cost)
        plot(grid_rows, cost, grids, plot_cases, os.path.join(args.out, "ap_bias.png"))
    with open(os.path.join(args.out, "ap_bias.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    with open(os.path.join(args.out, "ap_bias.md"), "w") as handle:
        handle.write(report)
    print(report)


if __name__ == "__main__":
    main()
