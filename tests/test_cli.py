"""The rankssl command: recipes, list, train/test, resume, errors, distributed CPU training."""

import json
import os
import subprocess
import sys

import pytest

from rankssl.cli import main
from rankssl.recipes import find_recipe

from _mm_helpers import tiny_digits_recipe

DIGITS = find_recipe("groco_smallcnn_1xb256-50e_digits")


def _tiny_recipe(tmp_path, extra: str = "", name: str = "tiny.py") -> str:
    return tiny_digits_recipe(tmp_path, extra, name)


def test_recipes_and_list_commands(capsys):
    assert main(["recipes"]) == 0
    assert "groco_resnet50_32xb32-coslr-100e_in1k-2x224-6x96" in capsys.readouterr().out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line for line in out.splitlines() if line.strip() and len(line.split()) > 2}
    assert rows["GroCoLoss"].startswith("model") and "lightly, pml, mmengine" in rows["GroCoLoss"]
    for name, kind in [("GroCo", "model"), ("SimCLR", "model"), ("KNNAccuracy", "metric"),
                       ("DigitsCanvas", "dataset"), ("MultiView", "transform"), ("CurvesHook", "hook"),
                       ("MPerClassSampler", "data sampler"), ("CPUDistributedDataParallel", "model_wrapper")]:
        assert name in out and kind in out


