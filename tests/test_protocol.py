"""The benchmark protocol (benchmarks/protocol*.py): its logic with fake training, a small real run, and the
blocks it publishes from the committed run JSON."""

import json
import math
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import protocol  # noqa: E402
import protocol_reports  # noqa: E402
import protocol_spec  # noqa: E402
import protocol_training  # noqa: E402
from protocol_claims import claims_table, verdict  # noqa: E402
from protocol_tuning import SearchSpace, bracket, edge_position, lr_grid, select, widen_past_edges  # noqa: E402


def _peaked(optimum: float):
    """A score whose maximum over log2(lr) lies at ``optimum``."""
    return lambda lr: -abs(math.log2(lr) - math.log2(optimum))


# ----------------------------------------------------------------------------- grid widening


def test_lr_grid_is_four_values_spaced_x2_around_the_center():
    assert lr_grid(0.3) == [0.075, 0.15, 0.3, 0.6]
    assert lr_grid(1.0, 5) == [0.25, 0.5, 1.0, 2.0, 4.0]


@pytest.mark.parametrize("optimum", [0.3 / 64, 0.3 / 8, 0.3, 0.3 * 16])
def test_bracket_widens_until_the_known_optimum_is_strictly_inside(optimum):
    tried = []

    def score(lr):
        tried.append(lr)
        return _peaked(optimum)(lr)

    best, scores, position = bracket(score, lr_grid(0.3), max_widen=6)
    assert best == pytest.approx(optimum) and position == "inside"
    ordered = sorted(scores)
    assert ordered[0] < best < ordered[-1]
    assert all(b / a == pytest.approx(2.0) for a, b in zip(ordered, ordered[1:]))  # still spaced x2
    assert len(tried) == len(set(tried))  # no rate is scored twice


def test_bracket_reports_the_edge_when_the_widening_limit_is_reached():
    best, scores, position = bracket(_peaked(1e-6), lr_grid(0.3), max_widen=2)
    assert position == "lower edge" and best == min(scores) and len(scores) == 6


def test_select_finds_every_optimum_and_widens_the_parameter_grid_past_an_edge():
    space = SearchSpace(0.3, "temperature", (0.1, 0.2, 0.5), 0.2, (1e-6, 1e-5, 1e-4), 1e-6)

    def score(config):  # separable: best lr 0.0375, temperature 0.5 (an edge of the grid), weight decay 1e-5
        return (_peaked(0.0375)(config["lr"]) - abs(config["temperature"] - 0.5)
                - abs(math.log10(config["weight_decay"]) + 5))

    chosen = select(space, score)
    assert (chosen.lr, chosen.param, chosen.weight_decay) == (pytest.approx(0.0375), 0.5, 1e-5)
    assert chosen.lr_position == "inside" and chosen.weight_decay_position == "inside"
    # 0.5 beat 0.2, so one grid step beyond (x2.5) was tried: 1.25 scores lower, 0.5 is inside
    assert chosen.param_grid == [0.1, 0.2, 0.5, 1.25] and chosen.param_position == "inside" and chosen.edges == []
    assert len(chosen.lr_grid) >= 4 and min(chosen.lr_grid) < chosen.lr < max(chosen.lr_grid)
    assert len({(t["lr"], t["temperature"], t["weight_decay"]) for t in chosen.trials}) == len(chosen.trials)
    assert chosen.score == max(t["score"] for t in chosen.trials)


def test_parameter_widening_keeps_integers_and_flags_the_limit():
    bins = SearchSpace(0.3, "num_bins", (20, 40, 80), 40)
    fewer_is_better = select(bins, lambda c: _peaked(0.3)(c["lr"]) - c["num_bins"] / 100, max_widen=2)
    assert fewer_is_better.param_grid == [5, 10, 20, 40, 80]  # x2 steps below 20, integers
    assert all(isinstance(b, int) for b in fewer_is_better.param_grid)
    assert (fewer_is_better.param, fewer_is_better.param_position) == (5, "lower edge")
    assert fewer_is_better.edges == ["param"]
    selection = {"param_name": "num_bins", "param": 5, "param_grid": fewer_is_better.param_grid}
    assert protocol_reports._param(selection) == "num_bins=5 (of 5, 10, 20, 40, 80)"  # the table shows a widened grid

    steepness = SearchSpace(3.0, "steepness", (1.0, 4.0, 16.0), 4.0)
    optimum_at_quarter = select(steepness, lambda c: _peaked(3.0)(c["lr"]) - abs(math.log2(c["steepness"]) + 2))
    assert optimum_at_quarter.param_grid == [0.0625, 0.25, 1.0, 4.0, 16.0]  # x4 steps below 1
    assert (optimum_at_quarter.param, optimum_at_quarter.param_position) == (0.25, "inside")

    flat = select(steepness, lambda c: _peaked(3.0)(c["lr"]) - (0.0 if c["steepness"] < 10 else 1.0))
    assert (flat.param, flat.param_position, flat.param_grid) == (1.0, "flat edge", [1.0, 4.0, 16.0])


def test_weight_decay_widens_past_an_edge_it_beats_and_stops_on_a_tie():
    space = SearchSpace(0.3, "steepness", (4.0,), 4.0, (1e-6, 1e-5, 1e-4), 1e-6)

    def peaked_decay(optimum):  # best lr 0.3 and weight decay ``optimum``
        return lambda c: _peaked(0.3)(c["lr"]) - abs(math.log10(c["weight_decay"]) - math.log10(optimum))

    chosen = select(space, peaked_decay(1e-2))
    assert chosen.weight_decay == 1e-2 and chosen.weight_decay_position == "inside"
    assert chosen.weight_decay_grid == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1] and chosen.edges == []
    assert select(space, peaked_decay(1e-5)).weight_decay_grid == [1e-6, 1e-5, 1e-4]  # inside: nothing added

    flat = select(space, lambda c: _peaked(0.3)(c["lr"]))  # weight decay changes nothing
    assert (flat.weight_decay, flat.weight_decay_position, flat.edges) == (1e-6, "flat edge", [])
    assert flat.weight_decay_grid == [1e-6, 1e-5, 1e-4]

    best, scores, position = widen_past_edges(lambda w: -w, [1e-6, 1e-5, 1e-4], max_widen=2)
    assert (best, position, sorted(scores)) == (1e-8, "lower edge", [1e-8, 1e-7, 1e-6, 1e-5, 1e-4])


