"""What the protocol writes: result tables, curves, the claims table, step costs, plans and probe lines.

Everything here reads results (a table's report, the run files under ``--out``); nothing trains.
"""

from __future__ import annotations

import json
import os
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from protocol_claims import claims_table, mean_std
from protocol_spec import DATASETS, TABLES, Size, planned_runs, table_variants, training_variant, view_count


def _pct(values: Sequence[float]) -> str:
    """'mean ± std' in % over seeds; the mean alone for one seed."""
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if len(values) > 1 else f"{100 * mean:.1f}"


def _where(position: str) -> str:
    return {"inside": "inside", "untuned": "one value", "flat edge": "edge, tied with its neighbour"}.get(
        position, f"**{position}**")


def _decay(selection: Dict) -> str:
    """The chosen weight decay, with its grid when the grid was widened beyond the three shared values."""
    return f"{selection['weight_decay']:g}{_widened(selection.get('weight_decay_grid'))}"


def _param(selection: Dict) -> str:
    """The chosen parameter, with its grid when the grid was widened beyond the method's three values."""
    return f"{selection['param_name']}={selection['param']}{_widened(selection.get('param_grid'))}"


def _widened(grid: Optional[Sequence[float]]) -> str:
    """' (of v1, v2, ...)' for a grid that grew past the three values every search starts from, else ''."""
    return f" (of {', '.join(f'{v:g}' for v in grid)})" if grid and len(grid) > 3 else ""


def _search_extent(selection: Dict) -> str:
    """How far the search went: its runs and every learning rate any of them used ('lr grid' is the last bracket)."""
    rates = [trial["lr"] for trial in selection["trials"]]
    return f"{len(rates)} runs, lr {min(rates):g}-{max(rates):g}"


