"""A recipe's config as the ``rankssl`` command runs it: loaded, overridden, checked, fitted to the machine.

- :func:`load_config`: a shipped recipe's name or a path, ``--cfg-options`` merged after
  their types are checked (:mod:`rankssl.mm.option_types`), a default work dir;
- :func:`set_epochs`: another run length, the warm-up + cosine schedule stretched to it;
- :func:`apply_data_root`, :func:`check_data`: the data set's folder, checked before anything is built;
- :func:`setup_launcher`, :func:`cpu_fallbacks`: ``--launcher pytorch`` on CPUs (gloo, the CPU
  model wrapper), AMP and SyncBN replaced where there is no GPU.

mmengine is imported inside the functions, so importing this module stays cheap.

Example:
    >>> from mmengine.config import Config
    >>> cfg = Config(dict(train_cfg=dict(max_epochs=50, val_interval=10), param_scheduler=[
    ...     dict(type='LinearLR', end=5), dict(type='CosineAnnealingLR', begin=5, end=50, T_max=45)]))
    >>> set_epochs(cfg, 20); cfg.param_scheduler[1]['end'], cfg.param_scheduler[1]['T_max']
    (20, 15)
"""

from __future__ import annotations

import argparse
import os
import warnings
from typing import Optional, Sequence

from rankssl.errors import CommandError

__all__ = [
    "parse_cfg_options",
    "load_config",
    "schedule_end",
    "check_epochs",
    "set_epochs",
    "apply_data_root",
    "check_data",
    "setup_launcher",
    "cpu_fallbacks",
]


def parse_cfg_options(pairs: Sequence[str]) -> dict:
    """``['a.b=1', 'c=[1,2]']`` -> ``{'a.b': 1, 'c': [1, 2]}`` with mmengine's value syntax."""
    from mmengine.config import DictAction

    for pair in pairs:
        if "=" not in pair or pair.startswith("="):
            raise CommandError(
                f"--cfg-options takes KEY=VALUE pairs, got {pair!r}; "
                "e.g. --cfg-options train_cfg.max_epochs=20 optim_wrapper.optimizer.lr=0.1"
            )
    namespace = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="options")(None, namespace, list(pairs))
    return namespace.options


def load_config(recipe: str, work_dir: Optional[str] = None, cfg_options: Optional[dict] = None):
    """Load a recipe (name or path), merge overrides, set a default work dir.

    A ``train_cfg.max_epochs`` override stretches the recipe's schedule like
    :func:`set_epochs` when the schedule ended at the recipe's own last epoch, and
    warns when it ends elsewhere.
    """
    from mmengine.config import Config

    from rankssl.recipes import find_recipe

    path = find_recipe(recipe)
    cfg = Config.fromfile(path)
    recipe_epochs = (cfg.get("train_cfg") or {}).get("max_epochs")
    if cfg_options:
        from rankssl.mm.option_types import check_option_types

        try:  # lr=abc, widths=7, val_interval=0: named before anything is built
            check_option_types(cfg, cfg_options)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        cfg.merge_from_dict(cfg_options)
        epochs = (cfg.get("train_cfg") or {}).get("max_epochs")
        if epochs is not None and epochs != recipe_epochs:
            check_epochs(epochs, "train_cfg.max_epochs")
            if schedule_end(cfg) == recipe_epochs:
                set_epochs(cfg, epochs)
            elif schedule_end(cfg) not in (None, epochs):
                warnings.warn(
                    f"train_cfg.max_epochs={epochs} but the learning-rate schedule ends at epoch "
                    f"{schedule_end(cfg)}; use --epochs {epochs} to stretch it.",
                    stacklevel=2,
                )
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = os.path.join("work_dirs", os.path.splitext(os.path.basename(path))[0])
    return cfg


def schedule_end(cfg) -> Optional[int]:
    """The epoch at which the recipe's last (epoch-based) scheduler ends; None if it has none."""
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    if not schedulers or not schedulers[-1].get("by_epoch", True):
        return None
    return schedulers[-1].get("end")


