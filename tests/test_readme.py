"""Every ```python block of the README and of docs/*.md runs as written; the README's figures are the records'."""

import glob
import json
import os
import re
import statistics
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
#: The pages whose python blocks are tested: the README and docs/*.md (docs/notes/ holds dated notes).
PAGES = [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))  # demo_results: repository tooling


def _python_blocks():
    """``(page name, index, code)`` of every ```python block, in page order."""
    blocks = []
    for page in PAGES:
        with open(page, encoding="utf-8") as handle:
            text = handle.read()
        name = os.path.relpath(page, ROOT)
        blocks += [(name, i, code) for i, code in enumerate(re.findall(r"```python\n(.*?)```", text, flags=re.S))]
    return blocks


def test_readme_starts_with_the_two_set_up_commands():
    with open(README) as handle:
        text = handle.read()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    with open(os.path.join(os.path.dirname(README), ".ci", "run")) as handle:
        assert "make test" in handle.read()


@pytest.mark.parametrize("page, index, code", [pytest.param(*b, id=f"{b[0]}-{b[1]}") for b in _python_blocks()])
def test_snippet_runs(page, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{page}[python block {index}]", "exec"), {})


def _demo_record():
    with open(os.path.join(os.path.dirname(README), "benchmarks", "demo_results.json")) as handle:
        return json.load(handle)


def test_readme_main_job_numbers_are_the_recorded_run():
    """The README's main-job figures are those of the latest `rankssl demo --write-results` run."""
    from demo_results import read_between_markers, render_readme

    record = _demo_record()
    with open(README) as handle:
        block = read_between_markers(handle.read())
    assert block == render_readme(record), "README out of date: run `rankssl demo --write-results`"
    # Independently of the renderer: every number the record holds appears in the README.
    percents = [float(x) for x in re.findall(r"(\d+\.\d)%", block)]
    expected = [m["knn_top1"] for m in record["methods"]] + list(record["baselines"].values())
    assert sorted(percents) == sorted(expected)
    assert f"after {record['epochs']} epochs" in block and record["date"] in block


def test_results_md_main_job_table_is_the_recorded_run():
    from demo_results import read_between_markers, render_results_md

    record = _demo_record()
    with open(os.path.join(os.path.dirname(README), "benchmarks", "RESULTS.md")) as handle:
        block = read_between_markers(handle.read())
    assert block == render_results_md(record)
    rows = dict(re.findall(r"^\| ([^|]+?) \| (\d+\.\d) \|", block, flags=re.M))
    for method in record["methods"]:
        assert float(rows[method["method"]]) == method["knn_top1"]


def test_write_results_rewrites_only_the_marked_blocks(tmp_path):
    import demo_results

    (tmp_path / "benchmarks").mkdir()
    before = "# title\n\nintro\n<!-- demo-results:start -->\nold numbers\n<!-- demo-results:end -->\ntail\n"
    for name in ("README.md", "benchmarks/RESULTS.md"):
        (tmp_path / name).write_text(before)
    history = [{"date": "2026-11-23", "seconds": 276.0, "machine": demo_results.machine_description()}]
    (tmp_path / "benchmarks" / "demo_results.json").write_text(json.dumps({"wall_time_history": history}))
    rows = [("GroCo", 76.44, 250.0, 50), ("SimCLR (lightly NTXentLoss)", 61.66, 265.0, 50)]
    record = demo_results.make_record(rows, {"raw pixels": 41.1, "random init": 35.6}, 515.0,
                                      ["rankssl", "demo", "--write-results"], load_average=1.5)
    demo_results.write(str(tmp_path), record)
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# title\n\nintro\n") and readme.endswith("tail\n") and "old numbers" not in readme
    assert "GroCo **76.4%**" in readme and "SimCLR (lightly `NTXentLoss`) 61.7%" in readme
    assert "4 min 36 s to 8 min 35 s" in readme  # the range over the recorded runs
    assert "| GroCo | 76.4 | 250 |" in (tmp_path / "benchmarks" / "RESULTS.md").read_text()
    saved = json.loads((tmp_path / "benchmarks" / "demo_results.json").read_text())
    assert [h["seconds"] for h in saved["wall_time_history"]] == [276.0, 515.0]
    assert saved["command"] == "rankssl demo --write-results" and saved["load_average_at_start"] == 1.5


def _block(text, name):
    match = re.search(rf"^<!-- {name}:start -->\n(.*?)^<!-- {name}:end -->$", text, flags=re.S | re.M)
    assert match, f"README.md has no generated block {name!r}"
    return match.group(1)


def test_readme_reproducibility_names_the_records_conditions():
    """The README promises exact figures only under the record's conditions, and names them from the record."""
    record = _demo_record()
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    section = text[text.index("### The main job"):text.index("### Digits")]
    machine = record["machine"].split(" CPU")[0]  # e.g. "2-core x86_64"
    assert f"{machine} CPU" in section and f"{record['torch_threads']} torch threads" in section
    for condition in ("same machine", "instruction set", "OMP_NUM_THREADS", "RANKSSL_KERNELS"):
        assert condition in section, condition
    assert "docs/reproducibility.md" in section


@pytest.mark.parametrize("name, dataset", [("results-digits", "digits"), ("results-two-digits", "two_digits"),
                                           ("results-fashion-mnist", "fashion_mnist")])
def test_readme_results_table_is_the_protocol_record(name, dataset):
    """One short table per data set: its means are the committed protocol run's, and RESULTS.md is linked."""
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    block = _block(text, name)
    after = text[text.index(f"<!-- {name}:end -->"):]
    assert "(benchmarks/RESULTS.md" in after[:after.find("\n#")]
    path = os.path.join(ROOT, "benchmarks", "protocol", dataset, "main.json")
    if not os.path.exists(path):
        assert "No protocol run" in block
        return
    with open(path) as handle:
        report = json.load(handle)
    rows = dict(re.findall(r"^\| (\S+) \| (?:yes|no) \| \d+ \| (\d+\.\d) ± \d+\.\d \|", block, flags=re.M))
    assert rows, block
    for variant in report["variants"].values():
        knn = statistics.mean(variant["knn20"]) * 100
        assert abs(float(rows[variant["method"]]) - knn) <= 0.05 + 1e-9, variant["method"]
