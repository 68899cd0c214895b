"""Shrink recipes to tiny fake data for fast tests."""

from __future__ import annotations

import copy
import textwrap


def tiny_digits_recipe(tmp_path, extra: str = "", name: str = "tiny.py", *, max_epochs: int = 2,
                       checkpoint_interval: int = 1, max_keep_ckpts: int = 5) -> str:
    """A recipe file inheriting the shipped digits recipe, shrunk to 4 iterations per epoch
    (48 training images, batch 12, narrow network); ``extra`` is appended config text."""
    from rankssl.recipes import find_recipe

    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""
        _base_ = {find_recipe("groco_smallcnn_1xb256-50e_digits")!r}
        model = dict(backbone=dict(widths=(8, 16)), neck=dict(hidden_dim=32, out_dim=16))
        train_dataloader = dict(batch_size=12, dataset=dict(indices=48))
        val_dataloader = dict(dataset=dict(bank=dict(indices=60), query=dict(indices=30)))
        test_dataloader = val_dataloader
        default_hooks = dict(logger=dict(interval=1),
                             checkpoint=dict(interval={checkpoint_interval}, max_keep_ckpts={max_keep_ckpts}))
        train_cfg = dict(max_epochs={max_epochs}, val_interval=1)
    """) + textwrap.dedent(extra))
    return str(path)

_SIZE_KEYS = {"input_size": 16, "global_crop_size": 16, "local_crop_size": 8, "resize": 18, "crop_size": 16}


def _shrink_sizes(node):
    if isinstance(node, dict):
        return {k: (_SIZE_KEYS[k] if k in _SIZE_KEYS and isinstance(v, int) else _shrink_sizes(v))
                for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_shrink_sizes(v) for v in node)
    return node


def shrink(cfg, work_dir: str, batch_size: int = 12, num_samples: int = 24) -> None:
    """Replace a recipe's data by tiny fake images (keeping its pipelines), 1 epoch = 2 iterations."""
    channels = len(cfg.model.data_preprocessor.get("mean") or [3, 3, 3])
    train_pipe = _shrink_sizes(copy.deepcopy(cfg.train_dataloader.dataset.pipeline))
    has_val = cfg.get("val_dataloader") is not None  # recipes for unlabelled images have none
    eval_pipe = _shrink_sizes(copy.deepcopy(cfg.val_dataloader.dataset.bank.pipeline)) if has_val else None
    fake = dict(type="FakeImageDataset", image_size=16, channels=channels, num_classes=4)
    cfg.train_dataloader.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.pop("pin_memory", None)
    cfg.train_dataloader.dataset = dict(fake, num_samples=num_samples, pipeline=train_pipe)
    for key in ("val_dataloader", "test_dataloader") if has_val else ():
        cfg[key] = dict(cfg.val_dataloader, batch_size=16, num_workers=0, persistent_workers=False,
                        dataset=dict(type="KNNEvalDataset", bank=dict(fake, num_samples=12, pipeline=eval_pipe),
                                     query=dict(fake, num_samples=8, seed=1, pipeline=eval_pipe)))
        cfg[key].pop("pin_memory", None)
    sampler = cfg.train_dataloader.get("sampler") or {}
    if "batch_size" in sampler:  # label-aware samplers take the global batch
        sampler.update(batch_size=batch_size, m=batch_size // 4) if "m" in sampler else sampler.update(
            batch_size=batch_size)
    backbone = cfg.model.get("backbone") or {}
    if backbone.get("type") == "TorchvisionResNet" and backbone.get("depth", 50) > 18:
        # ImageNet recipes: a ResNet-18 and a narrow head keep the 2-iteration run short on CPUs.
        backbone["depth"] = 18
        neck = cfg.model.get("neck") or {}
        for key in ("hidden_dim", "out_dim"):
            if key in neck:
                neck[key] = 128
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = work_dir
