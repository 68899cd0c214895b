"""The main job's published figures, tied to the code: ``rankssl demo --write-results``.

Repository tooling, not part of the installed package: ``rankssl demo --write-results``
loads this file from the source checkout it writes into (:func:`rankssl.demo.load_results_tool`).

A run records its numbers in ``benchmarks/demo_results.json`` (kNN accuracies, wall
time, command, machine, date, software) and rewrites the lines between the markers
``<!-- demo-results:start -->`` and ``<!-- demo-results:end -->`` in ``README.md`` and
``benchmarks/RESULTS.md`` from that record. ``tests/test_readme.py`` checks that both
files show what the record holds, so the published figures cannot drift from the code.

Wall times vary with the machine's load; the record keeps every recorded run's time
(``wall_time_history``) and the README shows their range.

Example:
    >>> record = {"epochs": 50, "methods": [{"method": "GroCo", "knn_top1": 76.4, "seconds": 250.0},
    ...           {"method": "SimCLR (lightly NTXentLoss)", "knn_top1": 61.7, "seconds": 260.0}],
    ...           "baselines": {"raw pixels": 41.1, "random init": 35.6}, "wall_time_s": 515.0,
    ...           "wall_time_history": [{"date": "2026-11-24", "seconds": 515.0}],
    ...           "date": "2026-11-24", "machine": "2-core x86_64 CPU, no GPU",
    ...           "command": "rankssl demo --write-results"}
    >>> "GroCo **76.4%**" in render_readme(record)
    True
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import re
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional, Sequence

__all__ = ["RESULTS_FILE", "make_record", "write", "render_readme", "render_results_md",
           "read_between_markers", "machine_description", "generated_blocks", "blocks_for"]

RESULTS_FILE = os.path.join("benchmarks", "demo_results.json")
START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"
BUSY_LOAD = 2.5  # 1-minute load average on 2 cores above which a run's wall time counts as "busy"


def machine_description() -> str:
    """E.g. ``'2-core x86_64 CPU, no GPU'``."""
    import torch

    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core {platform.machine()} CPU, {gpu}"


def make_record(rows: Sequence[tuple], baselines: Dict[str, float], wall_time_s: float,
                argv: Optional[Sequence[str]] = None, load_average: Optional[float] = None,
                load_average_at_end: Optional[float] = None) -> dict:
    """The record of one demo run. ``rows``: (method, kNN %, seconds, epochs) per trained method.

    ``load_average``, ``load_average_at_end``: the machine's 1-minute load average when
    the run started and when it ended (wall times grow with it; work started during the
    run shows only at the end).
    """
    import torch

    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    machine = machine_description()
    history: List[dict] = [{"date": today, "seconds": round(wall_time_s, 1), "machine": machine,
                            "load_average_at_start": _rounded(load_average),
                            "load_average_at_end": _rounded(load_average_at_end)}]
    command = "rankssl " + " ".join(list(argv or [])[1:]) if argv else "rankssl demo --write-results"
    return {
        "command": command.strip(),
        "date": today,
        "machine": machine,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "epochs": int(rows[0][3]),
        "methods": [{"method": m, "knn_top1": round(float(k), 1), "seconds": round(float(s), 1)}
                    for m, k, s, _ in rows],
        "baselines": {name: round(float(v), 1) for name, v in baselines.items()},
        "wall_time_s": round(wall_time_s, 1),
        "load_average_at_start": _rounded(load_average),
        "load_average_at_end": _rounded(load_average_at_end),
        "wall_time_history": history,
    }


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 1)


def _peak_load(entry: dict) -> float:
    """The higher of a run's recorded start and end load averages (0 where unknown)."""
    return max(entry.get("load_average_at_start") or 0.0, entry.get("load_average_at_end") or 0.0)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s"


def _method(record: dict, prefix: str) -> dict:
    return next(m for m in record["methods"] if m["method"].startswith(prefix))


def render_readme(record: dict) -> str:
    """The README's main-job paragraph (between the markers)."""
    groco, simclr = _method(record, "GroCo"), _method(record, "SimCLR")
    history = record["wall_time_history"] or [{"date": record["date"], "seconds": record["wall_time_s"]}]
    quiet = [h["seconds"] for h in history if _peak_load(h) < BUSY_LOAD]
    busy = [h for h in history if _peak_load(h) >= BUSY_LOAD]
    timing = f"Wall time {_span(quiet)} on a quiet {record['machine']}" if quiet else "Wall time"
    if busy:
        slowest = max(busy, key=lambda h: h["seconds"])
        timing += (f"{';' if quiet else ''} {_duration(slowest['seconds'])} while other work kept the cores busy "
                   f"(load {_peak_load(slowest)})")
    dates = sorted({h["date"] for h in history})
    return (
        f"**Main job** (`make demo` = `rankssl demo`): kNN top-1 on the embedded digits after "
        f"{record['epochs']} epochs: GroCo **{groco['knn_top1']:.1f}%**, SimCLR (lightly `NTXentLoss`) "
        f"{simclr['knn_top1']:.1f}%, raw pixels {record['baselines']['raw pixels']:.1f}%, random init "
        f"{record['baselines']['random init']:.1f}%. {timing} ({len(history)} recorded "
        f"run{'s' if len(history) > 1 else ''}, {', '.join(dates)}). Recorded by `{record['command']}` on "
        f"{record['date']} in [benchmarks/demo_results.json](benchmarks/demo_results.json)."
    )


