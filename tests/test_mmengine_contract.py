"""mmengine's own registry behaviours, run against rankssl's registries.

Every lookup is also made on a plain mmengine ``Registry`` built the same way (a child
of mmengine's root with its own scope, holding the same class), which is the reference:
rankssl's registries must answer as mmengine's do, and only add a helpful message where
a build fails.
"""

import textwrap

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import OPTIMIZERS as ROOT_OPTIMIZERS
from mmengine.registry import DefaultScope, Registry, build_from_cfg

import rankssl.registry as registry
from rankssl.losses import GroCoLoss
from rankssl.registry import UnknownComponentError

# A plain mmengine registry, a child of the root with its own scope: the reference behaviour.
REFERENCE = Registry("model", parent=ROOT_MODELS, scope="rankssl_contract_ref")
REFERENCE.register_module(name="GroCoLoss", module=GroCoLoss)


def _lookups(scope: str):
    """(key, expected class or None) pairs, written for a registry of scope ``scope``."""
    return [
        ("GroCoLoss", GroCoLoss),
        (f"{scope}.GroCoLoss", GroCoLoss),
        ("NoSuchLoss", None),
        (f"{scope}.NoSuchLoss", None),
        ("GroCoLos", None),
        ("torch.nn.Linear", torch.nn.Linear),
        ("no_such_package.Loss", None),
    ]


@pytest.mark.parametrize("case", range(len(_lookups("x"))))
def test_get_answers_as_a_plain_mmengine_registry(case):
    ours_key, expected = _lookups("rankssl")[case]
    ref_key, ref_expected = _lookups("rankssl_contract_ref")[case]
    assert REFERENCE.get(ref_key) is ref_expected is expected
    assert registry.MODELS.get(ours_key) is expected
    assert (ours_key in registry.MODELS) == (ref_key in REFERENCE) == (expected is not None)


def test_unknown_name_get_returns_none_so_callers_can_fall_back():
    # The OpenMMLab probing idiom: try a registry, fall back when it answers None.
    cls = registry.MODELS.get("NoSuchLoss") or registry.MODELS.get("GroCoLoss")
    assert cls is GroCoLoss
    assert registry.DATASETS.get("NoSuchDataset") is None
    assert ROOT_MODELS.get("rankssl.NoSuchLoss") is None  # through the parent, as well


def test_non_string_key_is_a_type_error_as_in_mmengine():
    with pytest.raises(TypeError):
        REFERENCE.get(3)
    with pytest.raises(TypeError):
        registry.MODELS.get(3)


def test_failed_build_is_a_key_error_with_the_closest_names():
    for build in (
        lambda: registry.MODELS.build(dict(type="GroCoLos")),
        lambda: ROOT_MODELS.build(dict(type="rankssl.GroCoLos")),
        lambda: build_from_cfg(dict(type="GroCoLos"), registry.MODELS),
    ):
        with pytest.raises(KeyError) as info:  # what mmengine raises for an unknown type
            build()
        assert isinstance(info.value, UnknownComponentError)
        assert "Closest registered names: GroCoLoss" in str(info.value)
    with pytest.raises(KeyError):  # the reference, for comparison
        REFERENCE.build(dict(type="GroCoLos"))


@pytest.mark.parametrize("make", [dict, ConfigDict, lambda **kw: Config(kw)], ids=["dict", "ConfigDict", "Config"])
def test_build_from_dict_configdict_and_config(make):
    cfg = make(type="GroCoLoss", n_negatives=3)
    for reg in (registry.MODELS, REFERENCE):
        loss = reg.build(cfg)
        assert isinstance(loss, GroCoLoss) and loss.n_negatives == 3
    assert build_from_cfg(make(type="rankssl.GroCoLoss", n_negatives=2), ROOT_MODELS).n_negatives == 2


def test_default_args_fill_in_like_mmengine():
    loss = registry.MODELS.build(dict(type="GroCoLoss"), default_args=dict(n_negatives=5, steepness=2.0))
    assert (loss.n_negatives, loss.steepness) == (5, 2.0)
    loss = registry.MODELS.build(dict(n_negatives=6), default_args=dict(type="GroCoLoss"))
    assert loss.n_negatives == 6


