"""Generated blocks of ``benchmarks/RESULTS.md`` from the records in ``benchmarks/results/*.json``.

Each record file renders one block, named by its file stem: its tables (title line, then the
markdown table), then one provenance line with the command, the machine and the date. The record
format is :mod:`result_record`'s; ``python benchmarks/report.py`` places the blocks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def render_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; ``rows`` of shape (R, len(columns)), each cell printed with ``str``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row {list(row)} has {len(row)} cells for {len(columns)} columns")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def render_record(record: Mapping[str, Any]) -> str:
    """Markdown of one record: its tables, then ``Command: ...; machine: ...; date: ...``."""
    parts: list[str] = []
    for table in record["tables"]:
        if table.get("title"):
            parts.append(str(table["title"]))
        parts.append(render_table(table["columns"], table["rows"]))
        if table.get("note"):
            parts.append(str(table["note"]))
    parts.append(f"Command: `{record['command']}`; machine: {record['machine']}; date: {record['date']}.")
    return "\n\n".join(parts)


def load_records(directory: Path = RESULTS_DIR) -> dict[str, dict]:
    """Every record of ``directory`` by block name (the file stem), sorted by name."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.json"))}


def generated_blocks() -> dict[str, str]:
    """``{block name: markdown}`` for every record in ``benchmarks/results/``."""
    return {name: render_record(record) for name, record in load_records().items()}
