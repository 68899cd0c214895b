"""The main job, ``rankssl demo``: GroCo and SimCLR on the embedded digits, then a kNN table.

Both recipes of :data:`DEMO_RECIPES` are trained as ``rankssl train`` would, after the
untrained baselines (raw pixels, a random-init backbone) are measured on the same kNN split.
``--write-results`` records the run in a source checkout with the repository's own tool,
``benchmarks/demo_results.py``, loaded from that checkout by path: it is not part of the
installed package.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

from rankssl.commands import build_runner
from rankssl.errors import CommandError
from rankssl.run_config import check_epochs, load_config, set_epochs

__all__ = ["DEMO_RECIPES", "cmd_demo", "demo_baselines", "find_checkout", "load_results_tool"]

DEMO_RECIPES = (
    ("GroCo", "groco_smallcnn_1xb256-50e_digits"),
    ("SimCLR (lightly NTXentLoss)", "simclr_smallcnn_1xb256-50e_digits"),
)
RESULTS_TOOL = os.path.join("benchmarks", "demo_results.py")  # in a source checkout
_CHECKOUT_FILES = ("README.md", os.path.join("benchmarks", "RESULTS.md"), RESULTS_TOOL)


def find_checkout(path: Optional[str] = None) -> str:
    """The source checkout to record the run in: ``path``, or the one this package runs from (editable
    install), or the current folder; :class:`CommandError` when none has the README, RESULTS.md and the tool."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [path] if path else [here, os.getcwd()]
    for root in candidates:
        if all(os.path.isfile(os.path.join(root, name)) for name in _CHECKOUT_FILES):
            return os.path.abspath(root)
    raise CommandError(
        f"--write-results needs a source checkout of rankssl (with README.md, "
        f"benchmarks/RESULTS.md and {RESULTS_TOOL}); none at {', '.join(map(repr, candidates))}. "
        "Give its path: --write-results PATH."
    )


def load_results_tool(checkout: str) -> ModuleType:
    """The checkout's ``benchmarks/demo_results.py``, imported from its path."""
    path = os.path.join(checkout, RESULTS_TOOL)
    spec = importlib.util.spec_from_file_location("rankssl_checkout_demo_results", path)
    if spec is None or spec.loader is None:
        raise CommandError(f"cannot import {path!r}.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_average() -> Optional[float]:
    """The machine's 1-minute load average (None where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


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
        model: Any = build_module(dict(cfg.model)).eval()  # an algorithm: extract_feat, data_preprocessor
    out["random init"] = knn_accuracy(
        bank, query, lambda x: model.extract_feat(model.data_preprocessor({"inputs": [x]})["inputs"][0][0])
    )
    return out


def set_plot_baselines(cfg, baselines: dict) -> None:
    """Draw the untrained baselines as horizontal lines in the recipe's kNN plot."""
    for hook in cfg.get("custom_hooks") or []:
        if hook.get("type") in ("CurvesHook", "rankssl.CurvesHook"):
            hook["baselines"] = {f"knn/top1 {name}": value for name, value in baselines.items()}


def cmd_demo(args) -> int:
    """The main job: train both demo recipes, print the kNN table; ``--write-results`` records it."""
    import torch

    checkout: Optional[str] = None
    demo_results: Optional[ModuleType] = None
    if args.write_results is not None:  # fail before training, not after
        if args.epochs is not None:
            raise CommandError("--write-results records the main job as `make demo` runs it; drop --epochs.")
        checkout = find_checkout(args.write_results or None)
        demo_results = load_results_tool(checkout)
    if args.epochs is not None:
        check_epochs(args.epochs, "--epochs")
    torch.set_flush_denormal(True)
    load = load_average()
    start = time.time()
    rows: List[Tuple[str, float, float, int]] = []
    baselines: Dict[str, float] = {}
    for method, recipe in DEMO_RECIPES:
        cfg = load_config(recipe, os.path.join(args.work_dir, recipe))
        if args.epochs is not None:
            set_epochs(cfg, args.epochs)
        if not baselines:
            print("Baselines without training (raw pixels, random init) ...", flush=True)
            baselines = demo_baselines(cfg)
            print("  " + ", ".join(f"{name} {acc:.1f}%" for name, acc in baselines.items()), flush=True)
        set_plot_baselines(cfg, baselines)
        print(f"Training {method} ({recipe}, {cfg.train_cfg.max_epochs} epochs)", flush=True)
        t0 = time.time()
        runner = build_runner(cfg, progress=None if args.verbose else method.split(" ")[0])
        runner.train()
        rows.append((method, last_knn(runner), time.time() - t0, cfg.train_cfg.max_epochs))
    total = time.time() - start
    print(
        "\nMain job: self-supervised training on the embedded digits canvas "
        "(weighted kNN, k=20, T=0.07, 1,437 train / 360 test)"
    )
    print(f"{'method':<30}{'kNN top-1 (%)':>15}{'epochs':>8}{'time (s)':>10}")
    for method, knn, seconds, epochs in rows:
        print(f"{method:<30}{knn:>15.1f}{epochs:>8}{seconds:>10.0f}")
    for name, acc in baselines.items():
        print(f"{name + ' (no training)':<30}{acc:>15.1f}{'-':>8}{'-':>10}")
    print(
        f"total wall time {total:.0f} s; work dir {os.path.abspath(args.work_dir)} "
        "(checkpoints, logs, scalars.json, loss.png, metrics.png per method)"
    )
    if checkout is not None and demo_results is not None:
        record = demo_results.make_record(
            rows,
            baselines,
            total,
            sys.argv if sys.argv else None,
            load_average=load,
            load_average_at_end=load_average(),
        )
        for path in demo_results.write(checkout, record):
            print(f"wrote {path}")
    return 0


def last_knn(runner) -> float:
    """The last validation's kNN top-1 of a trained runner (validating once more if none was logged)."""
    from rankssl.mm.hooks import CurvesHook

    for hook in runner.hooks:
        if isinstance(hook, CurvesHook) and hook.val:
            return hook.val[-1].get("knn/top1", float("nan"))
    return float(runner.val().get("knn/top1", float("nan")))
