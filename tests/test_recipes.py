"""Every shipped recipe builds and trains 2 iterations (+ kNN validation) on tiny fake data."""

import json
import os
import subprocess
import sys

import pytest
from mmengine.config import Config

from _mm_helpers import shrink
from rankssl.recipes import RECIPES_DIR, find_recipe, list_recipes

# Keep ResNet-50 recipes fast: their pipelines are shrunk to 16-pixel crops.


def test_recipe_names_follow_openmmlab_and_resolve():
    names = list_recipes()
    for needed in ("groco_smallcnn_1xb256-50e_digits", "simclr_smallcnn_1xb256-50e_digits",
                   "groco_resnet18_1xb256-coslr-200e_cifar10", "simclr_resnet18_1xb256-coslr-200e_cifar10",
                   "groco_resnet50_32xb32-coslr-100e_in1k", "groco_resnet50_32xb32-coslr-100e_in1k-4x224",
                   "groco_resnet50_32xb32-coslr-100e_in1k-2x224-6x96"):
        assert needed in names
    assert find_recipe("groco_smallcnn_1xb256-50e_digits.py") == find_recipe("groco_smallcnn_1xb256-50e_digits")
    with pytest.raises(FileNotFoundError, match="groco_smallcnn_1xb256-50e_digits"):
        find_recipe("groco_smallcnn_digits")


def test_paper_settings_in_imagenet_recipes():
    cfg = Config.fromfile(find_recipe("groco_resnet50_32xb32-coslr-100e_in1k-2x224-6x96"))
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(24.0)
    assert cfg.optim_wrapper.optimizer.momentum == 0.9 and cfg.optim_wrapper.optimizer.weight_decay == 1e-6
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.sync_bn == "torch"
    assert cfg.model.neck == dict(type="GroCoProjectionHead", hidden_dim=2048, out_dim=2048)
    assert cfg.model.loss.n_positive_views == 2 and cfg.model.loss.n_negatives == 10
    assert cfg.val_evaluator == dict(type="KNNAccuracy", k=20, temperature=0.07)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_recipes())
def test_recipe_trains_two_iterations(name, tmp_path):
    from rankssl.cli import build_runner
    from rankssl.run_config import cpu_fallbacks

    cfg = Config.fromfile(os.path.join(RECIPES_DIR, name + ".py"))
    shrink(cfg, str(tmp_path))
    cpu_fallbacks(cfg)
    runner = build_runner(cfg)
    runner.train()
    assert runner.iter == 2
    with open(tmp_path / "scalars.json") as f:
        scalars = json.load(f)
    assert len(scalars["train"]) == 2 and all(r["loss"] == r["loss"] for r in scalars["train"])
    if cfg.model.type == "S2R2":  # 1 - mean AP
        assert all(0.0 <= r["loss"] <= 1.0 for r in scalars["train"])
    assert (tmp_path / "loss.png").exists()
    if cfg.get("val_cfg") is not None:  # recipes for unlabelled images have no validation
        assert "knn/top1" in scalars["val"][-1]
        assert (tmp_path / "metrics.png").exists()


@pytest.mark.slow
def test_recipe_runs_through_plain_mmengine_runner(tmp_path):
    """No rankssl import in the process: mmengine finds rankssl through default_scope."""
    code = f"""
from mmengine.config import Config
from mmengine.runner import Runner
cfg = Config.fromfile({find_recipe('groco_smallcnn_1xb256-50e_digits')!r})
cfg.work_dir = {str(tmp_path)!r}
cfg.train_dataloader.batch_size = 12
cfg.train_dataloader.dataset.indices = 24
cfg.val_dataloader.dataset.bank.indices = 40
cfg.val_dataloader.dataset.query.indices = 20
cfg.train_cfg.max_epochs = 1
cfg.train_cfg.val_interval = 1
runner = Runner.from_cfg(cfg)
runner.train()
import sys
assert 'rankssl.mm.algorithms' in sys.modules
print('ITER', runner.iter)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ITER 2" in proc.stdout
