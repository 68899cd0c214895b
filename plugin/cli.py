"""The ``rankssl`` command: train/test mmengine recipes, list components and recipes, run the demo.

Layer 7. ``rankssl train RECIPE`` runs a recipe (a shipped recipe's name or a path)
with mmengine's ``Runner``, exactly as ``Runner.from_cfg(Config.fromfile(path))``
would, plus the conveniences below:

- ``--launcher pytorch`` under ``torchrun`` works on CPUs: the gloo process group is
  initialised here (mmengine's ``init_dist`` assumes CUDA) and the model is wrapped by
  ``CPUDistributedDataParallel``; ``AmpOptimWrapper`` and SyncBN fall back to their CPU
  equivalents with a warning.
- ``--resume`` continues from the work dir's newest intact checkpoint (damaged ones are
  skipped and named; nothing to resume is an error unless ``--resume-or-start``);
  mmengine's checkpoint types are allow-listed for ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import List, Optional, Sequence

__all__ = ["main"]

DEMO_RECIPES = (
    ("GroCo", "groco_smallcnn_1xb256-50e_digits"),
    ("SimCLR (lightly NTXentLoss)", "simclr_smallcnn_1xb256-50e_digits"),
)


def _parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    from rankssl import __version__

    parser = argparse.ArgumentParser(prog="rankssl", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"rankssl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a recipe")
    train.add_argument("recipe", help="shipped recipe name (see `rankssl recipes`) or path to a config file")
    train.add_argument("--work-dir", help="where logs, checkpoints, scalars and plots go "
                       "(default: work_dirs/<recipe name>)")
    train.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                       help="override config entries, e.g. train_cfg.max_epochs=5")
    train.add_argument("--resume", nargs="?", const="auto", default=None,
                       help="resume from the work dir's newest intact checkpoint, or from the given checkpoint")
    train.add_argument("--resume-or-start", action="store_true",
                       help="resume like --resume if the work dir has a checkpoint, else start fresh")
    train.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                       help="'pytorch' under torchrun (CPU/gloo or GPU/NCCL)")
    train.add_argument("--amp", action="store_true", help="mixed precision (AmpOptimWrapper, GPUs)")

    test = sub.add_parser("test", help="evaluate a checkpoint with a recipe's test set and metrics")
    test.add_argument("recipe")
    test.add_argument("checkpoint")
    test.add_argument("--work-dir")
    test.add_argument("--cfg-options", nargs="+", action=DictAction, default={})
    test.add_argument("--launcher", choices=["none", "pytorch"], default="none")

    sub.add_parser("list", help="list every registered component with its kind and hosts")
    sub.add_parser("recipes", help="list the shipped recipes")

    demo = sub.add_parser("demo", help="the main job: GroCo and SimCLR on the embedded digits, kNN table")
    demo.add_argument("--work-dir", default="work_dirs/demo")
    demo.add_argument("--epochs", type=int, default=None, help="override both recipes' epochs")

    from rankssl.mm.analyze import add_analyze_arguments  # Hydra's class-pair gate analysis

    add_analyze_arguments(sub.add_parser(
        "analyze", help="Hydra checkpoint: class-pair gates, overlap of active dimensions, CSV/NPZ, heatmaps"))
    return parser


# ----------------------------------------------------------------------------- config
def load_config(recipe: str, work_dir: Optional[str] = None, cfg_options: Optional[dict] = None):
    """Load a recipe (name or path), merge overrides, set a default work dir."""
    from mmengine.config import Config

    from rankssl.recipes import find_recipe

    path = find_recipe(recipe)
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = os.path.join("work_dirs", os.path.splitext(os.path.basename(path))[0])
    return cfg


def set_epochs(cfg, epochs: int) -> None:
    """Change an epoch-based recipe's length, stretching its last scheduler to the new end."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    cfg.train_cfg.max_epochs = epochs
    schedulers = cfg.get("param_scheduler") or []
    if schedulers:
        last = schedulers[-1]
        begin = min(last.get("begin", 0), max(epochs - 1, 0))
        last["begin"], last["end"] = begin, epochs
        if "T_max" in last:
            last["T_max"] = max(epochs - begin, 1)
        for sched in schedulers[:-1]:
            sched["end"] = min(sched.get("end", epochs), begin) or 1
    cfg.train_cfg.val_interval = min(cfg.train_cfg.get("val_interval", epochs), epochs)


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
        raise RuntimeError(f"--launcher pytorch needs torchrun's environment ({', '.join(missing)} missing): "
                           "run `torchrun --nproc_per_node N -m rankssl train RECIPE --launcher pytorch`.")
    if torch.cuda.is_available():
        return  # mmengine's init_dist handles NCCL and sets the device
    from rankssl.mm.launch import init_cpu_process_group

    init_cpu_process_group(cfg)  # honours env_cfg.dist_cfg.timeout (default 300 s)
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper["type"] = "rankssl.CPUDistributedDataParallel"
    wrapper.setdefault("broadcast_buffers", False)
    cfg.model_wrapper_cfg = wrapper
    if cfg.get("sync_bn"):
        warnings.warn("SyncBatchNorm needs GPUs; running with per-process BatchNorm on CPU.")
        cfg.pop("sync_bn")


