"""Result records: the markdown tables a benchmark prints, kept as JSON with their provenance.

A record (one JSON file in ``benchmarks/results/``, whose stem names the generated block that
``result_tables.py`` renders from it) is::

    {"command": "python benchmarks/speed.py", "machine": "...", "date": "2026-11-23",
     "tables": [{"title": "..." or null, "columns": ["loss", ...], "rows": [["GroCoLoss", ...], ...]}]}

Cells are the strings the benchmark printed (units and rounding are the script's). A benchmark
writes its record with ``--json PATH``: :func:`record_on_exit` tees its standard output, and on
a normal exit :func:`parse_tables` reads the tables back out of what it printed.
"""

from __future__ import annotations

import atexit
import datetime
import io
import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Environment variables that change what a benchmark measures; named in the command when set.
MEASURED_ENVIRONMENT = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "RANKSSL_KERNELS", "RANKSSL_DISABLE_FUSED",
                        "TRITON_INTERPRET", "RANKSSL_VALIDATE")

REQUIRED_KEYS = ("command", "machine", "date", "tables")


def split_row(line: str) -> list[str]:
    """Cells of one markdown table row ``| a | b |`` -> ``["a", "b"]``."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_tables(text: str) -> list[dict[str, Any]]:
    """Every markdown table in ``text``, in order, as ``{"title", "columns", "rows"}``.

    A table is a header row, a ``|---|`` separator and its rows. Its title is the line just above
    it when that line is a ``#`` heading, or a standalone line (blank lines around it) at most one
    blank line above the header; otherwise ``None``.
    """
    lines = text.splitlines()
    tables: list[dict[str, Any]] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if not (line.startswith("|") and following.startswith("|") and set(following) <= set("|-: ")):
            index += 1
            continue
        title = _title_above(lines, index)
        columns = split_row(line)
        rows = []
        index += 2
        while index < len(lines) and lines[index].strip().startswith("|"):
            rows.append(split_row(lines[index]))
            index += 1
        tables.append({"title": title, "columns": columns, "rows": rows})
    return tables


def _title_above(lines: Sequence[str], header: int) -> str | None:
    above = header - 1
    if above >= 0 and lines[above].strip().startswith("#"):
        return lines[above].strip().lstrip("#").strip()
    if above >= 0 and not lines[above].strip():
        above -= 1
    if above < 0 or not lines[above].strip() or lines[above].strip().startswith("|"):
        return None
    if above > 0 and lines[above - 1].strip():
        return None
    return lines[above].strip().lstrip("#").strip()


def machine_description() -> str:
    """This machine in words: CPU and core count, GPU if torch sees one, Python and torch versions."""
    parts = [f"{platform.machine()} CPU, {os.cpu_count()} cores"]
    try:
        import torch

        if torch.cuda.is_available():
            parts.append(torch.cuda.get_device_name(0))
        parts.append(f"torch {torch.__version__}")
    except ImportError:  # pragma: no cover - every benchmark imports torch
        pass
    parts.append(f"Python {platform.python_version()}")
    return ", ".join(parts)


def command_line(argv: Sequence[str] | None = None, script: str | None = None) -> str:
    """The command that produced a record: measured environment variables, the script, its arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    script = script or sys.argv[0]
    try:
        script = os.path.relpath(script, Path(__file__).resolve().parent.parent)
    except ValueError:  # another drive on Windows
        pass
    environment = [f"{name}={os.environ[name]}" for name in MEASURED_ENVIRONMENT if name in os.environ]
    return " ".join(environment + ["python", shlex.quote(script)] + [shlex.quote(arg) for arg in argv])


def make_record(text: str, command: str, machine: str | None = None, date: str | None = None) -> dict[str, Any]:
    """The record of one benchmark run whose printed output is ``text``."""
    return {
        "command": command,
        "machine": machine or machine_description(),
        "date": date or datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "tables": parse_tables(text),
    }


def write_record(path: str, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` (:func:`dumps_record`'s layout), after checking its keys."""
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise ValueError(f"record for {path} lacks {missing}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(dumps_record(record))


def dumps_record(record: dict[str, Any]) -> str:
    """JSON text of a record with one table row per line, so a re-measurement diffs row by row."""
    def dump(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = ["{"]
    for key, value in record.items():
        if key != "tables":
            lines.append(f" {dump(key)}: {dump(value)},")
    tables = []
    for table in record.get("tables", []):
        head = [f"  {{{dump('title')}: {dump(table.get('title'))},", f"   {dump('columns')}: {dump(table['columns'])},"]
        extra = [f"   {dump(k)}: {dump(v)}," for k, v in table.items() if k not in ("title", "columns", "rows")]
        rows = ",\n".join(f"    {dump(row)}" for row in table["rows"])
        tables.append("\n".join(head + extra + [f"   {dump('rows')}: [\n{rows}\n   ]}}"]))
    lines.append(f" {dump('tables')}: [\n" + ",\n".join(tables) + "\n ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


class _Tee(io.TextIOBase):
    def __init__(self, stream, copy: io.StringIO) -> None:
        self.stream, self.copy = stream, copy

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.stream.encoding


def record_on_exit(path: str | None, argv: Sequence[str] | None = None) -> None:
    """Tee standard output from now on and write the record to ``path`` when the script exits.

    One call after argument parsing gives a script ``--json PATH`` without restructuring it.
    Nothing is written when ``path`` is empty, when the script dies of an uncaught exception,
    or when it printed no table.
    """
    if not path:
        return
    copy = io.StringIO()
    original = sys.stdout
    sys.stdout = _Tee(original, copy)
    command = command_line(argv)
    failures: list[object] = []
    previous_hook = sys.excepthook

    def note_failure(*info: object) -> None:
        failures.append(info)
        previous_hook(*info)  # type: ignore[arg-type]

    sys.excepthook = note_failure

    def finish() -> None:
        sys.stdout = original
        if failures:
            print(f"{path} not written: the run failed", file=sys.stderr)
            return
        record = make_record(copy.getvalue(), command)
        if not record["tables"]:
            print(f"{path} not written: no markdown table was printed", file=sys.stderr)
            return
        write_record(path, record)
        print(f"wrote {path} ({len(record['tables'])} table(s))")

    atexit.register(finish)
