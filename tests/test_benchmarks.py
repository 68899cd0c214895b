"""Each benchmark script runs at toy size, so that it cannot rot.

Smoke tests, not measurements: each run takes seconds on an idle 2-core machine (the
three together about 40 s) and several times that when other work saturates the cores.
The timeouts only catch hangs: they are 20x the idle time and far beyond any slowdown
from load, so a busy CI machine never fails a correct submission.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG = 1200  # seconds; a hang, not slowness


def _run_benchmark(script: str, *args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # no thread oversubscription on a loaded machine
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
        capture_output=True,
        text=True,
        timeout=HANG,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(HANG + 60)
def test_sorting_benchmark_quick(tmp_path):
    record = tmp_path / "cpu-sorting.json"
    out = _run_benchmark("bench_sorting.py", "--quick", "--json", str(record))
    assert "| odd_even | 8 | 5 |" in out
    _assert_record(record, first_cells=["odd_even", "8", "5"])


@pytest.mark.slow
@pytest.mark.timeout(HANG + 60)
def test_speed_benchmark_quick(tmp_path):
    record = tmp_path / "cpu-losses.json"
    out = _run_benchmark("speed.py", "--quick", "--json", str(record))
    for row in ("| GroCoLoss | NTXentLoss |", "| S2R2Loss:binned | FastAPLoss |", "| HydraLoss | SupConLoss |", "| Hydra |"):
        assert row in out
    _assert_record(record, first_cells=["GroCoLoss", "NTXentLoss"], tables=2)


def _assert_record(path, first_cells, tables=1):
    """``--json PATH`` wrote a result record (benchmarks/result_record.py) of the printed tables."""
    import json

    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["command"].split("python ", 1)[1].startswith("benchmarks/") and record["machine"] and record["date"]
    assert len(record["tables"]) == tables
    assert record["tables"][0]["rows"][0][: len(first_cells)] == first_cells


@pytest.mark.slow
def test_ap_bias_benchmark_quick(tmp_path):
    out = _run_benchmark("bench_ap_bias.py", "--quick", "--out", str(tmp_path))
    assert "| 32 | 8 x 4 | spread |" in out and "worst abs bias" in out
    assert (tmp_path / "ap_bias.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.timeout(HANG + 60)
def test_groco_all_negatives_benchmark_quick(tmp_path):
    record = tmp_path / "cpu-groco-all-negatives.json"
    out = _run_benchmark("groco_all_negatives.py", "--quick", "--json", str(record))
    assert "GroCoLoss / NTXentLoss:" in out and "| load | NTXent ms |" in out
    _assert_record(record, first_cells=[])


@pytest.mark.timeout(HANG + 60)
def test_hydra_launches_benchmark_meets_its_target(tmp_path):
    record = tmp_path / "launches-hydra.json"
    out = _run_benchmark("hydra_launches.py", "--repeats", "1", "--json", str(record))
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 4 and rows[-1].startswith("| pml `SupConLoss` (peer) |")
    # the two defaults: no sync, launches <= SupCon's (the variant's (2B, 2B) masks cost two more)
    assert rows[0].endswith("| yes |") and rows[2].endswith("| yes |"), out
    _assert_record(record, first_cells=["lightly-style `HydraLoss([z0, z1], y)`, default (SimLAP)"])