def test_python_dash_m_works():
    proc = subprocess.run([sys.executable, "-m", "rankssl", "recipes"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "simclr_smallcnn_1xb256-50e_digits" in proc.stdout


def test_version(capsys):
    from rankssl import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"rankssl {__version__}"


def test_help_and_recipes_answer_without_importing_torch_or_mmengine():
    code = ("import sys, contextlib, io\n"
            "from rankssl.cli import main\n"
            "for argv in (['--help'], ['train', '--help'], ['recipes']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        try:\n"
            "            main(argv)\n"
            "        except SystemExit:\n"
            "            pass\n"
            "    print(out.getvalue())\n"
            "print('loaded:', [m for m in ('torch', 'mmengine') if m in sys.modules])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "loaded: []" in proc.stdout
    assert "groco_smallcnn_1xb256-50e_digits" in proc.stdout and "--epochs" in proc.stdout
    for markup in ("``", ":class:", ":func:", ":mod:"):  # plain text, not reStructuredText
        assert markup not in proc.stdout.split("loaded:")[0], markup


def test_epochs_override_stretches_the_schedule():
    from rankssl.run_config import load_config, parse_cfg_options

    for options in (["train_cfg.max_epochs=20"],):
        cfg = load_config(DIGITS, None, parse_cfg_options(options))
        warmup, cosine = cfg.param_scheduler
        assert cfg.train_cfg.max_epochs == 20
        assert (warmup["begin"], warmup["end"]) == (0, 5)
        assert (cosine["begin"], cosine["end"], cosine["T_max"]) == (5, 20, 15)
    untouched = load_config(DIGITS, None, parse_cfg_options(["optim_wrapper.optimizer.lr=0.1"]))
    assert untouched.param_scheduler[-1]["end"] == untouched.train_cfg.max_epochs == 50


def test_max_epochs_override_warns_when_the_schedule_is_not_the_recipes_length(tmp_path):
    from rankssl.run_config import load_config, parse_cfg_options

    recipe = _tiny_recipe(tmp_path)  # 2 epochs, but the inherited schedule ends at epoch 50
    with pytest.warns(UserWarning, match=r"max_epochs=4 but the learning-rate schedule ends at epoch 50.*--epochs 4"):
        cfg = load_config(recipe, None, parse_cfg_options(["train_cfg.max_epochs=4"]))
    assert cfg.param_scheduler[-1]["end"] == 50


@pytest.mark.slow
def test_train_prints_progress_and_keeps_the_config_in_the_log(tmp_path, capsys):
    recipe = _tiny_recipe(tmp_path)
    work_dir = str(tmp_path / "w")
    assert main(["train", recipe, "--work-dir", work_dir, "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("[tiny] epoch")]
    assert progress[0].startswith("[tiny] epoch 1/3  iter 1/12") and all("ETA" in line for line in progress)
    assert progress[-1].startswith("[tiny] epoch 3/3  iter 12/12 (100%)")
    assert "validation after epoch 3: knn/top1" in out
    assert "Config:" not in out and "System environment" not in out
    (log,) = [os.path.join(root, f) for root, _, files in os.walk(work_dir) for f in files if f.endswith(".log")]
    with open(log) as f:
        text = f.read()
    assert "Config:" in text and "System environment" in text
    # --epochs 3 stretched the cosine to end with the run: the last learning rate is a small
    # fraction of the peak (the recipe's own schedule would still be warming up at epoch 3 of 50).
    lrs = _lrs_by_iter(work_dir)
    assert max(lrs.values()) == pytest.approx(4.5)
    assert lrs[12] < 0.2 * 4.5


def test_unknown_recipe_name_suggests():
    with pytest.raises(FileNotFoundError, match="Did you mean: groco_smallcnn_1xb256-50e_digits"):
        main(["train", "groco_smallcnn_1xb256_50e_digits"])


def test_recipe_with_unknown_type_fails_clearly(tmp_path):
    recipe = _tiny_recipe(tmp_path, "model = dict(loss=dict(type='GroCoLos'))\n")
    with pytest.raises(KeyError) as info:
        main(["train", recipe, "--work-dir", str(tmp_path / "w")])
    assert "rankssl::model" in str(info.value) and "GroCoLoss" in str(info.value)


def test_recipe_with_wrong_parameter_names_it(tmp_path):
    recipe = _tiny_recipe(tmp_path, "model = dict(backbone=dict(depth=3))\n")
    with pytest.raises(TypeError, match=r"SmallCNN.*depth"):
        main(["train", recipe, "--work-dir", str(tmp_path / "w")])


def _lrs_by_iter(work_dir):
    with open(os.path.join(work_dir, "scalars.json")) as f:
        return {r["iter"]: r["lr"] for r in json.load(f)["train"]}


@pytest.mark.slow
def test_resume_continues_iterations_and_lr_schedule(tmp_path):
    recipe = _tiny_recipe(tmp_path)
    ref, run = str(tmp_path / "ref"), str(tmp_path / "run")
    main(["train", recipe, "--work-dir", ref, "--cfg-options", "train_cfg.max_epochs=4"])
    # stopped after 2 epochs, then resumed to 4: the LR schedule does not depend on max_epochs
    main(["train", recipe, "--work-dir", run])
    assert os.path.isfile(os.path.join(run, "epoch_2.pth"))
    main(["train", recipe, "--work-dir", run, "--resume", "--cfg-options", "train_cfg.max_epochs=4"])
    expected, got = _lrs_by_iter(ref), _lrs_by_iter(run)
    assert sorted(got) == sorted(expected) == list(range(1, 17))
    for it in expected:
        assert got[it] == pytest.approx(expected[it], rel=1e-9), it
    with open(os.path.join(run, "last_checkpoint")) as f:
        assert f.read().strip().endswith("epoch_4.pth")
    # evaluation of the checkpoint with kNN (two protocols) and a linear probe
    proc = subprocess.run([sys.executable, "-m", "rankssl", "test", recipe, os.path.join(run, "epoch_4.pth"),
                           "--work-dir", str(tmp_path / "test")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for key in ("knn/top1", "knn200/top1", "linear/top1"):
        assert key in proc.stdout


def test_torch_load_stays_weights_only_for_mmengine_checkpoints(tmp_path):
    import torch
    from mmengine.logging import HistoryBuffer

    from rankssl.mm.checkpoint import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    buf = HistoryBuffer()
    buf.update(1.5)
    torch.save({"message_hub": {"log_scalars": {"loss": buf}}}, tmp_path / "c.pth")
    loaded = torch.load(tmp_path / "c.pth", weights_only=True)
    assert loaded["message_hub"]["log_scalars"]["loss"].current() == 1.5

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|not an allowed"):
        torch.load(tmp_path / "evil.pth")


DIST_EXTRA = """
# Deterministic and batch-independent: identical views, no BatchNorm, no shuffling, so one
# process with a global batch of 24 and two processes with 12 each see the same data.
model = dict(
    backbone=dict(norm='none'),
    neck=dict(_delete_=True, type='MLPHead', hidden_dim=32, out_dim=16, batch_norm=False),
    loss=dict(gather_distributed=True))
train_dataloader = dict(
    batch_size={batch}, sampler=dict(shuffle=False),
    dataset=dict(indices=48, pipeline=[dict(type='MultiView', views=[dict(type='ToTensor', num_views=2)]),
                           dict(type='PackViews')]))
custom_hooks = [dict(type='CurvesHook', all_ranks=True), dict(type='FlushDenormalHook')]
train_cfg = dict(max_epochs=1, val_interval=1)
"""


@pytest.mark.slow
@pytest.mark.dist
def test_torchrun_two_cpu_processes_match_single_process(tmp_path):
    single = _tiny_recipe(tmp_path, DIST_EXTRA.format(batch=24), "single.py")
    double = _tiny_recipe(tmp_path, DIST_EXTRA.format(batch=12), "double.py")
    main(["train", single, "--work-dir", str(tmp_path / "single")])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    from dist_utils import _free_port
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "-m", "rankssl", "train", double, "--work-dir", str(tmp_path / "double"), "--launcher", "pytorch"],
        capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(tmp_path / "single" / "scalars.json") as f:
        ref = [r["loss"] for r in json.load(f)["train"]]
    ranks = []
    for r in range(2):
        with open(tmp_path / "double" / f"scalars_rank{r}.json") as f:
            ranks.append([rec["loss"] for rec in json.load(f)["train"]])
    assert len(ref) == len(ranks[0]) == len(ranks[1]) == 2
    for it in range(2):  # iteration 2 also checks that the DDP update equals the single-process one
        assert (ranks[0][it] + ranks[1][it]) / 2 == pytest.approx(ref[it], rel=1e-4, abs=1e-6)


def test_demo_results_tool_is_repository_tooling_loaded_from_the_checkout(tmp_path):
    """`--write-results` imports benchmarks/demo_results.py from the checkout it writes into; the
    installed package has no copy of it."""
    import importlib.util

    from rankssl.demo import find_checkout, load_results_tool
    from rankssl.errors import CommandError

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert find_checkout(root) == root
    tool = load_results_tool(root)
    assert tool.__file__ == os.path.join(root, "benchmarks", "demo_results.py") and callable(tool.write)
    assert importlib.util.find_spec("rankssl.demo_results") is None
    with pytest.raises(CommandError, match="source checkout"):
        find_checkout(str(tmp_path))


@pytest.mark.slow
def test_demo_trains_both_methods_then_prints_the_knn_table(tmp_path):
    """The README's first command (`make demo` = `rankssl demo`), one epoch per method: training
    progress, then the table with both methods and the two baselines."""
    proc = subprocess.run(
        [sys.executable, "-m", "rankssl", "demo", "--epochs", "1", "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "[GroCo] epoch 1/1" in out and "[SimCLR] epoch 1/1" in out  # visible progress
    table = out[out.index("method ") :]
    rows = {line[:32].strip(): line[32:].split() for line in table.splitlines()[1:5]}
    assert set(rows) == {"GroCo", "SimCLR (lightly NTXentLoss)", "raw pixels (no training)",
                         "random init (no training)"}, table
    for method in ("GroCo", "SimCLR (lightly NTXentLoss)"):
        assert 10.0 < float(rows[method][0]) <= 100.0 and rows[method][1] == "1", table  # kNN %, epochs
    assert float(rows["raw pixels (no training)"][0]) == pytest.approx(41.1, abs=0.05)  # no training involved
    for recipe in ("groco_smallcnn_1xb256-50e_digits", "simclr_smallcnn_1xb256-50e_digits"):
        for name in ("epoch_1.pth", "last_checkpoint", "scalars.json", "loss.png"):
            assert os.path.isfile(os.path.join(tmp_path, recipe, name)), (recipe, name)