def test_select_refuses_a_grid_smaller_than_the_protocol_and_bad_spaces():
    space = SearchSpace(0.3, "temperature", (0.2,), 0.2)
    with pytest.raises(ValueError, match="lr_steps"):
        select(space, lambda c: 0.0, lr_steps=3)
    with pytest.raises(ValueError, match="default_param"):
        SearchSpace(0.3, "temperature", (0.1, 0.5), 0.2)
    assert edge_position(0.2, (0.2,)) == "untuned"


# ----------------------------------------------------------------------------- resume and the test split


def _fake_data(n_train=200, n_test=50):
    generator = torch.Generator().manual_seed(0)
    return {"train_x": torch.rand(n_train, 1, 4, 4, generator=generator), "train_y": torch.arange(n_train) % 10,
            "test_x": torch.rand(n_test, 1, 4, 4, generator=generator), "test_y": torch.arange(n_test) % 10}


class FakeTrainer:
    """Stands for train_run: validation score peaks at lr 0.15, test score at lr 2.4 (never to be chosen)."""

    def __init__(self):
        self.calls = []

    def __call__(self, spec, dataset, data, fit_val, work_root):
        self.calls.append(spec)
        fit, val = fit_val
        if spec.purpose == "tune":
            assert set(data) == {"train_x", "train_y"}, "a tuning run was given the test split"
            assert not set(fit) & set(val) and max(fit + val) < len(data["train_y"])
            return {"spec": vars(spec), "val_knn20": 0.9 + _peaked(0.15)(spec.lr) / 100,
                    "train_seconds": 0.0, "steps": 1, "s_per_step": 0.1}
        test_score = 0.5 + _peaked(2.4)(spec.lr) / 100 + spec.seed / 1000
        return {"spec": vars(spec), "knn20": test_score, "knn200": test_score, "linear": test_score, "erank": 5.0,
                "curve": [(1, test_score / 2), (2, test_score)], "train_seconds": 0.0, "steps": 2,
                "s_per_step": 0.1}


def _protocol(tmp_path, trainer, **options):
    size = protocol_spec.Size(epochs=2, seeds=(0, 1), eval_every=1, param_values=1)
    return protocol.Protocol(protocol_spec.DATASETS["digits"], size, str(tmp_path), trainer=trainer, data=_fake_data(),
                             **options)


def test_selection_uses_the_validation_part_never_the_test_split(tmp_path):
    trainer = FakeTrainer()
    report = _protocol(tmp_path, trainer).table("views", methods=["SimCLR"])
    for summary in report["variants"].values():
        assert summary["selection"]["lr"] == pytest.approx(0.15)  # the validation optimum, not the test's 2.4
        assert summary["selection"]["lr_position"] == "inside"
    assert {s.purpose for s in trainer.calls} == {"tune", "final"}


def test_a_rerun_skips_finished_runs_and_a_killed_run_resumes(tmp_path):
    first = FakeTrainer()
    report = _protocol(tmp_path, first).table("views", methods=["SimCLR"])
    runs_dir = tmp_path / "digits" / "runs"
    assert len(os.listdir(runs_dir)) == len(first.calls) > 0

    again = FakeTrainer()
    assert _protocol(tmp_path, again).table("views", methods=["SimCLR"])["variants"] == report["variants"]
    assert again.calls == []

    killed = sorted(runs_dir.iterdir())[:3]  # as if the benchmark had been killed before these finished
    for path in killed:
        path.unlink()
    resumed = FakeTrainer()
    _protocol(tmp_path, resumed).table("views", methods=["SimCLR"])
    assert sorted(s.run_id + ".json" for s in resumed.calls) == sorted(p.name for p in killed)


def test_finished_only_writes_the_table_from_finished_runs_and_names_the_rest(tmp_path):
    _protocol(tmp_path, FakeTrainer()).table("main", methods=["SimCLR"])  # SimCLR/paper/2 finished

    never = FakeTrainer()
    report = _protocol(tmp_path, never, finished_only=True).table("views", methods=["SimCLR"])
    assert never.calls == []
    assert list(report["variants"]) == ["SimCLR/paper/2"] and report["not_run"] == ["SimCLR/paper/4"]
    assert "Not run yet (the table was written from finished runs): SimCLR/paper/4." in protocol_reports.format_table(report)


def test_a_cuda_table_is_written_from_finished_runs_without_a_gpu(tmp_path, monkeypatch):
    _protocol(tmp_path, FakeTrainer(), device="cuda").table("views", methods=["SimCLR"])
    used = []
    monkeypatch.setattr(protocol, "baseline_rows", lambda data, seeds, device, normalize: used.append(device) or {})
    report = _protocol(tmp_path, FakeTrainer(), device="cuda", finished_only=True).table("main", methods=["SimCLR"])
    assert used == ["cpu"] and report["device"] == "cuda"
    assert list(report["variants"]) == ["SimCLR/paper/2"]