def cpu_fallbacks(cfg) -> None:
    """AMP needs an accelerator: use a plain OptimWrapper on CPU-only machines."""
    import torch

    if torch.cuda.is_available():
        return
    wrapper = cfg.get("optim_wrapper") or {}
    if wrapper.get("type") == "AmpOptimWrapper":
        warnings.warn("AmpOptimWrapper needs a GPU; training in float32 with OptimWrapper.")
        wrapper["type"] = "OptimWrapper"
        for key in ("loss_scale", "dtype"):
            wrapper.pop(key, None)


def build_runner(cfg):
    from mmengine.runner import Runner

    from rankssl.mm.checkpoint import install_checkpoint_safety

    install_checkpoint_safety()
    return Runner.from_cfg(cfg)


# ----------------------------------------------------------------------------- commands
def cmd_train(args) -> int:
    cfg = load_config(args.recipe, args.work_dir, args.cfg_options)
    if args.amp:
        cfg.optim_wrapper["type"] = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.resume == "auto" or args.resume_or_start:
        from rankssl.mm.checkpoint import select_resume_checkpoint

        choice = select_resume_checkpoint(cfg.work_dir)
        if choice.path is None and not args.resume_or_start:
            raise FileNotFoundError("--resume: " + "; ".join(choice.messages()) +
                                    ". Train without --resume to start fresh (or pass --resume-or-start).")
        for line in choice.messages():
            print(f"rankssl: {line}", file=sys.stderr)
        cfg.resume, cfg.load_from = choice.path is not None, choice.path
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    setup_launcher(cfg, args.launcher)
    cpu_fallbacks(cfg)
    build_runner(cfg).train()
    return 0


def cmd_test(args) -> int:
    cfg = load_config(args.recipe, args.work_dir, args.cfg_options)
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f"Checkpoint {args.checkpoint!r} not found.")
    cfg.load_from = args.checkpoint
    setup_launcher(cfg, args.launcher)
    cpu_fallbacks(cfg)
    metrics = build_runner(cfg).test()
    for key, value in metrics.items():
        print(f"{key}\t{value:.2f}")
    return 0


def component_rows() -> List[tuple]:
    """(kind, name, hosts, module) of every component registered in the rankssl scope."""
    import rankssl.registry as registry
    from rankssl.registry._catalog import CATALOG

    registry.import_all()
    rows = []
    for reg in registry.ALL_REGISTRIES:
        for name, obj in sorted(reg.module_dict.items()):
            hosts = CATALOG.get((reg.name, name), "mmengine")
            rows.append((reg.name, name, hosts, getattr(obj, "__module__", "?")))
    return rows