def format_table(report: Dict) -> str:
    """The table's markdown: accuracy, step cost, and the tuning record (grid, winners, edges)."""
    size, seeds = report["size"], tuple(report["size"]["seeds"])  # a tuple, also when read back from JSON
    lines = [f"`{report['dataset']}`, table `{report['table']}`: {size['epochs']} epochs, batch 256 images, seeds "
             f"{seeds}, test split scored only after selection; {report['device']}; {report['date']}", "",
             "| variant | labels | kNN k=20 | kNN k=200 | linear probe | eff. rank | s/step | step vs first row |",
             "|---|---|---|---|---|---|---|---|"]
    first = None
    for name, s in report["variants"].items():
        first = first or s["s_per_step"]
        lines.append(f"| {name} | {'yes' if s['uses_labels'] else 'no'} | {_pct(s['knn20'])} | {_pct(s['knn200'])} | "
                     f"{_pct(s['linear'])} | {statistics.mean(s['erank']):.1f} | {s['s_per_step']:.3f} | "
                     f"{s['s_per_step'] / first:.2f}x |")
    for name, scores in report["baselines"].items():
        lines.append(f"| {name} | no | {100 * scores['knn20']:.1f} | {100 * scores['knn200']:.1f} | "
                     f"{100 * scores['linear']:.1f} | - | - | - |")
    lines += ["", "Selection (validation kNN on 20% of the training split; search: its runs and every rate they used, "
              "lr grid: the last bracket, at the chosen parameter and weight decay; **bold** = winner on an edge of "
              "its grid):",
              "", "| variant | search | lr grid | lr | where | parameter | where | weight decay | where | val kNN |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in report["variants"].items():
        sel = s["selection"]
        grid = ", ".join(f"{lr:g}" for lr in sel["lr_grid"])
        lines.append(f"| {name} | {_search_extent(sel)} | {grid} | {sel['lr']:g} | {_where(sel['lr_position'])} | "
                     f"{_param(sel)} | {_where(sel['param_position'])} | "
                     f"{_decay(sel)} | {_where(sel['weight_decay_position'])} | "
                     f"{100 * sel['val_knn20']:.1f} |")
    edges = [f"{name} ({', '.join(s['selection']['edges'])})" for name, s in report["variants"].items()
             if s["selection"]["edges"]]
    flat = any("flat edge" in (s["selection"]["lr_position"], s["selection"]["param_position"],
                               s["selection"]["weight_decay_position"]) for s in report["variants"].values())
    inside = ("Every winner lies inside its grid or on a flat edge (tied with its neighbour: the score "
              "does not rise past it)." if flat else "Every winner lies inside its grid.")
    lines += ["", f"Winners on an edge of their grid: {'; '.join(edges)}." if edges else inside]
    if report.get("not_run"):
        lines += ["", f"Not run yet (the table was written from finished runs): {', '.join(report['not_run'])}."]
    return "\n".join(lines) + "\n"


def plot_curves(summaries: Dict[str, Dict], path: str, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, s in summaries.items():
        epochs = [e for e, _ in s["curves"][0]]
        accs = np.array([[a for _, a in curve] for curve in s["curves"]]) * 100
        ax.plot(epochs, accs.mean(0), marker="o", label=name)
        if len(accs) > 1:
            ax.fill_between(epochs, accs.min(0), accs.max(0), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test kNN top-1 (k=20, T=0.07), %")
    ax.set_title(f"{dataset}: kNN accuracy against epochs (band: min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_summaries(out: str, dataset: str) -> Dict[str, Dict]:
    """Every row of every table JSON under ``out/dataset`` (a row met in an earlier table is not overridden)."""
    root = os.path.join(out, dataset)
    summaries: Dict[str, Dict] = {}
    for table in TABLES:
        path = os.path.join(root, f"{table}.json")
        if os.path.exists(path):
            with open(path) as handle:
                for name, summary in json.load(handle)["variants"].items():
                    summaries.setdefault(name, summary)
    return summaries


def write_claims(out: str, dataset: str) -> str:
    """claims.md from every table JSON found under ``out/dataset``; its text."""
    text = claims_table(table_summaries(out, dataset), dataset)
    os.makedirs(os.path.join(out, dataset), exist_ok=True)
    with open(os.path.join(out, dataset, "claims.md"), "w") as handle:
        handle.write(text)
    return text


def _finished_runs(out: str, dataset: str) -> Dict[str, Dict[str, List[Dict]]]:
    """variant name -> run purpose ('tune', 'final', 'cost') -> the result of every finished run."""
    runs: Dict[str, Dict[str, List[Dict]]] = {}
    runs_dir = os.path.join(out, dataset, "runs")
    for file in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        if not file.endswith(".json"):  # a run being written is a '.json.tmp' until it is whole
            continue
        with open(os.path.join(runs_dir, file)) as handle:
            result = json.load(handle)
        runs.setdefault(result["spec"]["variant"], {}).setdefault(result["spec"]["purpose"], []).append(result)
    return runs


def _seconds_per_step(out: str, dataset: str) -> Dict[str, Dict[str, List[float]]]:
    """variant name -> run purpose -> the s/step of every finished run."""
    return {name: {purpose: [r["s_per_step"] for r in results] for purpose, results in by_purpose.items()}
            for name, by_purpose in _finished_runs(out, dataset).items()}


def step_costs(out: str, dataset: str) -> str:
    """The s/step of every variant's ``--measure`` run, against SimCLR/paper/2's when it was measured,
    and the tuning budget each variant was given (runs and training hours, read from its run files)."""
    runs = _finished_runs(out, dataset)
    measured = {name: statistics.median(r["s_per_step"] for r in by_purpose["cost"])
                for name, by_purpose in runs.items() if by_purpose.get("cost")}
    reference = measured.get("SimCLR/paper/2")
    lines = [f"`{dataset}`: seconds per training step of 256 images (`--plan --measure` runs: 2 epochs, whole "
             "training split, the recipe's settings; median over the steps)", ""]
    if measured:
        lines += ["| variant | s/step | vs SimCLR/paper/2 |", "|---|---|---|"]
        for name in sorted(measured, key=_variant_order):
            ratio = f"{measured[name] / reference:.2f}x" if reference else "-"
            lines.append(f"| {name} | {measured[name]:.3f} | {ratio} |")
    else:
        lines.append("No `--measure` run yet; the s/step column of each result table is measured in its own runs.")
    lines += ["", f"`{dataset}`: the search each variant was given (finished runs; hours = training time "
              "recorded in the runs, evaluations excluded, under whatever load they ran)", "",
              "| variant | tuning runs | tuning hours | seed runs | seed hours |", "|---|---|---|---|---|"]
    for name in sorted((n for n in runs if runs[n].get("tune")), key=_variant_order):
        tune, final = runs[name]["tune"], runs[name].get("final", [])
        lines.append(f"| {name} | {len(tune)} | {_hours(tune)} | {len(final)} | {_hours(final)} |")
    return "\n".join(lines) + "\n"


def write_step_costs(out: str, dataset: str) -> str:
    """costs.md under ``out/dataset`` (:func:`step_costs`); its text."""
    text = step_costs(out, dataset)
    os.makedirs(os.path.join(out, dataset), exist_ok=True)
    with open(os.path.join(out, dataset, "costs.md"), "w") as handle:
        handle.write(text)
    return text


def _hours(results: Sequence[Dict]) -> str:
    seconds = [r.get("train_seconds") for r in results]
    return f"{sum(seconds) / 3600:.2f}" if seconds and None not in seconds else "-"


def _variant_order(name: str) -> Tuple[str, str, int]:
    return name.split("/")[0], name.split("/")[1], view_count(name)


def plan(table: str, size: Size, methods: Optional[Sequence[str]], out: str, dataset: str,
         views: Optional[Sequence[str]] = None) -> str:
    """The runs a table needs (a lower bound) and their training time, from the s/step of finished runs.

    Seconds per step come from the ``--measure`` runs (whole training split) where they
    exist, else from any finished run of the variant; the estimate counts training
    steps only (not model building or the kNN evaluations), so it is a lower bound too.
    """
    variants = table_variants(table, methods, views)
    measured = _seconds_per_step(out, dataset)
    train_size = DATASETS[dataset].train_size
    if train_size is None:
        return f"no cost estimate: the training-set size of {dataset!r} is not recorded in DATASETS\n"
    steps = {"tune": (train_size - round(0.2 * train_size)) // 256, "final": train_size // 256}
    lines = [f"`{dataset}`, table `{table}`: {size.epochs} epochs, seeds {list(size.seeds)}; runs needed and "
             "training hours, both lower bounds (more runs where the grid widens)", "",
             "| variant | tuning runs >= | seed runs | s/step (measured) | hours >= |", "|---|---|---|---|---|"]
    total_hours = 0.0
    for v in variants:
        runs = planned_runs([v], size)
        name = v.resolved().name
        samples = measured.get(training_variant(v.resolved()).name, {})
        samples = samples.get("cost") or [t for values in samples.values() for t in values]
        if not samples:
            lines.append(f"| {name} | {runs - len(size.seeds)} | {len(size.seeds)} | not measured | ? |")
            continue
        s_step = statistics.median(samples)
        hours = s_step * size.epochs * ((runs - len(size.seeds)) * steps["tune"]
                                        + len(size.seeds) * steps["final"]) / 3600
        total_hours += hours
        lines.append(f"| {name} | {runs - len(size.seeds)} | {len(size.seeds)} | {s_step:.2f} | {hours:.1f} |")
    lines.append(f"| all | {planned_runs(variants, size) - len(variants) * len(size.seeds)} | "
                 f"{len(variants) * len(size.seeds)} | | {total_hours:.1f} |")
    return "\n".join(lines) + "\n"


def format_probe(result: Dict) -> str:
    """One line: the probed configuration's validation kNN, and the search's winner beside it."""
    def settings(config: Dict) -> str:
        return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items()
                         if k != "val_knn20")

    line = f"{result['variant']} probe {settings(result['config'])}: val kNN {100 * result['val_knn20']:.1f}"
    chosen = result["selection"]
    if chosen is None:
        line += "; the search has not finished"
    else:
        line += f"; the search's winner {settings(chosen)}: val kNN {100 * chosen['val_knn20']:.1f}"
    if result.get("test"):
        figures = ", ".join(f"{name} {_pct(result['test'][key])}" for key, name in
                            (("knn20", "kNN k=20"), ("knn200", "kNN k=200"), ("linear", "linear probe")))
        line += f"\n{result['variant']} probe, test split over {len(result['test']['knn20'])} seeds: {figures}"
    return line


# ----------------------------------------------------------------------------- generated blocks
#
# The published figures: each block of RESULTS.md and README.md that the protocol owns, rendered from
# the committed JSON alone (the table JSONs and run files under the folders below), so a re-render is
# byte-identical and a stale block is caught by ``benchmarks/report.py --check``.

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))

# Result folders (``--out``): one budget and one kind of machine each.
FOLDERS = {
    "cpu-20": "protocol",  # 20 epochs on the 2-core CPU
    "cpu-50": "protocol_50_epochs",  # 50 epochs (the recipes' budget) on the CPU
    "cuda-20": "protocol_cuda",  # 20 epochs on a lent H100
    "cuda-50": "protocol_cuda_50_epochs",  # 50 epochs on a lent H100
}

# block name -> (folder key, data set, table): the detailed result tables.
TABLE_BLOCKS: Dict[str, Tuple[str, str, str]] = {
    **{f"protocol-{t.replace('_', '-')}": ("cpu-20", "digits", t) for t in TABLES},
    **{f"protocol-two-digits-{t.replace('_', '-')}": ("cpu-20", "two_digits", t) for t in TABLES},
    "protocol-50-main": ("cpu-50", "digits", "main"),
    "protocol-cuda-main": ("cuda-20", "digits", "main"),
    "protocol-cuda-50-main": ("cuda-50", "digits", "main"),
}
# block name -> (folder key, data set): the claims, from every table of the folder.
CLAIMS_BLOCKS: Dict[str, Tuple[str, str]] = {
    "claims-digits": ("cpu-20", "digits"),
    "claims-protocol-two-digits": ("cpu-20", "two_digits"),
    "claims-protocol-50": ("cpu-50", "digits"),
    "claims-protocol-cuda-50": ("cuda-50", "digits"),
}
# block name -> (folder key, data set): seconds per step and the search budget, from the run files.
COST_BLOCKS: Dict[str, Tuple[str, str]] = {
    "protocol-step-costs": ("cpu-20", "digits"),
    "protocol-two-digits-costs": ("cpu-20", "two_digits"),
}
# block name -> (folder key, data set): the README's one short table per data set (its `main` table).
README_BLOCKS: Dict[str, Tuple[str, str]] = {
    "results-digits": ("cpu-20", "digits"),
    "results-two-digits": ("cpu-20", "two_digits"),
    "results-fashion-mnist": ("cpu-20", "fashion_mnist"),
}
# What each data set is, for the README tables' captions.
DATASET_TEXT = {
    "digits": "scikit-learn's 8x8 digits on a 32x32 canvas (10 classes, 1,437 training and 360 test images)",
    "two_digits": "two-digit numbers built from those digits (100 classes, 3,000 training and 1,000 test "
                  "images)",
    "fashion_mnist": "Fashion-MNIST (10 classes of clothes, 60,000 training and 10,000 test 28x28 images)",
}
_MACHINE = {"cpu": "a 2-core CPU", "cuda": "one GPU"}


def _folder(key: str) -> str:
    return os.path.join(BENCHMARKS, FOLDERS[key])


def _read_table(key: str, dataset: str, table: str) -> Optional[Dict]:
    path = os.path.join(_folder(key), dataset, f"{table}.json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def results_table(report: Optional[Dict], dataset: str, folder: str) -> str:
    """The README's short table of one data set: method, labels, views, kNN, linear probe (mean ± std, %)."""
    command = f"python benchmarks/protocol.py --table main --dataset {dataset} --out benchmarks/{folder}"
    if report is None:
        return (f"`{dataset}`: {DATASET_TEXT[dataset]}. No protocol run of it is committed yet: `{command}` "
                "trains it, tuned and seeded like the other data sets.\n")
    size, seeds = report["size"], report["size"]["seeds"]
    lines = [f"`{dataset}`: {DATASET_TEXT[dataset]}. Budget: {size['epochs']} epochs of batch 256 on "
             f"{_MACHINE.get(report['device'], report['device'])}, each method's learning rate, main parameter "
             "and weight decay tuned on a validation fifth of the training split, then "
             f"{len(seeds)} seeds on the test split. Frozen backbone features: weighted kNN (k=20, T=0.07) and "
             "a linear probe (logistic regression), top-1 in %, mean ± std over the seeds.", "",
             "| method | uses labels | views | kNN | linear probe |", "|---|---|---|---|---|"]
    for s in report["variants"].values():
        lines.append(f"| {s['method']} | {'yes' if s['uses_labels'] else 'no'} | {s['views']} | {_pct(s['knn20'])} "
                     f"| {_pct(s['linear'])} |")
    for name, scores in report["baselines"].items():
        lines.append(f"| {name} (no training) | no | - | {100 * scores['knn20']:.1f} | "
                     f"{100 * scores['linear']:.1f} |")
    if report.get("not_run"):
        lines += ["", f"Not run at this budget: {', '.join(report['not_run'])}."]
    lines += ["", f"Written by `{command}`; every table of the protocol is in `benchmarks/RESULTS.md`."]
    return "\n".join(lines) + "\n"


def generated_blocks() -> Dict[str, str]:
    """Every block the protocol publishes, ``{name: markdown}``, rendered from the committed JSON only.

    Names: the detailed tables (``TABLE_BLOCKS``), the claims (``CLAIMS_BLOCKS``), the step costs
    (``COST_BLOCKS``) for ``benchmarks/RESULTS.md``, and one short table per data set
    (``README_BLOCKS``) for ``README.md``. Each text ends with a newline and holds no date of
    rendering: the same JSON gives the same bytes.
    """
    blocks: Dict[str, str] = {}
    for name, (key, dataset, table) in TABLE_BLOCKS.items():
        report = _read_table(key, dataset, table)
        if report is None:
            raise FileNotFoundError(f"block {name!r}: no {table}.json under {os.path.join(_folder(key), dataset)}")
        blocks[name] = format_table(report)
    for name, (key, dataset) in CLAIMS_BLOCKS.items():
        blocks[name] = claims_table(table_summaries(_folder(key), dataset), dataset)
    for name, (key, dataset) in COST_BLOCKS.items():
        blocks[name] = step_costs(_folder(key), dataset)
    for name, (key, dataset) in README_BLOCKS.items():
        blocks[name] = results_table(_read_table(key, dataset, "main"), dataset, FOLDERS[key])
    return blocks