def test_run_ids_depend_on_every_field():
    spec = protocol_spec.RunSpec("digits", "GroCo/paper/2", 0.3, 4.0, 1e-6, 50, 0, "final")
    assert spec.run_id == protocol_spec.RunSpec("digits", "GroCo/paper/2", 0.3, 4.0, 1e-6, 50, 0, "final").run_id
    others = [protocol_spec.RunSpec("digits", "GroCo/paper/2", 0.3, 4.0, 1e-6, 50, 1, "final"),
              protocol_spec.RunSpec("digits", "GroCo/paper/2", 0.6, 4.0, 1e-6, 50, 0, "final"),
              protocol_spec.RunSpec("digits", "GroCo/common/2", 0.3, 4.0, 1e-6, 50, 0, "final")]
    assert len({spec.run_id, *(o.run_id for o in others)}) == 4


# ----------------------------------------------------------------------------- configs


def test_build_config_wires_heads_views_and_the_tuning_split():
    digits = protocol_spec.DATASETS["digits"]
    spec = protocol_spec.RunSpec("digits", "GroCo/common/2+4", 0.6, 16.0, 1e-4, 3, 0, "tune")
    cfg = protocol_training.build_config(spec, digits, "/tmp/unused", fit_indices=[1, 2, 3])
    views = cfg.train_dataloader.dataset.pipeline[0].views
    assert [v["num_views"] for v in views] == [2, 4] and views[1]["input_size"] == 16
    assert cfg.model.loss.n_positive_views == 2 and cfg.model.loss.steepness == 16.0
    assert cfg.model.neck == protocol_spec.COMMON_HEAD
    assert cfg.optim_wrapper.optimizer.lr == 0.6 and cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert cfg.train_dataloader.dataset.indices == [1, 2, 3] and cfg.val_dataloader is None
    assert cfg.train_dataloader.batch_size == 256 and cfg.train_cfg.max_epochs == 3

    final = protocol_training.build_config(protocol_spec.RunSpec("digits", "S2R2/paper/8", 0.3, 20, 1e-6, 3, 1, "final"),
                                  digits, "/tmp/unused", fit_indices=None)
    assert final.train_dataloader.dataset.pipeline[0].views[0]["num_views"] == 8
    assert final.val_dataloader.dataset.query.split == "test" and final.model.neck.type == "MLPHead"
    with pytest.raises(ValueError, match="GroCo only"):
        protocol_training.build_config(protocol_spec.RunSpec("digits", "SimCLR/paper/2+4", 0.3, 0.2, 1e-6, 3, 0, "final"),
                              digits, "/tmp/unused", None)


def test_two_digits_is_one_table_entry():
    two_digits = protocol_spec.DATASETS["two_digits"]
    assert two_digits.num_classes == 100 and two_digits.mm_dataset("test")["type"] == "TwoDigitCanvas"
    from rankssl.recipes import list_recipes

    expected = "groco_smallcnn_1xb256-50e_two-digits"
    assert expected in list_recipes()
    assert protocol_spec.recipe_for("groco_smallcnn_1xb256-50e_digits", two_digits) == expected
    assert protocol_spec.recipe_for("groco_smallcnn_1xb256-50e_digits", protocol_spec.DATASETS["digits"]) == (
        "groco_smallcnn_1xb256-50e_digits")


# ----------------------------------------------------------------------------- claims


def test_verdict_rule_against_a_direct_computation():
    a, b = [0.80, 0.82, 0.84], [0.70, 0.72, 0.74]  # gap 0.10, noise sqrt(0.02^2 + 0.02^2) = 0.028
    assert verdict(a, b) == "yes" and verdict(b, a) == "no"
    assert verdict([0.71, 0.75, 0.79], b) == "within noise"  # gap 0.03 < noise 0.045
    assert verdict(b, [0.71, 0.75, 0.79], at_least=True) == "yes"  # -0.03 >= -0.045
    assert verdict([0.8], [0.7]).startswith("yes (1 seed")


def _summary(mean, spread=0.01, erank=10.0, curve_start=None):
    accs = [mean - spread, mean, mean + spread]
    start = curve_start if curve_start is not None else mean / 2
    return {"knn20": accs, "erank": [erank] * 3, "curves": [[(5, start), (10, a)] for a in accs]}