def cmd_list(args) -> int:
    from rankssl.registry import plugins

    rows = component_rows()
    widths = [max(len(r[i]) for r in rows + [("kind", "name", "hosts", "module")]) for i in range(3)]
    print(f"{'kind':<{widths[0]}}  {'name':<{widths[1]}}  {'hosts':<{widths[2]}}  module")
    for kind, name, hosts, module in rows:
        print(f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {hosts:<{widths[2]}}  {module}")
    print(f"\n{len(rows)} components in scope 'rankssl' (use type='NAME' with default_scope='rankssl', "
          "or type='rankssl.NAME').")
    for line in plugins.report_lines():  # failed plugins, and names a plugin tried to take over
        print(line)
    return 0


def cmd_recipes(args) -> int:
    from rankssl.recipes import RECIPES_DIR, list_recipes

    for name in list_recipes():
        print(name)
    print(f"\n({RECIPES_DIR}; `rankssl train NAME`)")
    return 0


def demo_baselines(cfg) -> dict:
    """Raw-pixel and random-init weighted-kNN accuracies (k=20, T=0.07) on the recipe's kNN split."""
    import torch
    from mmengine.registry import DefaultScope

    from rankssl.mm.builder import build_module
    from rankssl.mm.evaluation import knn_accuracy

    val = cfg.val_dataloader.dataset
    bank, query = dict(val.bank), dict(val.query)
    out = {"raw pixels": knn_accuracy(bank, query, lambda x: x.flatten(1))}
    torch.manual_seed(cfg.get("randomness", {}).get("seed", 0))
    with DefaultScope.overwrite_default_scope("rankssl"):
        model = build_module(dict(cfg.model)).eval()
    out["random init"] = knn_accuracy(
        bank, query, lambda x: model.extract_feat(model.data_preprocessor({"inputs": [x]})["inputs"][0][0]))
    return out


def cmd_demo(args) -> int:
    import torch

    torch.set_flush_denormal(True)
    start = time.time()
    rows = []
    baselines = None
    for method, recipe in DEMO_RECIPES:
        cfg = load_config(recipe, os.path.join(args.work_dir, recipe))
        if args.epochs is not None:
            set_epochs(cfg, args.epochs)
        if baselines is None:
            baselines = demo_baselines(cfg)
        t0 = time.time()
        runner = build_runner(cfg)
        runner.train()
        knn = _last_knn(runner)
        rows.append((method, knn, time.time() - t0, cfg.train_cfg.max_epochs))
    total = time.time() - start
    print("\nMain job: self-supervised training on the embedded digits canvas "
          "(weighted kNN, k=20, T=0.07, 1,437 train / 360 test)")
    print(f"{'method':<30}{'kNN top-1 (%)':>15}{'epochs':>8}{'time (s)':>10}")
    for method, knn, seconds, epochs in rows:
        print(f"{method:<30}{knn:>15.1f}{epochs:>8}{seconds:>10.0f}")
    for name, acc in baselines.items():
        print(f"{name + ' (no training)':<30}{acc:>15.1f}{'-':>8}{'-':>10}")
    print(f"total wall time {total:.0f} s; work dir {os.path.abspath(args.work_dir)} "
          "(checkpoints, logs, scalars.json, loss.png, metrics.png per method)")
    return 0


def _last_knn(runner) -> float:
    from rankssl.mm.hooks import CurvesHook

    for hook in runner.hooks:
        if isinstance(hook, CurvesHook) and hook.val:
            return hook.val[-1].get("knn/top1", float("nan"))
    return float(runner.val().get("knn/top1", float("nan")))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"train": cmd_train, "test": cmd_test, "list": cmd_list, "recipes": cmd_recipes, "demo": cmd_demo}
    if args.command == "analyze":
        from rankssl.mm.analyze import run_analyze

        return run_analyze(args)
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
