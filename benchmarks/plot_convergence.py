"""kNN accuracy against epochs for S2R2, GroCo and SimCLR on the embedded digits.

    python benchmarks/plot_convergence.py

Reads the per-epoch kNN curves that ``benchmarks/quality.py`` recorded (its
``quality.json``: the shipped digits recipes with their swept hyper-parameters, 20
epochs, batch 256, seeds 0-2, kNN every 5 epochs) and the runs of
``benchmarks/quality.py --methods S2R2 --no-sweep --set S2R2.num_bins=640 ... --out
benchmarks/convergence`` (S2R2 with the estimator's default 640 bins, kNN every 2
epochs; the ``scalars.json`` of each run), and draws them on one plot with a table.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
Curve = List[Tuple[int, float]]


def quality_curves(path: str) -> Dict[str, List[Curve]]:
    with open(path) as handle:
        results = json.load(handle)["results"]
    out = {}
    for name in ("S2R2", "GroCo", "SimCLR"):
        r = results[name]
        params = ", ".join(f"{k} {v}" for k, v in r["params"].items())
        label = f"{name} ({r['num_views']} views, lr {r['lr']:g}, {params})"
        out[label] = [[tuple(point) for point in run["curve"]] for run in r["runs"]]
    return out


def run_curves(pattern: str) -> List[Curve]:
    curves = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as handle:
            val = json.load(handle)["val"]
        curves.append([(r["epoch"], r["knn/top1"] / 100) for r in val if "knn/top1" in r])
    return curves


def summary(curves: List[Curve]) -> Dict[int, Tuple[float, float, int]]:
    by_epoch: Dict[int, List[float]] = {}
    for curve in curves:
        for epoch, accuracy in curve:
            by_epoch.setdefault(epoch, []).append(100 * accuracy)
    return {e: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
            for e, v in sorted(by_epoch.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", default=os.path.join(HERE, "quality", "quality.json"))
    parser.add_argument("--runs", default=os.path.join(HERE, "convergence", "runs", "S2R2_*", "scalars.json"))
    parser.add_argument("--out", default=os.path.join(HERE, "convergence"))
    args = parser.parse_args()
    series = quality_curves(args.quality)
    extra = run_curves(args.runs)
    if extra:
        series["S2R2 (4 views, lr 0.45, num_bins 640: the new default)"] = extra
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    lines = ["| method | seeds | " + " | ".join(f"epoch {e}" for e in (2, 4, 5, 6, 8, 10, 15, 20)) + " |",
             "|---|---|" + "---|" * 8]
    for label, curves in series.items():
        stats = summary(curves)
        epochs = list(stats)
        means = [stats[e][0] for e in epochs]
        spreads = [stats[e][1] for e in epochs]
        ax.errorbar(epochs, means, yerr=spreads, marker="o", ms=3, capsize=2, label=label)
        cells = [f"{stats[e][0]:.1f} ± {stats[e][1]:.1f}" if e in stats and stats[e][2] > 1
                 else (f"{stats[e][0]:.1f}" if e in stats else "-") for e in (2, 4, 5, 6, 8, 10, 15, 20)]
        lines.append(f"| {label} | {len(curves)} | " + " | ".join(cells) + " |")
    ax.set_xlabel("epoch (5 iterations of 256 images each)")
    ax.set_ylabel("test kNN top-1 (k=20, T=0.07), %")
    ax.set_title("Embedded digits: kNN accuracy against epochs (mean ± std over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "convergence.png"), dpi=120)
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "convergence.md"), "w") as handle:
        handle.write(table)
    print(table)


if __name__ == "__main__":
    main()