def test_claims_table_from_a_synthetic_results_json(tmp_path):
    main = {"GroCo/paper/2": _summary(0.75), "SimCLR/paper/2": _summary(0.60), "S2R2/paper/4": _summary(0.70),
            "Hydra/paper/2": _summary(0.50, erank=30.0), "SupCon/paper/2": _summary(0.65, erank=20.0)}
    views = {"SimCLR/paper/4": _summary(0.70, curve_start=0.60), "S2R2/paper/4": _summary(0.70, curve_start=0.30)}
    s2r2_views = {f"S2R2/paper/{v}": _summary(acc) for v, acc in (("2", 0.6), ("4", 0.7), ("8", 0.65), ("16", 0.8))}
    root = tmp_path / "digits"
    root.mkdir()
    for name, variants in (("main", main), ("views", views), ("s2r2_views", s2r2_views)):
        (root / f"{name}.json").write_text(json.dumps({"variants": variants}))
    text = protocol_reports.write_claims(str(tmp_path), "digits")
    assert text == (root / "claims.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line.rsplit(" | ", 1)[1].rstrip(" |")
            for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    claim = lambda start: next(v for k, v in rows.items() if k.startswith(start))  # noqa: E731
    assert claim("GroCo is at least as good") == "yes"
    assert claim("... the same with one common head") == "-" and "not run yet: GroCo/common/2" in text
    assert claim("GroCo gains from multi-crop") == "-"
    assert claim("S2R2 beats SimCLR at equal views (4") == "within noise"  # 0.70 vs 0.70
    assert claim("S2R2 beats SimCLR at equal views (2") == "within noise"  # 0.60 (from s2r2_views) vs 0.60
    assert claim("S2R2 converges faster than SimCLR in epochs (4") == "no"  # same end, S2R2's curve starts lower
    assert claim("S2R2's gain grows") == "no (drops between two view counts)"  # 0.7 -> 0.65
    assert claim("Hydra beats SimCLR") == "no"
    assert claim("Hydra prevents dimensional collapse") == "yes"  # erank 30 vs 20, equal over seeds
    assert "75.0 ± 1.0" in text and "60.0 ± 1.0" in text  # figures come from the JSON


def test_claims_table_with_nothing_run_says_so():
    text = claims_table({}, "digits")
    assert text.count("not run yet") == 14 and "not measured by the protocol" in text


def test_views_claim_is_judged_on_the_view_counts_that_were_run():
    two_four_eight = {f"S2R2/paper/{v}": _summary(acc) for v, acc in (("2", 0.6), ("4", 0.7), ("8", 0.75))}
    row = next(line for line in claims_table(two_four_eight, "digits").splitlines() if "gain grows" in line)
    assert row.endswith("| yes |") and "(16 views not run)" in row and "8 views 75.0 ± 1.0" in row
    plateau = dict(two_four_eight, **{"S2R2/paper/8": _summary(0.705)})
    row = next(line for line in claims_table(plateau, "digits").splitlines() if "gain grows" in line)
    assert row.endswith("| partly: 2 -> 4 grows, 4 -> 8 within noise |")
    only_two = {k: v for k, v in two_four_eight.items() if not k.endswith("/8")}
    row = next(line for line in claims_table(only_two, "digits").splitlines() if "gain grows" in line)
    assert "not run yet: S2R2/paper/8, S2R2/paper/16" in row and row.endswith("| - |")


# ----------------------------------------------------------------------------- a real small run


@pytest.mark.slow
def test_protocol_small_runs_resumes_and_writes_its_tables(tmp_path):
    def run(*args):
        result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "protocol.py"), *args,
                                 "--out", str(tmp_path)], capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    first = run("--table", "main", "--size", "small", "--methods", "SimCLR", "--jobs", "2")  # worker processes
    assert "| SimCLR/paper/2 | no |" in first and "| raw pixels |" in first and "ETA" in first
    root = tmp_path / "digits"
    runs = sorted(p.name for p in (root / "runs").iterdir())
    assert len(runs) >= 6  # >= 4 learning rates + 2 seeds
    assert all("s_per_step" in json.loads((root / "runs" / r).read_text()) for r in runs)
    assert (root / "main_curves.png").stat().st_size > 0
    again = run("--table", "main", "--size", "small", "--methods", "SimCLR")
    assert "trained 0 runs" in again and sorted(p.name for p in (root / "runs").iterdir()) == runs
    claims = run("--table", "claims")
    assert "| GroCo is at least as good" in claims and (root / "claims.md").exists()


def test_plan_extrapolates_the_measured_seconds_per_step(tmp_path):
    runs = tmp_path / "digits" / "runs"
    runs.mkdir(parents=True)
    for i, (variant, purpose, s_step) in enumerate((("GroCo/paper/2", "cost", 0.5), ("GroCo/paper/2", "tune", 9.0))):
        (runs / f"{i}.json").write_text(json.dumps({"spec": {"variant": variant, "purpose": purpose},
                                                    "s_per_step": s_step}))
    size = protocol_spec.SIZES["default"]
    text = protocol_reports.plan("multicrop", size, None, str(tmp_path), "digits")
    tuning_runs = 4 + 2 + 2  # lr grid, 2 more steepness values, 2 more weight decays
    # 50 epochs x (8 tuning runs x 4 steps of 256 of the 1,150 fit images + 3 seeds x 5 steps of 1,437 images)
    hours = 0.5 * 50 * (tuning_runs * 4 + 3 * 5) / 3600  # the 'cost' measurement wins over the tuning run's
    assert f"| GroCo/paper/2 | {tuning_runs} | 3 | 0.50 | {hours:.1f} |" in text
    assert "| GroCo/paper/2+4 | 8 | 3 | not measured | ? |" in text


def test_step_costs_table_reads_the_measure_runs_only(tmp_path):
    runs = tmp_path / "digits" / "runs"
    runs.mkdir(parents=True)
    for i, (variant, purpose, s_step) in enumerate((("SimCLR/paper/2", "cost", 0.5), ("GroCo/paper/2+4", "cost", 0.75),
                                                    ("SimCLR/paper/4", "cost", 1.0), ("S2R2/paper/8", "tune", 9.0))):
        (runs / f"{i}.json").write_text(json.dumps({"spec": {"variant": variant, "purpose": purpose},
                                                    "s_per_step": s_step}))
    text = protocol_reports.write_step_costs(str(tmp_path), "digits")
    assert text == (tmp_path / "digits" / "costs.md").read_text()
    step_table = text.split("\n\n")[1]
    rows = [line for line in step_table.splitlines() if "---" not in line][1:]
    assert rows == ["| GroCo/paper/2+4 | 0.750 | 1.50x |", "| SimCLR/paper/2 | 0.500 | 1.00x |",
                    "| SimCLR/paper/4 | 1.000 | 2.00x |"]  # the tuning run of S2R2/paper/8 is not a measurement


def test_step_costs_file_reports_the_search_budget_of_each_variant(tmp_path):
    runs = tmp_path / "digits" / "runs"
    runs.mkdir(parents=True)
    specs = [("GroCo/paper/2", "tune", 1800.0)] * 3 + [("GroCo/paper/2", "final", 900.0)] * 2 + [
        ("SimCLR/paper/2", "tune", 360.0), ("SimCLR/paper/2", "cost", 36.0), ("S2R2/paper/4", "cost", 10.0)]
    for i, (variant, purpose, seconds) in enumerate(specs):
        (runs / f"{i}.json").write_text(json.dumps({"spec": {"variant": variant, "purpose": purpose},
                                                    "s_per_step": 1.0, "train_seconds": seconds}))
    text = protocol_reports.write_step_costs(str(tmp_path), "digits")
    budget_rows = [line for line in text.split("\n\n")[3].splitlines() if "---" not in line][1:]
    # S2R2 has only a cost run, so no search to report; the cost runs are not counted as tuning
    assert budget_rows == ["| GroCo/paper/2 | 3 | 1.50 | 2 | 0.50 |", "| SimCLR/paper/2 | 1 | 0.10 | 0 | - |"]


