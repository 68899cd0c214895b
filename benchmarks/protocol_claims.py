"""The papers' claims as a table, written from the protocol's results (never from hand-typed numbers).

``summaries`` maps a variant name ``"METHOD/HEAD/VIEWS"`` (e.g. ``"GroCo/paper/2"``,
``"GroCo/paper/2+4"``, ``"S2R2/common/8"``) to its summary as ``protocol.py`` writes it:

    {"knn20": [per-seed test kNN accuracy in 0..1], "curves": [[[epoch, acc], ...] per seed],
     "erank": [per-seed effective rank], "s_per_step": float, ...}

A comparison "a over b" holds ("yes") when mean(a) - mean(b) exceeds the noise
sqrt(std(a)^2 + std(b)^2) over seeds, fails ("no") when it is below minus the noise,
and is "within noise" otherwise; an "at least as good" claim holds when the gap is
above minus the noise. With one seed the noise is unknown and the verdict says so.
"""

from __future__ import annotations

import math
import statistics
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["CLAIMS", "claims_table", "mean_std", "verdict"]

Summaries = Dict[str, dict]


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation of ``values`` (0.0 for one value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def verdict(a: Sequence[float], b: Sequence[float], at_least: bool = False) -> str:
    """'yes' / 'no' / 'within noise' for "a beats b" (or "a is at least as good as b")."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    noise, gap = math.hypot(std_a, std_b), mean_a - mean_b
    one_seed = " (1 seed: noise unknown)" if min(len(a), len(b)) < 2 else ""
    if at_least:
        return ("yes" if gap >= -noise else "no") + one_seed
    if gap > noise:
        return "yes" + one_seed
    if gap < -noise:
        return "no" + one_seed
    return "within noise" + one_seed


def _pct(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def _curve_auc(curve: Sequence[Sequence[float]]) -> float:
    """Mean accuracy over the evaluated epochs: higher = faster convergence at the same final budget."""
    return statistics.mean(acc for _, acc in curve)


def _finished(summaries: Summaries, names: Sequence[str]) -> List[str]:
    """The rows among ``names`` that have test scores, in the given order."""
    return [n for n in names if n in summaries and summaries[n].get("knn20")]


def _missing(summaries: Summaries, names: Sequence[str]) -> Optional[str]:
    finished = _finished(summaries, names)
    absent = [n for n in names if n not in finished]
    return f"not run yet: {', '.join(absent)}" if absent else None


def _compare(a: str, b: str, at_least: bool = False, metric: str = "knn20"):
    def figure(summaries: Summaries) -> Tuple[str, str]:
        missing = _missing(summaries, (a, b))
        if missing:
            return missing, "-"
        va, vb = summaries[a][metric], summaries[b][metric]
        fmt = _pct if metric == "knn20" else (lambda v: f"{mean_std(v)[0]:.1f} ± {mean_std(v)[1]:.1f}")
        return f"{a}: {fmt(va)} vs {b}: {fmt(vb)} ({metric})", verdict(va, vb, at_least)
    return figure


def _convergence(a: str, b: str):
    def figure(summaries: Summaries) -> Tuple[str, str]:
        missing = _missing(summaries, (a, b))
        if missing:
            return missing, "-"
        auc_a = [_curve_auc(c) for c in summaries[a]["curves"]]
        auc_b = [_curve_auc(c) for c in summaries[b]["curves"]]
        first_epoch = summaries[a]["curves"][0][0][0]
        first_a = [c[0][1] for c in summaries[a]["curves"]]
        first_b = [c[0][1] for c in summaries[b]["curves"]]
        return (f"mean test kNN over the curve {_pct(auc_a)} vs {_pct(auc_b)}; at epoch {first_epoch:g}: "
                f"{_pct(first_a)} vs {_pct(first_b)}", verdict(auc_a, auc_b))
    return figure


def _grows_with_views(names: Sequence[str], least: int = 3):
    """Accuracy grows (beyond the noise) from each view count to the next.

    'partly' names the steps that stay within noise; 'no' when one step drops.

    Judged on the view counts that were run once at least ``least`` of them were; the
    figure names the counts that were not (the largest are the most expensive).
    """
    def figure(summaries: Summaries) -> Tuple[str, str]:
        present = _finished(summaries, names)
        if len(present) < least:
            return _missing(summaries, names), "-"
        values = [summaries[n]["knn20"] for n in present]
        counts = [n.rsplit("/", 1)[1] for n in present]
        steps = [verdict(values[i + 1], values[i]) for i in range(len(values) - 1)]
        text = " -> ".join(f"{c} views {_pct(v)}" for c, v in zip(counts, values))
        absent = [n.rsplit("/", 1)[1] for n in names if n not in present]
        if absent:
            text += f" ({', '.join(absent)} views not run)"
        if any(s.startswith("no") for s in steps):
            return text, "no (drops between two view counts)"
        if all(s.startswith("yes") for s in steps):
            return text, "yes"
        return text, "partly: " + ", ".join(f"{a} -> {b} {'grows' if s.startswith('yes') else 'within noise'}"
                                           for a, b, s in zip(counts, counts[1:], steps))
    return figure


def _not_measured(how: str):
    return lambda summaries: (f"not measured by the protocol ({how})", "-")


# (claim, source, figure function). The figure function returns (figure text, holds here?).
CLAIMS: List[Tuple[str, str, Callable[[Summaries], Tuple[str, str]]]] = [
    ("GroCo is at least as good as SimCLR at equal budget (2 views, paper heads)", "GroCo",
     _compare("GroCo/paper/2", "SimCLR/paper/2", at_least=True)),
    ("... the same with one common head", "GroCo",
     _compare("GroCo/common/2", "SimCLR/common/2", at_least=True)),
    ("... the same at equal views (4 views each)", "GroCo",
     _compare("GroCo/paper/4", "SimCLR/paper/4", at_least=True)),
    ("GroCo gains from multi-crop (2 global + 4 small views over 2 views; paper: 2x224 + 6x96)", "GroCo",
     _compare("GroCo/paper/2+4", "GroCo/paper/2")),
    ("S2R2 at its recipe's 4 views beats SimCLR at 2 (same images and epochs; S2R2's step costs more: "
     "see s/step)", "S2R2", _compare("S2R2/paper/4", "SimCLR/paper/2")),
    ("S2R2 (4 views) converges faster than SimCLR (2 views) in epochs (curves)", "S2R2",
     _convergence("S2R2/paper/4", "SimCLR/paper/2")),
    ("S2R2 beats SimCLR at equal views (2 views each)", "S2R2",
     _compare("S2R2/paper/2", "SimCLR/paper/2")),
    ("S2R2 beats SimCLR at equal views (4 views each)", "S2R2",
     _compare("S2R2/paper/4", "SimCLR/paper/4")),
    ("S2R2 converges faster than SimCLR in epochs (2 views each; curves)", "S2R2",
     _convergence("S2R2/paper/2", "SimCLR/paper/2")),
    ("S2R2 converges faster than SimCLR in epochs (4 views each; curves)", "S2R2",
     _convergence("S2R2/paper/4", "SimCLR/paper/4")),
    ("S2R2's gain grows with the number of views (256 images per batch)", "S2R2",
     _grows_with_views(["S2R2/paper/2", "S2R2/paper/4", "S2R2/paper/8", "S2R2/paper/16"])),
    ("Hydra beats SimCLR (Hydra uses labels)", "Hydra",
     _compare("Hydra/paper/2", "SimCLR/paper/2")),
    ("Hydra's representation is at least as good as its label-based peer SupCon's", "Hydra",
     _compare("Hydra/paper/2", "SupCon/paper/2", at_least=True)),
    ("Hydra prevents dimensional collapse (effective rank above its label-based peer SupCon)", "Hydra",
     _compare("Hydra/paper/2", "SupCon/paper/2", metric="erank")),
    ("Hydra discovers class relationships", "Hydra",
     _not_measured("`rankssl analyze` reports the gate overlap of class pairs of a trained Hydra checkpoint")),
]


def claims_table(summaries: Summaries, dataset: str) -> str:
    """Markdown table: claim, paper, figure here, holds here?"""
    lines = [f"Claims on `{dataset}` (test kNN k=20 T=0.07, mean ± std over seeds; verdict rule in "
             "`benchmarks/protocol_claims.py`)", "",
             "| claim | paper | figure here | holds here? |", "|---|---|---|---|"]
    for claim, source, figure in CLAIMS:
        text, holds = figure(summaries)
        lines.append(f"| {claim} | {source} | {text} | {holds} |")
    return "\n".join(lines) + "\n"
