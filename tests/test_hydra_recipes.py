"""Every Hydra recipe runs 2 training iterations and a validation on tiny data; digits feed `rankssl analyze`."""

import copy
import json
import os

import pytest
from mmengine.config import Config

RECIPES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")


def _shrink(cfg: Config, tmp_path, image_size: int, channels: int, real_digits: bool = False) -> Config:
    """Keep the recipe's model, sampler type, evaluators and hooks; make data and schedule tiny."""
    cfg.work_dir = str(tmp_path)
    train_pipeline = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    eval_pipeline = [dict(type="EvalView"), dict(type="PackViews")]
    if image_size != 32:  # ImageNet recipe: same transforms, 64-pixel crops instead of 224
        train_pipeline[0]["views"] = [dict(type="DINOTransform", global_crop_size=image_size, n_local_views=0,
                                           normalize=None)]
    if real_digits:
        train_set = dict(type="DigitsCanvas", split="train", indices=32, pipeline=train_pipeline)
        bank = dict(type="DigitsCanvas", split="train", indices=24, pipeline=eval_pipeline)
        query = dict(type="DigitsCanvas", split="test", indices=12, pipeline=eval_pipeline)
    else:
        fake = dict(type="FakeImageDataset", image_size=image_size, channels=channels, num_classes=4)
        train_set = dict(fake, num_samples=16, pipeline=train_pipeline)
        bank = dict(fake, num_samples=8, pipeline=eval_pipeline)
        query = dict(fake, num_samples=8, seed=1, pipeline=eval_pipeline)
    sampler = dict(cfg.train_dataloader.sampler)
    if sampler["type"] == "MPerClassSampler":
        sampler.update(m=2, batch_size=8, length_before_new_iter=16)
    cfg.train_dataloader = dict(
        batch_size=8, num_workers=0, persistent_workers=False, drop_last=True, sampler=sampler,
        collate_fn=dict(type="default_collate"), dataset=train_set)
    cfg.val_dataloader = dict(
        batch_size=16, num_workers=0, persistent_workers=False, sampler=dict(type="DefaultSampler", shuffle=False),
        collate_fn=dict(type="default_collate"), dataset=dict(type="KNNEvalDataset", bank=bank, query=query))
    cfg.val_evaluator = [e for e in cfg.val_evaluator if e["type"] == "EffectiveRank"] + [
        dict(type="KNNAccuracy", k=3, temperature=0.07)]
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=1, val_interval=1)
    cfg.param_scheduler = None
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=1)
    return cfg


def _train(cfg: Config):
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.mark.slow
def test_digits_recipe_then_analyze(tmp_path):
    from rankssl.mm.analyze import analyze_checkpoint

    cfg = _shrink(Config.fromfile(os.path.join(RECIPES, "hydra_smallcnn_1xb256-50e_digits.py")), tmp_path, 32, 1,
                  real_digits=True)
    runner = _train(cfg)
    assert runner.iter == 2
    scalars = json.load(open(tmp_path / "scalars.json"))
    assert len(scalars["train"]) == 2
    val = scalars["val"][-1]
    assert 1.0 <= val["spectrum/erank"] <= 128 and "knn/top1" in val
    assert (tmp_path / "spectrum.png").exists()
    result = analyze_checkpoint(str(tmp_path / "epoch_1.pth"), str(tmp_path / "analysis"), classes=[0, 1, 2])
    assert result["table"]["gates"].shape == (6, 128)
    assert (tmp_path / "analysis" / "pair_overlap.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, image_size, channels",
    [("hydra_resnet18_1xb512-coslr-200e_cifar10.py", 32, 3), ("hydra_resnet50_32xb32-lars-coslr-1000e_in1k.py", 64, 3)],
)
def test_recipe_smoke(tmp_path, recipe, image_size, channels):
    cfg = Config.fromfile(os.path.join(RECIPES, recipe))
    if "in1k" in recipe:  # the paper's recipe (erow/hydra main_cl.py PAPER_RECIPE): random batches, LARS
        assert cfg.train_dataloader.sampler.type == "DefaultSampler" and cfg.model.neck.out_dim == 256
        assert cfg.model.loss.num_classes == 1000 and cfg.model.get("instance_loss") is None
        assert cfg.optim_wrapper.optimizer.type == "LARS" and cfg.optim_wrapper.optimizer.lr == 0.2
        assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4 and cfg.param_scheduler[0].end == 40
        assert cfg.model.loss.key_views == "other" and cfg.model.loss.reduction == "pair_mean"
        assert cfg.model.loss.pair_draw == "permutation" and cfg.model.loss.temperature == 0.1
        cfg.optim_wrapper.type = "OptimWrapper"  # no AMP on CPU
        cfg.optim_wrapper.pop("loss_scale")
    else:
        assert cfg.train_dataloader.sampler.type == "MPerClassSampler"
    runner = _train(_shrink(cfg, tmp_path, image_size, channels))
    assert runner.iter == 2
    assert "spectrum/erank" in json.load(open(tmp_path / "scalars.json"))["val"][-1]


@pytest.mark.parametrize("recipe", ["hydra_smallcnn_1xb256-50e_digits", "hydra_smallcnn_1xb256-50e_two-digits"])
def test_protocol_recipes_keep_what_their_committed_runs_trained(recipe):
    """The protocol tables were trained with these recipes when HydraLoss's defaults were rankssl's variant
    and the head had 2 layers: the recipes spell those options out, and their digests map to the runs'."""
    import hashlib
    import sys

    from rankssl.losses.hydra import RANKSSL_VARIANT, SIMLAP_SETTINGS

    sys.path.insert(0, os.path.join(os.path.dirname(RECIPES), "benchmarks"))
    from protocol_spec import DATASETS, RECIPE_DIGEST_ALIASES, recipe_digest

    path = os.path.join(RECIPES, recipe + ".py")
    cfg = Config.fromfile(path)
    assert cfg.model.neck.num_layers == 2
    expected = RANKSSL_VARIANT if recipe.endswith("_digits") else SIMLAP_SETTINGS
    assert {key: cfg.model.loss[key] for key in expected} == expected
    digest = hashlib.sha1(open(path, "rb").read()).hexdigest()[:8]
    assert digest in RECIPE_DIGEST_ALIASES, "recipe edited: decide whether its committed protocol runs still hold"
    dataset = DATASETS["digits" if recipe.endswith("_digits") else "two_digits"]
    assert recipe_digest("Hydra", dataset) == RECIPE_DIGEST_ALIASES[digest]
