"""SimCLR, GroCo and S2R2 on Fashion-MNIST at a CPU budget: each at its digits learning rate x0.5, x1, x2.

    python benchmarks/fashion_mnist.py                     # the CPU grid: 5,000 images, 4 epochs, 9 runs
    python benchmarks/fashion_mnist.py --table             # the markdown table of the finished runs
    python benchmarks/fashion_mnist.py --raw-pixels        # the raw-pixel floor on the same bank and queries
    python benchmarks/fashion_mnist.py --train-size 60000 --bank-size 60000 --epochs 50 --out DIR  # full protocol

Every run trains the shipped Fashion-MNIST recipe (``recipes/*_fashion-mnist.py``: the digits
recipes' SmallCNN, head, loss and learning rate) through ``rankssl.cli`` (the same config
loading, ``--data-root`` and ``--epochs`` handling as ``rankssl train``), on the first
``--train-size`` training images (a fixed subset), with the warm-up + cosine schedule
stretched to ``--epochs`` (the warm-up keeps its tenth of the run, at least one epoch).
One validation at the end reports weighted kNN (k=20, T=0.07)
and a linear probe (L-BFGS on frozen backbone features), both with the first
``--bank-size`` training images as bank / probe training set and the 10,000 test images as
queries. Each finished run writes ``OUT/RUN/result.json``; a rerun skips finished runs, so
the grid can be stopped and continued. ``--table`` prints the markdown table of what finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = {  # method -> the shipped recipe (its lr is the digits recipe's)
    "SimCLR": "simclr_smallcnn_1xb256-50e_fashion-mnist",
    "GroCo": "groco_smallcnn_1xb256-50e_fashion-mnist",
    "S2R2": "s2r2_smallcnn_1xb256-4v-50e_fashion-mnist",
}
LR_FACTORS = (1.0, 0.5, 2.0)


def run_name(method: str, factor: float) -> str:
    return f"{method.lower()}_lr{factor:g}x"


def configure(method: str, factor: float, args: argparse.Namespace, work_dir: str):
    """The recipe's config for one run of the grid."""
    from rankssl.cli import load_config, set_epochs
    from rankssl.mm.data_root import set_data_root

    cfg = load_config(METHODS[method], work_dir)
    # The warm-up keeps its share of the run (5 of the recipe's 50 epochs), at least one epoch.
    schedulers, recipe_epochs = cfg.param_scheduler, cfg.train_cfg.max_epochs
    warmup = max(1, round(schedulers[0]["end"] * args.epochs / recipe_epochs))
    schedulers[0]["end"], schedulers[-1]["begin"] = warmup, warmup
    set_epochs(cfg, args.epochs)
    set_data_root(cfg, args.data_root)
    base_lr = cfg.optim_wrapper.optimizer.lr
    cfg.optim_wrapper.optimizer.lr = base_lr * factor
    cfg.train_dataloader.dataset.indices = args.train_size
    val = cfg.val_dataloader.dataset
    val.bank.indices = args.bank_size
    cfg.val_evaluator = [dict(type="KNNAccuracy", k=20, temperature=0.07),
                         dict(type="LinearProbeAccuracy")]
    cfg.train_cfg.val_interval = args.epochs  # one validation, at the end
    cfg.default_hooks.checkpoint.interval = args.epochs
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.val_evaluator
    return cfg, base_lr


def train_one(method: str, factor: float, args: argparse.Namespace) -> Dict:
    from rankssl.cli import build_runner

    name = run_name(method, factor)
    work_dir = os.path.join(args.out, name)
    cfg, base_lr = configure(method, factor, args, work_dir)
    start = time.time()
    runner = build_runner(cfg, progress=name)
    runner.train()
    seconds = time.time() - start
    metrics = _last_validation(runner)
    result = dict(method=method, lr_factor=factor, lr=base_lr * factor, epochs=args.epochs,
                  train_size=args.train_size, bank_size=args.bank_size, seconds=round(seconds, 1),
                  metrics={k: float(v) for k, v in metrics.items()}, recipe=METHODS[method],
                  threads=os.environ.get("OMP_NUM_THREADS"))
    with open(os.path.join(work_dir, "result.json.tmp"), "w") as handle:
        json.dump(result, handle, indent=1)
    os.replace(os.path.join(work_dir, "result.json.tmp"), os.path.join(work_dir, "result.json"))
    return result