def test_step_costs_file_says_when_nothing_was_measured(tmp_path):
    runs = tmp_path / "two_digits" / "runs"
    runs.mkdir(parents=True)
    (runs / "0.json").write_text(json.dumps({"spec": {"variant": "SimCLR/paper/2", "purpose": "tune"},
                                             "s_per_step": 1.0, "train_seconds": 360.0}))
    text = protocol_reports.write_step_costs(str(tmp_path), "two_digits")
    assert "No `--measure` run yet" in text
    assert "| variant | s/step |" not in text  # no empty table
    assert "| SimCLR/paper/2 | 1 | 0.10 | 0 | - |" in text


def test_a_folder_holds_one_budget(tmp_path):
    _protocol(tmp_path, FakeTrainer()).table("views", methods=["SimCLR"])  # writes a 2-epoch views.json
    longer = protocol_spec.Size(epochs=5, seeds=(0, 1), eval_every=1, param_values=1)
    with pytest.raises(ValueError, match=r"views.json holds a 2-epoch table and this run is 5 epochs.*--out"):
        protocol.Protocol(protocol_spec.DATASETS["digits"], longer, str(tmp_path), trainer=FakeTrainer(),
                          data=_fake_data())
    _protocol(tmp_path, FakeTrainer())  # the same budget resumes


def test_seeds_option_sets_the_final_runs_and_their_order(tmp_path, capsys):
    protocol.main(["--table", "views", "--size", "medium", "--seeds", "2", "0", "--plan", "--out", str(tmp_path)])
    assert "seeds [2, 0]" in capsys.readouterr().out


def test_a_common_head_equal_to_the_recipes_head_reuses_its_runs(tmp_path):
    trainer = FakeTrainer()
    proto = _protocol(tmp_path, trainer)
    paper = proto.variant_summary(protocol_spec.Variant("SimCLR", "paper", "2"))
    calls = len(trainer.calls)
    common = proto.variant_summary(protocol_spec.Variant("SimCLR", "common", "2"))
    assert len(trainer.calls) == calls and common["runs_of"] == "SimCLR/paper/2"  # SimCLR's head is the common one
    assert common["knn20"] == paper["knn20"]
    proto.variant_summary(protocol_spec.Variant("GroCo", "common", "2"))
    assert trainer.calls[-1].variant == "GroCo/common/2"  # GroCo's own head differs: trained anew


def test_the_table_reports_the_grid_and_flags_a_winner_on_an_edge(tmp_path):
    class EdgeTrainer(FakeTrainer):  # validation keeps improving as the rate falls: no optimum within reach
        def __call__(self, spec, dataset, data, fit_val, work_root):
            result = super().__call__(spec, dataset, data, fit_val, work_root)
            if spec.purpose == "tune":
                result["val_knn20"] = 0.5 - spec.lr / 100
            return result

    proto = _protocol(tmp_path, EdgeTrainer())
    proto.size = protocol_spec.Size(epochs=2, seeds=(0,), eval_every=1, max_widen=1, param_values=1)
    report = proto.table("views", methods=["GroCo"])
    text = protocol_reports.format_table(report)
    selection = report["variants"]["GroCo/paper/2"]["selection"]
    assert selection["lr_position"] == "lower edge" and selection["edges"] == ["lr"]
    assert "**lower edge**" in text and "Winners on an edge of their grid: GroCo/paper/2 (lr)" in text
    assert ", ".join(f"{lr:g}" for lr in selection["lr_grid"]) in text


def test_the_closing_line_names_a_flat_edge_instead_of_calling_it_inside(tmp_path):
    report = _protocol(tmp_path, FakeTrainer()).table("views", methods=["SimCLR"])
    before = protocol_reports.format_table(report)
    assert "Every winner lies inside its grid." in before and "flat edge (tied" not in before
    next(iter(report["variants"].values()))["selection"]["weight_decay_position"] = "flat edge"
    text = protocol_reports.format_table(report)
    assert "| edge, tied with its neighbour |" in text
    assert "Every winner lies inside its grid or on a flat edge (tied with its neighbour" in text
    assert "Every winner lies inside its grid." not in text


def test_a_probe_scores_one_configuration_off_the_grid_as_a_tuning_run(tmp_path):
    before = FakeTrainer()
    result = _protocol(tmp_path, before).probe("SimCLR/paper/2", 0.01)
    assert [(s.purpose, s.seed, s.lr, s.param, s.weight_decay) for s in before.calls] == [("tune", 0, 0.01, 0.2, 1e-6)]
    assert result["selection"] is None  # nothing else is trained: the search has not run
    assert result["val_knn20"] == pytest.approx(0.9 + _peaked(0.15)(0.01) / 100)
    assert "the search has not finished" in protocol_reports.format_probe(result)

    report = _protocol(tmp_path, FakeTrainer()).table("main", methods=["SimCLR"])
    again = FakeTrainer()
    result = _protocol(tmp_path, again).probe("SimCLR/paper/2", 0.01, 0.5, 1e-5)
    chosen = report["variants"]["SimCLR/paper/2"]["selection"]
    assert result["selection"] == {"lr": chosen["lr"], "temperature": chosen["param"],
                                   "weight_decay": chosen["weight_decay"], "val_knn20": chosen["val_knn20"]}
    assert [(s.lr, s.param, s.weight_decay) for s in again.calls] == [(0.01, 0.5, 1e-5)]
    line = protocol_reports.format_probe(result)
    assert line.startswith("SimCLR/paper/2 probe lr=0.01, temperature=0.5, weight_decay=1e-05: val kNN")
    assert f"the search's winner lr={chosen['lr']:g}" in line

    stored = FakeTrainer()  # a stored probe is not trained again
    _protocol(tmp_path, stored).probe("SimCLR/paper/2", 0.01)
    assert stored.calls == []


