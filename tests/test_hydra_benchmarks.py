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


def test_hydra_claims_verdicts_follow_the_seed_noise():
    import hydra_claims

    def runs(knn, erank, auc=None):
        out = []
        for k, e in zip(knn, erank):
            r = {"knn20": k, "erank_backbone": e, "erank_projection": e}
            if auc is not None:
                r["auc_jaccard_own_gates"] = auc.pop(0)
            out.append(r)
        return out

    rows = {
        "Hydra": runs([0.10, 0.11, 0.12], [40.0, 41.0, 42.0], auc=[0.60, 0.62, 0.61]),
        "SupCon": runs([0.40, 0.41, 0.39], [20.0, 21.0, 19.0]),
        "SimCLR": runs([0.10, 0.12, 0.11], [30.0, 31.0, 29.0]),
    }
    text = "\n".join(hydra_claims.claims(rows, "two-digits"))
    assert "above SupCon's | Hydra 11.0 ± 1.0 vs SupCon 40.0 ± 1.0 | no |" in text
    assert "above SimCLR's | Hydra 11.0 ± 1.0 vs SimCLR 11.0 ± 1.0 | within noise |" in text
    assert "(backbone) above SupCon's | Hydra 41.0 ± 1.0 vs SupCon 20.0 ± 1.0 | yes |" in text
    assert "Hydra: AUC 0.610 ± 0.010 (0.5 = chance)" in text
    assert "| 3. class relationships" in text and text.count("| yes |") == 3  # both ranks, the relationships


def test_hydra_claims_runs_are_cached_one_file_each(tmp_path):
    import hydra_claims

    calls = []
    first = hydra_claims.cached(str(tmp_path), "two-digits_Hydra_final_lr0.1_s0_e15",
                                lambda: calls.append(1) or {"kind": "final", "size": "default"})
    again = hydra_claims.cached(str(tmp_path), "two-digits_Hydra_final_lr0.1_s0_e15", lambda: calls.append(1) or {})
    assert first == again and calls == [1]
    assert sorted(os.listdir(tmp_path / "runs")) == ["two-digits_Hydra_final_lr0.1_s0_e15.json"]