def _last_validation(runner) -> Dict[str, float]:
    """The metrics of the run's last validation (recorded by the recipes' ``CurvesHook``)."""
    from rankssl.mm.hooks import CurvesHook

    for hook in runner.hooks:
        if isinstance(hook, CurvesHook) and hook.val:
            return {k: v for k, v in hook.val[-1].items() if k.startswith(("knn/", "linear/"))}
    raise RuntimeError("no validation was recorded; the recipe needs its CurvesHook.")


def load_results(out: str) -> List[Dict]:
    results = []
    for method in METHODS:
        for factor in LR_FACTORS:
            path = os.path.join(out, run_name(method, factor), "result.json")
            if os.path.isfile(path):
                with open(path) as handle:
                    results.append(json.load(handle))
    return results


def table(results: List[Dict]) -> str:
    """Markdown: one row per method, kNN / linear probe per learning-rate factor."""
    by = {(r["method"], r["lr_factor"]): r for r in results}
    head = "| method | digits lr | " + " | ".join(f"lr x{f:g}: kNN / linear" for f in LR_FACTORS) + " | s per run (x1/x0.5/x2) |"
    lines = [head, "|" + "---|" * (len(LR_FACTORS) + 3)]
    for method in METHODS:
        row = [r for r in results if r["method"] == method]
        if not row:
            continue
        base = row[0]["lr"] / row[0]["lr_factor"]
        cells = []
        for factor in LR_FACTORS:
            r = by.get((method, factor))
            if r is None:
                cells.append("not run")
                continue
            knn, lin = r["metrics"].get("knn/top1"), r["metrics"].get("linear/top1")
            cells.append(f"{knn:.1f} / {lin:.1f}" if lin is not None else f"{knn:.1f} / -")
        seconds = "/".join(f"{r['seconds']:.0f}" for r in row)
        lines.append(f"| {method} | {base:g} | " + " | ".join(cells) + f" | {seconds} |")
    return "\n".join(lines)


def raw_pixels(args: argparse.Namespace) -> Dict[str, float]:
    """kNN and linear probe on raw pixels in [0, 1], same bank and queries as the runs: the floor."""
    import torch

    from rankssl.mm.fashion_mnist import FashionMNIST
    from rankssl.mm.metrics import KNNAccuracy, LinearProbeAccuracy

    train, test = FashionMNIST(args.data_root, "train"), FashionMNIST(args.data_root, "test")
    results = [{"feat": torch.from_numpy(x.reshape(-1) / 255.0).float(), "label": int(y), "is_bank": bank}
               for images, labels, bank in ((train.images[:args.bank_size], train.labels[:args.bank_size], True),
                                            (test.images, test.labels, False))
               for x, y in zip(images, labels)]
    return {"knn/top1": KNNAccuracy(k=20, temperature=0.07).compute_metrics(results)["top1"],
            "linear/top1": LinearProbeAccuracy().compute_metrics(results)["top1"]}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default=os.path.join(ROOT, "work_dirs", "fashion_mnist"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--bank-size", type=int, default=5000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--factors", nargs="+", type=float, default=list(LR_FACTORS))
    parser.add_argument("--table", action="store_true", help="print the table of finished runs and exit")
    parser.add_argument("--raw-pixels", action="store_true", help="print kNN / linear probe on raw pixels and exit")
    args = parser.parse_args(argv)
    if args.raw_pixels:
        print(json.dumps(raw_pixels(args)))
        return 0
    if args.table:
        print(table(load_results(args.out)))
        return 0
    import torch

    torch.set_flush_denormal(True)
    for factor in args.factors:  # x1 of every method first: the most useful row if time runs out
        for method in args.methods:
            done = os.path.join(args.out, run_name(method, factor), "result.json")
            if os.path.isfile(done):
                print(f"skip {run_name(method, factor)}: {done} exists", flush=True)
                continue
            result = train_one(method, factor, args)
            print(json.dumps(result), flush=True)
    print(table(load_results(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
