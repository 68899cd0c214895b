"""Rewrite every generated block of ``benchmarks/RESULTS.md`` and ``README.md`` from the run files.

A generated block is the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` (each
marker on its own line). A generator module (listed in :data:`MODULES`, imported from
``benchmarks/``) exposes ``generated_blocks()`` mapping block names to markdown rendered from
committed JSON only (nothing is trained or timed here). A value is the markdown for every file
that holds the block, or ``{file: markdown}`` (file relative to the repository root, as in
:data:`FILES`) when one name is written differently per file (the main job's block is a sentence
in the README and a table in RESULTS.md).

    python benchmarks/report.py            # rewrite the blocks in place
    python benchmarks/report.py --check    # exit 1, naming each stale or missing block

``--check`` fails on: a block whose text differs from its generator's output (stale), a block in
a file that no generator provides (no generator), a generated block placed in no file (unplaced),
and a marker without its partner. Names in :data:`PENDING` belong to generators not merged yet:
a block of that name is left as it is and not checked unless some generator already provides it;
so are the names in :data:`RETIRED`, blocks of harnesses the protocol replaced.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent

#: Files whose generated blocks this command owns, relative to the repository root.
FILES: tuple[str, ...] = ("benchmarks/RESULTS.md", "README.md")

#: Generator modules, imported from ``benchmarks/``; each has ``generated_blocks()``.
MODULES: tuple[str, ...] = ("result_tables", "protocol_reports", "demo_results")

#: Block names whose generator is not merged yet: ``--check`` skips them.
PENDING: frozenset = frozenset()

#: Blocks written by retired harnesses (hydra_claims.py, hydra_digits.py, quality.py) that a file
#: may still hold: left as they are and not checked. Drop a name once no file holds it.
RETIRED: frozenset = frozenset()

_MARKER = re.compile(r"^<!-- ([A-Za-z0-9_.-]+):(start|end) -->$", re.MULTILINE)


def find_blocks(text: str) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Locate the blocks of ``text``.

    Returns ``(spans, problems)``: ``spans[name] = (begin, end)`` are the character offsets of
    the block's body (after the start marker's line, up to the end marker's line), and
    ``problems`` names markers without a partner, nested or repeated blocks.
    """
    spans: dict[str, tuple[int, int]] = {}
    problems: list[str] = []
    open_name, open_end = None, 0
    for match in _MARKER.finditer(text):
        name, kind = match.group(1), match.group(2)
        if kind == "start":
            if open_name is not None:
                problems.append(f"{open_name}: no end marker before {name}'s start")
            open_name, open_end = name, match.end()
            continue
        if open_name != name:
            problems.append(f"{name}: end marker without its start")
            continue
        if name in spans:
            problems.append(f"{name}: block appears twice")
        begin = open_end + 1 if text[open_end : open_end + 1] == "\n" else open_end
        spans[name] = (begin, max(begin, match.start()))
        open_name = None
    if open_name is not None:
        problems.append(f"{open_name}: start marker without its end")
    return spans, problems


Blocks = Mapping[str, str | Mapping[str, str]]  # name -> markdown, or {file: markdown}


def markdown_for(blocks: Blocks, name: str, relative: str) -> str | None:
    """The markdown of block ``name`` in file ``relative``, or None when no generator writes it there."""
    value = blocks.get(name)
    if value is None or isinstance(value, str):
        return value
    return value.get(relative)


def replace_blocks(text: str, blocks: Blocks, relative: str = "") -> str:
    """Return ``text`` (the file ``relative``) with the body of every generated block replaced."""
    spans, _ = find_blocks(text)
    for name, (begin, end) in sorted(spans.items(), key=lambda item: -item[1][0]):
        markdown = markdown_for(blocks, name, relative)
        if markdown is not None:
            text = text[:begin] + body(markdown) + text[end:]
    return text


def body(markdown: str) -> str:
    """The exact text placed between the markers: the markdown and one newline (nothing if empty)."""
    markdown = markdown.strip("\n")
    return markdown + "\n" if markdown else ""


def collect(modules: Iterable[str] = MODULES) -> dict[str, str | Mapping[str, str]]:
    """Import each generator module and merge their ``generated_blocks()``; a name given twice is an error."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    blocks: dict[str, str | Mapping[str, str]] = {}
    for module_name in modules:
        produced = importlib.import_module(module_name).generated_blocks()
        for name, markdown in produced.items():
            if name in blocks:
                raise ValueError(f"block {name!r} is generated by two modules ({module_name} and an earlier one)")
            blocks[name] = markdown
    return blocks


def check(
    root: Path = ROOT,
    files: Sequence[str] = FILES,
    blocks: Blocks | None = None,
    pending: Iterable[str] = PENDING | RETIRED,
) -> list[str]:
    """Return one line per problem (empty when every block is current)."""
    blocks = collect() if blocks is None else blocks
    pending = set(pending)
    problems: list[str] = []
    placed: set[tuple[str, str]] = set()
    for relative in files:
        path = root / relative
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        spans, marker_problems = find_blocks(text)
        problems += [f"{relative}: {line}" for line in marker_problems]
        for name, (begin, end) in spans.items():
            markdown = markdown_for(blocks, name, relative)
            if markdown is not None:
                placed.add((name, relative))
                if text[begin:end] != body(markdown):
                    problems.append(f"{relative}: block {name!r} is stale (run python benchmarks/report.py)")
            elif name not in pending:
                problems.append(f"{relative}: block {name!r} has no generator (missing from MODULES' output)")
    for name, value in sorted(blocks.items()):
        if isinstance(value, str):
            if not any(where == name for where, _ in placed):
                problems.append(f"block {name!r} is generated but placed in none of {', '.join(files)}")
            continue
        for relative in value:
            if (name, relative) not in placed:
                problems.append(f"{relative}: block {name!r} is generated for this file but not placed in it")
    return problems


def write(root: Path = ROOT, files: Sequence[str] = FILES, blocks: Blocks | None = None) -> list[str]:
    """Rewrite the blocks of every file in place; returns the files that changed."""
    blocks = collect() if blocks is None else blocks
    changed = []
    for relative in files:
        path = root / relative
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        new = replace_blocks(text, blocks, relative)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(relative)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 naming each stale or missing block")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for line in problems:
            print(line, file=sys.stderr)
        if not problems:
            print(f"every generated block in {', '.join(FILES)} is current")
        return 1 if problems else 0
    changed = write()
    problems = check()
    print("rewrote " + (", ".join(changed) if changed else "nothing (already current)"))
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
