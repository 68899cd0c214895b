"""rankssl inside mmpretrain: DataSample labels, OpenMMLab necks, RankSSLHead in mmpretrain's
self-supervisors, and every recipe under mmpretrain's tools/train.py defaults."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re

import numpy as np
import pytest
import torch

mmpretrain = pytest.importorskip("mmpretrain")

from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

from rankssl.recipes import find_recipe, list_recipes  # noqa: E402
from rankssl.registry import MODELS  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "mmpretrain_groco_resnet18_folder.py")


def _samples(labels):
    return [DataSample().set_gt_label(int(label)) for label in labels]


def _views(num_views=2, batch=8):
    torch.manual_seed(0)
    return torch.rand(num_views, batch, 1, 16, 16)


@pytest.mark.parametrize("algorithm", [
    dict(type="Hydra", num_classes=4, neck=dict(type="HydraProjectionHead", hidden_dim=16, out_dim=8),
         loss=dict(type="HydraLoss", seed=0)),
    dict(type="LabelledViews", neck=dict(type="MLPHead", hidden_dim=16, out_dim=8)),
])
def test_label_algorithms_read_mmpretrain_data_samples(algorithm):
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])

    def build():
        torch.manual_seed(0)
        return MODELS.build(dict(algorithm, backbone=dict(type="SmallCNN", in_channels=1, widths=(4, 8))))

    from_dict = build()([_views()], dict(label=labels), mode="loss")["loss"]
    model = build()
    from_samples = model([_views()], _samples(labels), mode="loss")["loss"]
    assert torch.isfinite(from_dict)
    torch.testing.assert_close(from_samples, from_dict)
    with pytest.raises(ValueError, match="data sample 0"):
        model([_views()], [DataSample() for _ in labels], mode="loss")


def test_predict_mode_passes_mmpretrain_labels_on():
    model = MODELS.build(dict(type="GroCo", backbone=dict(type="SmallCNN", in_channels=1, widths=(4, 8)),
                              neck=dict(type="GroCoProjectionHead", hidden_dim=16, out_dim=8)))
    out = model([_views(1)[0]], _samples(range(8)), mode="predict")
    assert [int(o["label"]) for o in out] == list(range(8))


def test_algorithms_accept_mmpretrain_necks():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type="GroCo", backbone=dict(type="SmallCNN", in_channels=1, widths=(4, 8)),
        neck=dict(type="mmpretrain.NonLinearNeck", in_channels=8, hid_channels=16, out_channels=8,
                  num_layers=2, norm_cfg=dict(type="BN1d")),
        loss=dict(type="GroCoLoss", n_negatives=3)))
    assert model.neck_takes_tuple
    views = _views()
    projections = model([views], mode="tensor")
    features = model.extract_feat(views.flatten(0, 1))
    expected = model.neck((features[:, :, None, None],))[0]  # NonLinearNeck's own convention
    torch.testing.assert_close(torch.cat(projections), expected)
    loss = model([views], mode="loss")["loss"]
    loss.backward()
    assert torch.isfinite(loss) and model.neck.fc0.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="neck_input"):
        MODELS.build(dict(type="GroCo", backbone=dict(type="SmallCNN", in_channels=1), neck_input="maps"))


def test_rankssl_head_equals_the_loss_and_reads_labels():
    head = MODELS.build(dict(type="RankSSLHead", loss=dict(type="GroCoLoss", n_negatives=3)))
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    torch.testing.assert_close(head.loss(z1, z2), head.loss_module(z1, z2))
    def hydra():
        torch.manual_seed(0)
        return MODELS.build(dict(type="RankSSLHead", loss=dict(type="HydraLoss", num_classes=4, dim=16, seed=0)))

    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    expected = hydra().loss_module([z1, z2], labels)
    torch.testing.assert_close(hydra().loss(z1, z2, data_samples=_samples(labels)), expected)
    with pytest.raises(ValueError, match="view 1"):
        head.loss(z1, torch.randn(8, 16, 1))


def _image_folder(root, count=8, size=40):
    from PIL import Image

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "sub"), exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            os.path.join(root, "sub" if i % 2 else "", f"img{i}.png"))
    return str(root)


def _tiny(cfg, work_dir, data_root):
    cfg.model.backbone.update(depth=18, stem_channels=8, base_channels=8)  # 64 output channels
    cfg.model.neck.update(in_channels=64, hid_channels=32, out_channels=32)
    cfg.model.head.loss.update(n_negatives=3)
    pipeline = cfg.train_dataloader.dataset.pipeline
    view = pipeline[1]["transforms"][0]
    view[0]["scale"] = 32
    if int(np.__version__.split(".")[0]) >= 2:
        # mmcv-lite 2.2.0's adjust_hue fails under NumPy 2 (the `mmpretrain` extra pins NumPy < 2).
        view[2]["transforms"][0]["hue"] = 0.0
    cfg.train_dataloader.update(batch_size=4, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=2)
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 1000
    cfg.work_dir = work_dir
    return cfg


@pytest.mark.slow
def test_example_config_trains_groco_inside_mmpretrain_barlowtwins(tmp_path):
    cfg = _tiny(Config.fromfile(EXAMPLE), str(tmp_path / "work"), _image_folder(tmp_path / "images"))
    runner = Runner.from_cfg(cfg)
    before = runner.model.backbone.conv1.weight.detach().clone()
    runner.train()
    assert type(runner.model).__name__ == "BarlowTwins"
    assert type(runner.model.head.loss_module).__name__ == "GroCoLoss"
    assert not torch.equal(before, runner.model.backbone.conv1.weight)
    loss = runner.message_hub.get_scalar("train/loss").current()
    assert np.isfinite(loss) and loss > 0


@pytest.mark.slow
def test_multi_view_self_supervisor_gives_every_view_and_labels_to_the_head():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type="rankssl.MultiViewSelfSupervisor",
        backbone=dict(type="mmpretrain.ResNet", depth=18, stem_channels=8, base_channels=8),
        neck=dict(type="mmpretrain.NonLinearNeck", in_channels=64, hid_channels=16, out_channels=8,
                  norm_cfg=dict(type="BN1d")),
        head=dict(type="rankssl.RankSSLHead", loss=dict(type="rankssl.HydraLoss", num_classes=2, dim=8, seed=0))))
    from mmpretrain.models.selfsup.base import BaseSelfSupervisor

    assert isinstance(model, BaseSelfSupervisor)
    labels = [0, 1, 0, 1]
    data = dict(inputs=[torch.rand(4, 3, 32, 32) * 255 for _ in range(3)] + [torch.rand(4, 3, 16, 16) * 255],
                data_samples=_samples(labels))
    seen = {}
    original = model.head.loss_module.forward
    model.head.loss_module.forward = lambda views, lab: seen.update(n=len(views), labels=lab) or original(views, lab)
    loss = model.train_step(data, _optim_wrapper(model))["loss"]
    assert seen["n"] == 4 and seen["labels"].tolist() == labels and torch.isfinite(loss)


def _optim_wrapper(model):
    from mmengine.optim import OptimWrapper

    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))


def _mmpretrain_train_tool():
    path = os.path.join(os.path.dirname(mmpretrain.__file__), ".mim", "tools", "train.py")
    if not os.path.isfile(path):
        pytest.skip("mmpretrain's tools/train.py is not installed with this mmpretrain")
    spec = importlib.util.spec_from_file_location("mmpretrain_tools_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_py_args(config):
    return argparse.Namespace(config=config, work_dir=None, resume=None, amp=False, no_validate=False,
                              auto_scale_lr=False, no_pin_memory=False, no_persistent_workers=False,
                              cfg_options=None, launcher="none", local_rank=0)


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_takes_mmpretrain_train_py_defaults(name):
    tool = _mmpretrain_train_tool()
    path = find_recipe(name)
    cfg = tool.merge_args(Config.fromfile(path), _train_py_args(path))
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(key)
        if loader:
            assert not (loader.get("persistent_workers") and loader.get("num_workers", 0) == 0), (name, key)
    gpus, batch = map(int, re.search(r"_(\d+)xb(\d+)", name).groups())
    assert cfg.auto_scale_lr == dict(base_batch_size=gpus * batch, enable=False), name
    assert cfg.train_dataloader.batch_size * gpus == gpus * batch


@pytest.mark.slow
def test_digits_recipe_trains_under_mmpretrain_train_py(tmp_path):
    from _mm_helpers import tiny_digits_recipe

    tool = _mmpretrain_train_tool()
    path = tiny_digits_recipe(tmp_path, max_epochs=1)
    args = _train_py_args(path)
    args.work_dir = str(tmp_path / "work")
    args.auto_scale_lr = True  # needs the recipe's auto_scale_lr
    cfg = tool.merge_args(Config.fromfile(path), args)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 4
    # batch 12 instead of the recipe's 256: mmengine scaled the learning rate by 12 / 256
    lr = Config.fromfile(find_recipe("groco_smallcnn_1xb256-50e_digits")).lr
    assert runner.optim_wrapper.optimizer.param_groups[0]["initial_lr"] == pytest.approx(lr * 12 / 256)


def test_mmpretrain_extra_pins_a_numpy_that_runs_mmpretrains_color_jitter():
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    extra = re.search(r"^mmpretrain = \[(.*)\]", text, re.M).group(1)
    assert '"numpy>=1.23,<2"' in extra
    from mmpretrain.registry import TRANSFORMS

    import mmpretrain.datasets  # noqa: F401  (registers the transforms)

    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmpretrain"):
        jitter = TRANSFORMS.build(dict(type="ColorJitter", brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1))
    img = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    if int(np.__version__.split(".")[0]) >= 2:
        with pytest.raises(OverflowError):  # why the extra pins NumPy < 2
            for _ in range(50):
                jitter(dict(img=img))
    else:
        for _ in range(50):
            assert jitter(dict(img=img))["img"].shape == img.shape


@pytest.mark.slow
def test_hydra_trains_on_mmpretrains_packed_batch_with_its_data_preprocessor():
    """mmpretrain's PackInputs + default_collate batch: inputs a list of V uint8 (B, C, H, W) views,
    data_samples a list of DataSample; mmpretrain's SelfSupDataPreprocessor normalises."""
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type="Hydra", num_classes=2, backbone=dict(type="mmpretrain.ResNet", depth=18, stem_channels=8,
                                                   base_channels=8),
        neck=dict(type="HydraProjectionHead", in_dim=64, hidden_dim=16, out_dim=8),
        loss=dict(type="HydraLoss", seed=0),
        data_preprocessor=dict(type="mmpretrain.SelfSupDataPreprocessor", mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True)))
    images = [torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8) for _ in range(2)]
    data = dict(inputs=images, data_samples=_samples([0, 1, 0, 1]))
    before = model.backbone.conv1.weight.detach().clone()
    loss = model.train_step(data, _optim_wrapper(model))["loss"]
    assert torch.isfinite(loss) and not torch.equal(before, model.backbone.conv1.weight)
