"""benchmarks/report.py: every generated block of RESULTS.md and README.md is current and has a generator.

The blocks are rendered from committed JSON only (nothing is trained or timed), so these tests
take well under a second.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402
import result_record  # noqa: E402
import result_tables  # noqa: E402


def test_check_passes_on_the_committed_files():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr


def _copy(tmp_path: Path) -> Path:
    for relative in report.FILES:
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        source = ROOT / relative
        if source.exists():
            target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


def test_a_tampered_block_is_named_and_rewritten(tmp_path):
    root = _copy(tmp_path)
    blocks = report.collect()
    results = root / "benchmarks" / "RESULTS.md"
    name = "cpu-losses-vs-peers"
    text = results.read_text(encoding="utf-8")
    record = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text(encoding="utf-8"))
    first = record["tables"][0]["rows"][0]  # e.g. GroCoLoss, NTXentLoss, 256, 4.1 (ms), ...
    row = "| " + " | ".join(first[:4]) + " |"
    assert row in text
    results.write_text(text.replace(row, "| " + " | ".join(first[:3]) + " | 1234.5 |"))
    problems = report.check(root, blocks=blocks)
    assert len(problems) == 1 and name in problems[0] and "stale" in problems[0]
    assert report.write(root, blocks=blocks) == ["benchmarks/RESULTS.md"]
    assert report.check(root, blocks=blocks) == []
    assert results.read_text(encoding="utf-8") == text


def test_missing_generator_unplaced_block_and_broken_markers_are_named(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    page = tmp_path / "benchmarks" / "RESULTS.md"
    page.write_text(
        "<!-- known:start -->\nold\n<!-- known:end -->\n"
        "<!-- orphan:start -->\nx\n<!-- orphan:end -->\n"
        "<!-- waiting:start -->\nhand-kept\n<!-- waiting:end -->\n"
        "<!-- open:start -->\n",
        encoding="utf-8",
    )
    blocks = {"known": "new", "unplaced": "text"}
    problems = report.check(tmp_path, blocks=blocks, pending={"waiting"})
    joined = "\n".join(problems)
    assert "'known' is stale" in joined
    assert "'orphan' has no generator" in joined
    assert "'unplaced' is generated but placed in none" in joined
    assert "open: start marker without its end" in joined
    assert "waiting" not in joined  # pending: left as it is
    report.write(tmp_path, blocks=blocks)
    assert "<!-- known:start -->\nnew\n<!-- known:end -->" in page.read_text(encoding="utf-8")


def test_every_block_in_the_files_has_a_generator_or_is_pending():
    blocks = report.collect()
    for relative in report.FILES:
        text = (ROOT / relative).read_text(encoding="utf-8")
        spans, problems = report.find_blocks(text)
        assert problems == [], (relative, problems)
        for name in spans:
            assert name in blocks or name in report.PENDING or name in report.RETIRED, (relative, name)


def test_pending_names_are_not_generated_twice():
    """A pending name that a merged generator already provides should leave PENDING."""
    assert not (report.PENDING & set(report.collect())), "drop these names from report.PENDING"


def test_every_record_names_its_command_machine_and_date():
    records = result_tables.load_records()
    assert records, "no records in benchmarks/results/"
    for name, record in records.items():
        for key in result_record.REQUIRED_KEYS:
            assert record.get(key), (name, key)
        assert str(record["date"])[:4].isdigit(), (name, record["date"])
        for table in record["tables"]:
            assert table["rows"], name
            assert all(len(row) == len(table["columns"]) for row in table["rows"]), name


def test_record_round_trip_from_printed_output(tmp_path):
    printed = (
        "progress line\n# Losses, forward + backward; some machine\n"
        "| loss | ms |\n|---|---|\n| A | 1.0 |\n| B | 2.5 |\n\n"
        "round 1 load 2.00\nround 2 load 3.00\n\n| x | y |\n|---|---|\n| 1 |  |\n"
    )
    record = result_record.make_record(printed, "python benchmarks/x.py", machine="m", date="2026-12-06")
    assert [table["title"] for table in record["tables"]] == ["Losses, forward + backward; some machine", None]
    assert record["tables"][1]["rows"] == [["1", ""]]
    path = tmp_path / "x.json"
    result_record.write_record(str(path), record)
    assert json.loads(path.read_text(encoding="utf-8")) == record
    markdown = result_tables.render_record(record)
    assert "| A | 1.0 |" in markdown and markdown.endswith("date: 2026-12-06.")
    with pytest.raises(ValueError):
        result_record.write_record(str(path), {"tables": []})


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    import re

    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_results_links_resolve():
    """Every in-page anchor of RESULTS.md names a heading; every relative link names a committed file."""
    import re

    page = ROOT / "benchmarks" / "RESULTS.md"
    text = page.read_text(encoding="utf-8")
    anchors = {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith("http"):
            continue
        path, _, anchor = target.partition("#")
        if not path:
            assert anchor in anchors, f"RESULTS.md links to #{anchor}, which is no heading"
        else:
            assert (page.parent / path).exists(), f"RESULTS.md links to {path}, which does not exist"


def test_a_block_may_be_written_differently_per_file(tmp_path):
    """One name, one text per file: the main job's block is a sentence in the README, a table in RESULTS.md."""
    (tmp_path / "benchmarks").mkdir()
    for relative in report.FILES:
        (tmp_path / relative).write_text("<!-- demo:start -->\n<!-- demo:end -->\n", encoding="utf-8")
    blocks = {"demo": {"README.md": "a sentence", "benchmarks/RESULTS.md": "| a | table |"}}
    assert len(report.check(tmp_path, blocks=blocks)) == 2
    report.write(tmp_path, blocks=blocks)
    assert report.check(tmp_path, blocks=blocks) == []
    assert "a sentence" in (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "| a | table |" in (tmp_path / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    (tmp_path / "README.md").write_text("no block here\n", encoding="utf-8")
    assert report.check(tmp_path, blocks=blocks) == [
        "README.md: block 'demo' is generated for this file but not placed in it"
    ]
