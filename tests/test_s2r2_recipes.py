"""S2R2 in mmengine: the algorithm builds from the registry and the recipes carry their views.

Training every recipe for 2 iterations (S2R2's included) is tests/test_recipes.py's job."""

import os

import torch
from mmengine.config import Config

from rankssl.recipes import RECIPES_DIR, list_recipes

S2R2_RECIPES = [
    ("s2r2_smallcnn_1xb256-4v-50e_digits", 4),
    ("s2r2_resnet18_1xb256-4x96-12x48-coslr-200e_stl10", 16),
    ("s2r2_resnet18_1xb128-4x224-12x96-coslr-200e_coco-folder", 16),
]


def test_recipes_are_listed_with_their_views():
    names = list_recipes()
    for name, num_views in S2R2_RECIPES:
        assert name in names
        cfg = Config.fromfile(os.path.join(RECIPES_DIR, name + ".py"))
        assert cfg.model.type == "S2R2" and cfg.model.loss.type == "S2R2Loss"
        views = cfg.train_dataloader.dataset.pipeline[0]["views"]
        assert sum(v.get("num_views", 1) for v in views) == num_views


def test_algorithm_from_registry_matches_the_lightly_loss():
    from rankssl.losses import S2R2Loss
    from rankssl.registry import MODELS

    model = MODELS.build(dict(type="S2R2", backbone=dict(type="SmallCNN", in_channels=1),
                              neck=dict(type="MLPHead", hidden_dim=32, out_dim=16)))
    assert isinstance(model.loss_module, S2R2Loss)
    groups = [torch.rand(4, 6, 1, 32, 32), torch.rand(6, 6, 1, 16, 16)]  # multi-crop: 4 global + 6 local
    projections = model(groups, mode="tensor")
    assert len(projections) == 10
    torch.testing.assert_close(model(groups, mode="loss")["loss"], S2R2Loss()(projections))