def test_default_scope_switching():
    with DefaultScope.overwrite_default_scope("rankssl"):
        assert DefaultScope.get_current_instance().scope_name == "rankssl"
        assert isinstance(ROOT_MODELS.build(dict(type="GroCoLoss")), GroCoLoss)
        with ROOT_MODELS.switch_scope_and_registry("rankssl") as reg:
            assert reg is registry.MODELS
        # _scope_ in a config switches for that one build, and back afterwards
        assert isinstance(ROOT_MODELS.build(dict(type="GroCoLoss", _scope_="rankssl_contract_ref")), GroCoLoss)
        assert DefaultScope.get_current_instance().scope_name == "rankssl"
    with DefaultScope.overwrite_default_scope("rankssl_contract_ref"):
        # another scope reaches rankssl's components with the prefix, or with _scope_
        assert isinstance(ROOT_MODELS.build(dict(type="rankssl.GroCoLoss")), GroCoLoss)
        assert isinstance(ROOT_MODELS.build(dict(type="GroCoLoss", _scope_="rankssl")), GroCoLoss)
        with pytest.raises(KeyError):
            ROOT_MODELS.build(dict(type="NoSuchLoss", _scope_="rankssl"))


def test_parent_lookup_reaches_mmengine_root_components():
    assert registry.OPTIMIZERS.get("SGD") is ROOT_OPTIMIZERS.get("SGD") is torch.optim.SGD
    optimizer = registry.OPTIMIZERS.build(dict(type="SGD", params=[torch.zeros(1, requires_grad=True)], lr=0.1))
    assert isinstance(optimizer, torch.optim.SGD)
    # the reverse: mmengine's root does not see rankssl's names without the prefix
    assert ROOT_MODELS.get("GroCoLoss") is None
    assert ROOT_MODELS.get("rankssl.GroCoLoss") is GroCoLoss


@pytest.mark.parametrize("key", ["rankssl.losses.GroCoLoss", "rankssl.losses.groco.GroCoLoss"])
@pytest.mark.parametrize("scope", [None, "rankssl", "mmengine", "rankssl_contract_ref"])
def test_dotted_import_paths_resolve_from_any_scope(key, scope):
    with DefaultScope.overwrite_default_scope(scope):
        assert ROOT_MODELS.get(key) is GroCoLoss
        assert registry.MODELS.get(key) is GroCoLoss
        assert REFERENCE.get(key) is GroCoLoss
        assert ROOT_MODELS.build(dict(type=key, n_negatives=2)).n_negatives == 2


def test_lazy_import_config_builds_rankssl_components(tmp_path):
    (tmp_path / "base_loss.py").write_text(textwrap.dedent("""
        from rankssl.losses import GroCoLoss
        loss = dict(type=GroCoLoss, n_negatives=4)
    """))
    (tmp_path / "model.py").write_text(textwrap.dedent("""
        from mmengine.config import read_base
        with read_base():
            from .base_loss import *
        from rankssl.models import SmallCNN
        backbone = dict(type=SmallCNN, in_channels=1, widths=(8, 16))
    """))
    cfg = Config.fromfile(tmp_path / "model.py")
    assert isinstance(ROOT_MODELS.build(cfg.loss), GroCoLoss)
    backbone = ROOT_MODELS.build(cfg.backbone)
    assert backbone(torch.rand(2, 1, 8, 8)).shape[0] == 2
    # a dumped lazy config names types by import path; it builds from every scope
    cfg.dump(tmp_path / "dumped.py")
    dumped = Config.fromfile(tmp_path / "dumped.py")
    assert dumped.loss.type.startswith("rankssl.losses")
    for scope in (None, "rankssl", "mmengine"):
        with DefaultScope.overwrite_default_scope(scope):
            assert ROOT_MODELS.build(dumped.loss).n_negatives == 4
            assert type(ROOT_MODELS.build(dumped.backbone)).__name__ == "SmallCNN"