def test_a_probe_rejects_what_it_cannot_score(tmp_path, capsys):
    untouched = FakeTrainer()
    probing = _protocol(tmp_path, untouched)
    for name in ("BYOL/paper/2", "SimCLR", "SimCLR/mlp/2", "SimCLR/paper/x", "GroCo/paper/2+0"):
        with pytest.raises(ValueError, match=f"expected METHOD/HEAD/VIEWS .* got '{re.escape(name)}'"):
            probing.probe(name, 0.1)
    with pytest.raises(ValueError, match="lr must be positive, got -0.1"):
        probing.probe("SimCLR/paper/2", -0.1)
    with pytest.raises(ValueError, match="num_bins takes whole numbers, got 20.5"):
        probing.probe("S2R2/paper/4", 0.1, 20.5)
    with pytest.raises(ValueError, match="temperature must be positive, got -0.2"):
        probing.probe("SimCLR/paper/2", 0.1, -0.2)
    with pytest.raises(ValueError, match="weight_decay must be >= 0, got -1e-05"):
        probing.probe("SimCLR/paper/2", 0.1, None, -1e-5)
    assert untouched.calls == []  # every refusal comes before any training
    with pytest.raises(SystemExit):
        protocol.main(["--probe", "SimCLR/paper/2", "--lr", "0.1", "--plan", "--out", str(tmp_path)])
    assert "--plan is for a --table" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        protocol.main(["--probe", "SimCLR/paper/2", "--out", str(tmp_path)])
    assert "--probe needs --lr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        protocol.main(["--out", str(tmp_path)])
    assert "--table (or --probe)" in capsys.readouterr().err


def test_a_probe_with_final_runs_scores_the_test_split_like_a_row(tmp_path, capsys):
    trainer = FakeTrainer()
    result = _protocol(tmp_path, trainer).probe("SimCLR/paper/2", 2.4, final=True)
    assert [(s.purpose, s.seed) for s in trainer.calls] == [("tune", 0), ("final", 0), ("final", 1)]
    assert all(s.lr == 2.4 for s in trainer.calls)
    expected = [0.5 + _peaked(2.4)(2.4) / 100 + seed / 1000 for seed in (0, 1)]
    assert result["test"]["knn20"] == pytest.approx(expected)
    line = protocol_reports.format_probe(result)
    assert "test split over 2 seeds: kNN k=20 50.0 ± 0.1, kNN k=200 50.0 ± 0.1, linear probe 50.0 ± 0.1" in line
    assert capsys.readouterr().out.count("[") == 3  # one progress line per run; the replayed search is quiet


def test_views_option_trains_only_those_rows_so_rows_can_run_in_parallel(tmp_path):
    sixteen = FakeTrainer()
    report = _protocol(tmp_path, sixteen).table("s2r2_views", views=["16"])
    assert list(report["variants"]) == ["S2R2/paper/16"]
    assert {s.variant for s in sixteen.calls} == {"S2R2/paper/16"}
    two = FakeTrainer()
    _protocol(tmp_path, two).table("s2r2_views", views=["2"])
    assert {s.variant for s in two.calls} == {"S2R2/paper/2"}
    whole = _protocol(tmp_path, FakeTrainer(), finished_only=True).table("s2r2_views")
    assert list(whole["variants"]) == ["S2R2/paper/2", "S2R2/paper/16"]
    assert whole["not_run"] == ["S2R2/paper/4", "S2R2/paper/8"]
    assert [v.name for v in protocol_spec.table_variants("multicrop", views=["2+4"])] == ["GroCo/paper/2+4"]
    # A recipe's own view count matches too (the main table's rows name no views).
    assert [v.name for v in protocol_spec.table_variants("main", ["S2R2"], ["4"])] == ["S2R2/paper/4"]


def test_a_filter_that_leaves_no_row_is_refused_before_any_work(capsys):
    with pytest.raises(ValueError, match=r"no row with methods=\['SimCLR'\] and views=\['16'\].*\['2', '4'\]"):
        protocol_spec.table_variants("views", ["SimCLR"], ["16"])
    with pytest.raises(SystemExit):
        protocol.main(["--table", "s2r2_views", "--views", "3", "--plan"])
    assert "view counts are ['2', '4', '8', '16']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        protocol.main(["--table", "claims", "--views", "4"])
    assert "--views picks rows of a training table" in capsys.readouterr().err


# ----------------------------------------------------------------------------- runs side by side (--jobs)


def test_prefetch_gets_each_rounds_unscored_configs_and_leaves_the_selection_alone():
    space = SearchSpace(0.3, "temperature", (0.1, 0.2, 0.5), 0.2, (1e-6, 1e-5, 1e-4), 1e-6)

    def score(config):
        return _peaked(0.3 / 8)(config["lr"]) - abs(config["temperature"] - 0.1) - config["weight_decay"]

    rounds = []
    ahead = select(space, score, prefetch=rounds.append)
    alone = select(space, score)
    assert ahead == alone
    assert [c["lr"] for c in rounds[0]] == [0.075, 0.15, 0.3, 0.6]  # the first grid, handed over at once
    assert [c["lr"] for c in rounds[1]] == [0.0375]  # then one value beyond the lower edge
    scored = [{k: t[k] for k in ("lr", "temperature", "weight_decay")} for t in alone.trials]
    handed = [config for batch in rounds for config in batch]
    assert handed == scored  # every configuration once, in the order scored, none already scored


