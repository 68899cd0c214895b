"""rankssl.registry: scope, lazy locations, prefixes, mmpretrain composition, error messages."""

import subprocess
import sys

import pytest
import torch
from mmengine.registry import DATASETS as ROOT_DATASETS
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope

import rankssl.registry as registry
from rankssl.registry import UnknownComponentError


def test_registries_are_rankssl_children_of_mmengine_roots():
    assert registry.MODELS.scope == "rankssl"
    assert registry.MODELS.parent is ROOT_MODELS
    assert registry.DATASETS.parent is ROOT_DATASETS
    assert ROOT_MODELS._children["rankssl"] is registry.MODELS


def test_registry_import_is_lazy():
    code = ("import sys, rankssl, rankssl.registry; "
            "heavy = [m for m in ('rankssl.mm.algorithms', 'lightly', 'pytorch_metric_learning') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_rankssl_does_not_import_hosts():
    code = ("import sys, rankssl; "
            "print([m for m in ('mmengine', 'lightly', 'pytorch_metric_learning') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_prefix_builds_without_default_scope():
    from rankssl.losses import GroCoLoss

    loss = ROOT_MODELS.build(dict(type="rankssl.GroCoLoss", n_negatives=4))
    assert isinstance(loss, GroCoLoss) and loss.n_negatives == 4


def test_default_scope_builds_nested_components():
    with DefaultScope.overwrite_default_scope("rankssl"):
        model = ROOT_MODELS.build(dict(
            type="GroCo", backbone=dict(type="SmallCNN", in_channels=1, widths=(8, 16)),
            neck=dict(type="GroCoProjectionHead", hidden_dim=16, out_dim=8),
            loss=dict(type="GroCoLoss", n_negatives=3)))
    assert model.neck.layers[0].in_features == 16  # in_dim filled from backbone.out_dim
    loss = model([torch.rand(2, 6, 1, 16, 16)], mode="loss")["loss"]
    assert torch.isfinite(loss)


def test_lightly_ntxent_is_registered():
    from lightly.loss import NTXentLoss

    assert isinstance(ROOT_MODELS.build(dict(type="rankssl.NTXentLoss")), NTXentLoss)


def test_unknown_type_names_registry_scope_and_close_names():
    with DefaultScope.overwrite_default_scope("rankssl"):
        with pytest.raises(UnknownComponentError) as info:
            ROOT_MODELS.build(dict(type="GroCoLos", n_negatives=4))
    message = str(info.value)
    assert "rankssl::model" in message and "'GroCoLos'" in message
    assert "Closest registered names: GroCoLoss" in message
    assert isinstance(info.value, KeyError)  # what mmengine callers catch


def test_unknown_dataset_suggests_close_name():
    with pytest.raises(KeyError, match="DigitsCanvas"):
        registry.DATASETS.build(dict(type="DigitCanvas"))


def test_contains_still_answers_false():
    assert "GroCoLoss" in registry.MODELS
    assert "NoSuchThing" not in registry.MODELS


def test_wrong_parameter_names_component_and_parameter():
    with pytest.raises(TypeError, match=r"GroCoLoss.*n_negative"):
        ROOT_MODELS.build(dict(type="rankssl.GroCoLoss", n_negative=4))
    # nested: the algorithm's loss config has a bad parameter
    with DefaultScope.overwrite_default_scope("rankssl"):
        with pytest.raises(TypeError, match=r"GroCoLoss.*temperature"):
            ROOT_MODELS.build(dict(type="GroCo", backbone=dict(type="SmallCNN"),
                                   loss=dict(type="GroCoLoss", temperature=0.1)))


def test_mmpretrain_backbone_and_neck_compose_with_rankssl_loss():
    pytest.importorskip("mmpretrain")
    with DefaultScope.overwrite_default_scope("rankssl"):
        model = ROOT_MODELS.build(dict(
            type="GroCo",
            backbone=dict(type="mmpretrain.ResNet", depth=18, out_indices=(3,)),
            pool=dict(type="mmpretrain.GlobalAveragePooling"),
            neck=dict(type="GroCoProjectionHead", in_dim=512, hidden_dim=32, out_dim=16),
            loss=dict(type="rankssl.GroCoLoss", n_negatives=3)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = {"inputs": [torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)],
             "data_samples": {"label": torch.arange(4)}}
    from mmengine.optim import OptimWrapper

    wrapper = OptimWrapper(optimizer)
    for _ in range(2):
        log = model.train_step(batch, wrapper)
        assert torch.isfinite(log["loss"])