def _span(seconds: Sequence[float]) -> str:
    low, high = min(seconds), max(seconds)
    return _duration(low) if low == high else f"{_duration(low)} to {_duration(high)}"


def render_results_md(record: dict) -> str:
    """The RESULTS.md main-job table and timing line (between the markers)."""
    lines = ["| method | kNN top-1 (%) | train + eval time (s) |", "|---|---|---|"]
    for m in record["methods"]:
        lines.append(f"| {m['method']} | {m['knn_top1']:.1f} | {m['seconds']:.0f} |")
    lines.append(f"| raw pixels (no training) | {record['baselines']['raw pixels']:.1f} | - |")
    lines.append(f"| random-init SmallCNN (no training) | {record['baselines']['random init']:.1f} | - |")
    times = ", ".join(f"{_duration(h['seconds'])} ({h['date']}" + _loads(h) + ")" for h in record["wall_time_history"])
    lines.append("")
    lines.append(f"`{record['command']}` on {record['date']}, {record['machine']}, Python {record['python']}, "
                 f"torch {record['torch']} ({record['torch_threads']} threads): whole command "
                 f"{_duration(record['wall_time_s'])}. Recorded wall times of the whole command (with the "
                 f"machine's 1-minute load average at the start and end, where known; 2 = both cores busy): "
                 f"{times}.")
    return "\n".join(lines)


def _loads(entry: dict) -> str:
    start, end = entry.get("load_average_at_start"), entry.get("load_average_at_end")
    if start is None and end is None:
        return ""
    if end is None:
        return f", load {start}"
    return f", load {start if start is not None else '?'} to {end}"


def read_between_markers(text: str) -> str:
    """The text between the demo-results markers (stripped); ``ValueError`` if they are missing."""
    match = re.search(re.escape(START) + r"\n(.*?)\n" + re.escape(END), text, flags=re.S)
    if match is None:
        raise ValueError(f"no {START} ... {END} block found.")
    return match.group(1).strip()


def _report_tool() -> ModuleType:
    """``benchmarks/report.py`` beside this file, which writes every generated block, imported from
    its path (this file itself is loaded by path from the checkout, not from ``sys.path``)."""
    spec = importlib.util.spec_from_file_location(
        "rankssl_checkout_report", os.path.join(os.path.dirname(os.path.abspath(__file__)), "report.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(checkout: str, record: dict) -> List[str]:
    """Write the record and rewrite the main job's block in README.md and RESULTS.md (with
    ``benchmarks/report.py``); returns the paths written. ``ValueError`` before writing
    anything if a file lacks the block's markers."""
    report = _report_tool()
    paths = [os.path.join(checkout, name) for name in report.FILES]
    for path in paths:
        with open(path) as f:
            read_between_markers(f.read())
    results_path = os.path.join(checkout, RESULTS_FILE)
    if os.path.isfile(results_path):
        with open(results_path) as f:
            previous = json.load(f)
        known = {(h["date"], h["seconds"]) for h in record["wall_time_history"]}
        older = [h for h in previous.get("wall_time_history", [])
                 if h.get("machine") == record["machine"] and (h["date"], h["seconds"]) not in known]
        record = dict(record, wall_time_history=older + record["wall_time_history"])
    with open(results_path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    report.write(Path(checkout), blocks=blocks_for(record))
    return [results_path, *paths]


def blocks_for(record: dict) -> dict:
    """The main job's block, named as ``benchmarks/report.py`` names it: a sentence in the
    README, a table in RESULTS.md."""
    return {"demo-results": {"README.md": render_readme(record), "benchmarks/RESULTS.md": render_results_md(record)}}


def generated_blocks(checkout: str = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) -> dict:
    """The main job's block for ``benchmarks/report.py``, rendered from the committed
    ``benchmarks/demo_results.json`` only (nothing is run)."""
    with open(os.path.join(checkout, RESULTS_FILE)) as f:
        return blocks_for(json.load(f))