def _instant_trainer(spec, dataset, data, fit_val, work_root):
    """A picklable stand-in for train_run (a worker process must import it)."""
    return FakeTrainer()(spec, dataset, data, fit_val, work_root)


class RecordingPool:
    """An executor factory on threads that records how many runs each pool was handed."""

    def __init__(self):
        self.batches = []

    def __call__(self, workers):
        from concurrent.futures import ThreadPoolExecutor

        pool, batches = ThreadPoolExecutor(workers), self.batches
        batches.append(0)

        class Counting:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pool.shutdown(wait=True)

            def submit(self, fn, *args):
                batches[-1] += 1
                return pool.submit(fn, *args)

        return Counting()


def test_jobs_train_a_grid_side_by_side_and_give_the_same_table(tmp_path, capsys):
    alone = _protocol(tmp_path / "alone", FakeTrainer()).table("views", methods=["SimCLR"], views=["2"])
    pools = RecordingPool()
    parallel = _protocol(tmp_path / "jobs", FakeTrainer(), jobs=3, executor=pools)
    capsys.readouterr()
    report = parallel.table("views", methods=["SimCLR"], views=["2"])
    assert report["variants"] == alone["variants"]
    assert pools.batches[0] == 4  # the first learning-rate grid at once
    assert pools.batches[-1] == 2  # the two seeds of the row
    runs = sorted(os.listdir(tmp_path / "jobs" / "digits" / "runs"))
    assert runs == sorted(os.listdir(tmp_path / "alone" / "digits" / "runs"))
    assert parallel.progress.trained == len(runs)  # runs trained by workers count as trained, not skipped
    first = capsys.readouterr().out.splitlines()[0]  # a line before the workers start: the progress is visible
    assert first.startswith("training 4 runs side by side in 3 processes: SimCLR/paper/2 tune lr=0.075 ")


def test_jobs_in_real_worker_processes_store_every_run(tmp_path):
    report = _protocol(tmp_path, _instant_trainer, jobs=2).table("views", methods=["SimCLR"], views=["2"])
    again = FakeTrainer()
    assert _protocol(tmp_path, again).table("views", methods=["SimCLR"], views=["2"]) == report
    assert again.calls == []  # the workers stored every run where a sequential run finds it


def test_a_run_failing_in_a_worker_raises_after_the_others_are_stored(tmp_path):
    def flaky(spec, dataset, data, fit_val, work_root):
        if spec.lr == 0.15:
            raise RuntimeError("out of memory")
        return FakeTrainer()(spec, dataset, data, fit_val, work_root)

    with pytest.raises(RuntimeError, match="out of memory"):
        _protocol(tmp_path, flaky, jobs=4, executor=RecordingPool()).table("views", methods=["SimCLR"], views=["2"])
    assert len(os.listdir(tmp_path / "digits" / "runs")) == 3  # the grid's three other rates


def _killed_at_lr_015(spec, dataset, data, fit_val, work_root):
    """A worker's run that the operating system kills (as for memory) at lr 0.15; the others train."""
    if spec.lr == 0.15:
        os.kill(os.getpid(), signal.SIGKILL)
    return FakeTrainer()(spec, dataset, data, fit_val, work_root)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_killed_worker_gives_a_clear_error_and_the_stored_runs_resume(tmp_path):
    with pytest.raises(RuntimeError, match=r"a --jobs worker process died mid-run .* re-run with fewer --jobs"):
        _protocol(tmp_path, _killed_at_lr_015, jobs=2).table("views", methods=["SimCLR"], views=["2"])
    stored = set(os.listdir(tmp_path / "digits" / "runs"))
    for name in stored:
        with open(tmp_path / "digits" / "runs" / name) as handle:
            assert json.load(handle)["spec"]["lr"] != 0.15  # the killed run left no file, not even half of one
    resumed = FakeTrainer()
    _protocol(tmp_path, resumed).table("views", methods=["SimCLR"], views=["2"])
    assert all(f"{spec.run_id}.json" not in stored for spec in resumed.calls)  # nothing stored is trained again
    assert 0.15 in {spec.lr for spec in resumed.calls}


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_jobs_must_be_a_positive_whole_number(tmp_path, jobs):
    with pytest.raises(ValueError, match="jobs must be a whole number >= 1"):
        _protocol(tmp_path, FakeTrainer(), jobs=jobs)


def test_jobs_option_is_checked_before_any_work(capsys):
    with pytest.raises(SystemExit):
        protocol.main(["--table", "main", "--jobs", "0"])
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err


def test_the_selection_table_shows_how_far_the_search_went(tmp_path):
    report = _protocol(tmp_path, FakeTrainer()).table("views", methods=["SimCLR"], views=["2"])
    selection = report["variants"]["SimCLR/paper/2"]["selection"]
    rates = [t["lr"] for t in selection["trials"]]
    assert max(rates) > max(selection["lr_grid"])  # the first grid reached a rate the last bracket left out
    rows = [line for line in protocol_reports.format_table(report).splitlines() if line.startswith("| SimCLR/paper/2 | ")]
    assert rows[1].startswith(f"| SimCLR/paper/2 | {len(rates)} runs, lr {min(rates):g}-{max(rates):g} | ")


# ----------------------------------------------------------------------------- data sets and the SupCon rows


