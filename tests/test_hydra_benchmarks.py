"""The Hydra claims benchmark runs at its smoke size; quality.py selects the two-digit data by name."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def test_quality_benchmark_maps_every_method_to_a_two_digit_recipe():
    import quality

    from rankssl.recipes import find_recipe

    for method in quality.METHODS.values():
        two = quality.for_dataset(method, "two-digits")
        assert "two-digits" in two.recipe and os.path.exists(find_recipe(two.recipe))
        assert not two.supcon  # the two-digit SupCon recipe carries pml's SupConLoss itself
        assert quality.for_dataset(method, "digits") is method
    assert set(quality.DATASETS) == {"digits", "two-digits"}


@pytest.mark.slow
def test_hydra_claims_small(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "hydra_claims.py"), "--size", "small",
         "--datasets", "digits", "--rows", "Hydra", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.load(open(tmp_path / "results_small.json"))["digits"]["rows"]["Hydra"][0]
    assert 0.0 <= row["knn20"] <= 1.0 and 1.0 <= row["erank_backbone"] <= 128
    assert 0.0 < row["gate_q05"] <= row["gate_q95"] < 1.0