def check_epochs(epochs, name: str) -> None:
    """Refuse a run length that is not a whole number of epochs >= 1 (``name``: where it came from)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise CommandError(
            f"{name} must be a whole number of epochs >= 1, got {epochs!r}; a run of zero epochs would train nothing."
        )


def set_epochs(cfg, epochs: int) -> None:
    """Change an epoch-based recipe's length, stretching its last scheduler to the new end.

    The warm-up keeps its length (shortened if the run is shorter than it); the last
    scheduler (the cosine decay) begins where the warm-up ends and ends at ``epochs``.
    """
    check_epochs(epochs, "epochs")
    cfg.train_cfg.max_epochs = epochs
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    if schedulers:
        last = schedulers[-1]
        begin = min(last.get("begin", 0), max(epochs - 1, 0))
        last["begin"], last["end"] = begin, epochs
        if "T_max" in last:
            last["T_max"] = max(epochs - begin, 1)
        for sched in schedulers[:-1]:
            sched["end"] = min(sched.get("end", epochs), begin) or 1
    cfg.train_cfg.val_interval = min(cfg.train_cfg.get("val_interval", epochs), epochs)


def apply_data_root(cfg, data_root: Optional[str]) -> None:
    """Point every dataset of ``cfg`` at ``data_root`` (``--data-root``); nothing when it is None."""
    if data_root is not None:
        from rankssl.mm.data_root import set_data_root

        try:
            set_data_root(cfg, data_root)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc


def check_data(cfg) -> None:
    """Fail early, with the data set's own instructions, when a recipe's data is not on disk."""
    from rankssl.registry import DATASETS

    def datasets(node):
        if isinstance(node, dict):
            if "type" in node and ("data_root" in node or node.get("type") in ("CIFAR10", "STL10", "ImageFolder")):
                yield node
            for value in node.values():
                yield from datasets(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                yield from datasets(value)

    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        for dataset in datasets((cfg.get(key) or {}).get("dataset")):
            cls = dataset["type"] if not isinstance(dataset["type"], str) else DATASETS.get(dataset["type"])
            check = getattr(cls, "check_data_root", None)
            if check is not None:
                if "data_root" in dataset:
                    check(dataset["data_root"])
                else:
                    check()


def setup_launcher(cfg, launcher: str) -> None:
    """Prepare ``cfg`` (and the process group) for ``launcher``; CPU-only machines get gloo."""
    import torch

    cfg.launcher = launcher
    if launcher == "none":
        return
    if launcher != "pytorch":
        raise ValueError(f"launcher must be 'none' or 'pytorch', got {launcher!r}.")
    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise CommandError(
            f"--launcher pytorch needs torchrun's environment ({', '.join(missing)} missing): "
            "run `torchrun --nproc_per_node N -m rankssl train RECIPE --launcher pytorch`."
        )
    if torch.cuda.is_available():
        return  # mmengine's init_dist handles NCCL and sets the device
    from rankssl.mm.launch import init_cpu_process_group

    init_cpu_process_group(cfg)  # honours env_cfg.dist_cfg.timeout (default 300 s)
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper["type"] = "rankssl.CPUDistributedDataParallel"
    wrapper.setdefault("broadcast_buffers", False)
    cfg.model_wrapper_cfg = wrapper
    if cfg.get("sync_bn"):
        warnings.warn("SyncBatchNorm needs GPUs; running with per-process BatchNorm on CPU.", stacklevel=2)
        cfg.pop("sync_bn")


def cpu_fallbacks(cfg) -> None:
    """AMP needs an accelerator: use a plain OptimWrapper on CPU-only machines."""
    import torch

    if torch.cuda.is_available():
        return
    wrapper = cfg.get("optim_wrapper") or {}
    if wrapper.get("type") == "AmpOptimWrapper":
        warnings.warn("AmpOptimWrapper needs a GPU; training in float32 with OptimWrapper.", stacklevel=2)
        wrapper["type"] = "OptimWrapper"
        for key in ("loss_scale", "dtype"):
            wrapper.pop(key, None)