def test_supcon_rows_train_labelled_views_on_the_hydra_recipe():
    digits = protocol_spec.DATASETS["digits"]
    spec = protocol_spec.RunSpec("digits", "SupCon/paper/2", 0.15, 0.5, 1e-6, 3, 0, "final")
    cfg = protocol_training.build_config(spec, digits, "/tmp/unused", fit_indices=None)
    hydra = protocol_training.build_config(protocol_spec.RunSpec("digits", "Hydra/paper/2", 0.15, 0.5, 1e-6, 3, 0,
                                                                 "final"), digits, "/tmp/unused", fit_indices=None)
    assert cfg.model.type == "LabelledViews" and dict(cfg.model.loss) == {"type": "SupConLoss", "temperature": 0.5}
    assert cfg.model.backbone == hydra.model.backbone and cfg.model.neck == hydra.model.neck
    assert cfg.train_dataloader.sampler == hydra.train_dataloader.sampler  # the Hydra recipe's class sampler
    # the committed SupCon runs were keyed with the Hydra recipe's digest, which they still get
    assert protocol_spec.recipe_digest("SupCon", digits) == protocol_spec.recipe_digest("Hydra", digits)


def test_fashion_mnist_is_a_protocol_data_set(tmp_path, monkeypatch):
    from test_data_sources import fake_fashion_mnist

    fake_fashion_mnist(str(tmp_path), n_train=30, n_test=20)
    monkeypatch.setenv("RANKSSL_FASHION_MNIST", str(tmp_path))
    fashion = protocol_spec.DATASETS["fashion_mnist"]
    data = fashion.load()
    assert data["train_x"].shape == (30, 1, 28, 28) and data["test_y"].tolist() == [i % 10 for i in range(20)]
    assert 0.0 <= float(data["train_x"].min()) and float(data["train_x"].max()) <= 1.0
    spec = protocol_spec.RunSpec("fashion_mnist", "GroCo/paper/2", 4.5, 4.0, 1e-6, 2, 0, "final")
    cfg = protocol_training.build_config(spec, fashion, "/tmp/unused", fit_indices=None)
    assert cfg.train_dataloader.dataset.type == "FashionMNIST"
    assert cfg.train_dataloader.dataset.data_root == str(tmp_path) == cfg.val_dataloader.dataset.query.data_root
    assert cfg.train_dataloader.dataset.pipeline[0].views[0]["input_size"] == 28  # the Fashion-MNIST recipe's
    assert protocol_spec.recipe_for("groco_smallcnn_1xb256-50e_digits", fashion) == (
        "groco_smallcnn_1xb256-50e_fashion-mnist")


# ----------------------------------------------------------------------------- the published blocks


def _committed(path: str) -> bool:
    """Whether ``path`` is tracked by git (True where the tree is no git checkout, e.g. an unpacked sdist)."""
    result = subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=ROOT, capture_output=True)
    if result.returncode != 0 and b"not a git repository" in result.stderr:
        return True
    return result.returncode == 0


EXPECTED_BLOCKS = {
    "results-digits", "results-two-digits", "results-fashion-mnist",
    "protocol-main", "protocol-views", "protocol-heads", "protocol-multicrop", "protocol-s2r2-views",
    "protocol-two-digits-main", "protocol-two-digits-views", "protocol-two-digits-heads",
    "protocol-two-digits-multicrop", "protocol-two-digits-s2r2-views",
    "protocol-50-main", "protocol-cuda-main", "protocol-cuda-50-main",
    "claims-digits", "claims-protocol-two-digits", "claims-protocol-50", "claims-protocol-cuda-50",
    "protocol-step-costs", "protocol-two-digits-costs",
}


def test_generated_blocks_cover_every_name_and_render_from_the_committed_json():
    blocks = protocol_reports.generated_blocks()
    assert set(blocks) == EXPECTED_BLOCKS
    assert protocol_reports.generated_blocks() == blocks  # deterministic: a re-render is byte-identical
    for name, text in blocks.items():
        assert text.endswith("\n") and "<!--" not in text, name
    # every table block is its committed JSON rendered, and the JSON is committed
    for name, (key, dataset, table) in protocol_reports.TABLE_BLOCKS.items():
        path = os.path.join(protocol_reports.BENCHMARKS, protocol_reports.FOLDERS[key], dataset, f"{table}.json")
        assert _committed(path), path
        with open(path) as handle:
            assert blocks[name] == protocol_reports.format_table(json.load(handle)), name
    for name, (key, dataset) in {**protocol_reports.CLAIMS_BLOCKS, **protocol_reports.COST_BLOCKS}.items():
        runs = os.path.join(protocol_reports.BENCHMARKS, protocol_reports.FOLDERS[key], dataset, "runs")
        assert all(_committed(os.path.join(runs, f)) for f in sorted(os.listdir(runs))[:5]), runs
    assert "| SimCLR | no | 2 |" in blocks["results-digits"] and "| SupCon | yes | 2 |" in blocks["results-two-digits"]
    assert "20 epochs" in blocks["results-digits"] and "3 seeds" in blocks["results-digits"]
    assert "60.8 ± 3.0" in blocks["results-digits"]  # SimCLR's kNN in main.json, tuned, over 3 seeds
    assert blocks["claims-digits"].count("| yes |") >= 1 and "not run yet" not in blocks["claims-digits"]


def test_committed_run_files_are_named_by_their_keys():
    """A run file's name is its RunSpec's key: renaming a field or changing the key rule would orphan them all."""
    for folder in protocol_reports.FOLDERS.values():
        for dataset in ("digits", "two_digits"):
            runs = os.path.join(protocol_reports.BENCHMARKS, folder, dataset, "runs")
            for file in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
                with open(os.path.join(runs, file)) as handle:
                    spec = protocol_spec.RunSpec(**json.load(handle)["spec"])
                assert spec.run_id + ".json" == file, (folder, file)


def test_the_readme_table_of_a_data_set_without_runs_says_how_to_make_them():
    text = protocol_reports.results_table(None, "fashion_mnist", "protocol")
    assert "No protocol run" in text and "--dataset fashion_mnist" in text
