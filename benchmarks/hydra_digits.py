"""Hydra next to SimCLR, GroCo and supervised contrastive learning on the embedded digits, in mmengine.

    python benchmarks/hydra_digits.py                 # 50 epochs per method (the recipes' budget)
    python benchmarks/hydra_digits.py --epochs 2      # quick check

Every method runs its shipped digits recipe (``recipes/*_digits.py``: SmallCNN, batch
256, SGD + cosine schedule) through mmengine's Runner; the supervised-contrastive
reference is the Hydra recipe with its loss swapped for pytorch-metric-learning's
``SupConLoss`` (temperature 0.1) on all views, so it shares Hydra's head, sampler and
schedule. Both label-using losses run alone and mixed half/half with the recipe's
instance term (lightly's NT-Xent on the two views, as the authors' code mixes in MoCo v3). Each run is evaluated on frozen backbone features of the test split: weighted
kNN (k=20, T=0.07, bank = train split) and the effective rank / singular spectrum of
the L2-normalised features of all bank and query images (``EffectiveRank``). Writes
``benchmarks/hydra_digits/results.json``, a markdown table and one spectrum plot per
method under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Dict, List

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HYDRA = "hydra_smallcnn_1xb256-50e_digits.py"
# name -> (recipe, work dir, loss swapped for SupCon?, keep the recipe's instance (NT-Xent) term?)
RECIPES = {
    "SimCLR (lightly NTXentLoss)": ("simclr_smallcnn_1xb256-50e_digits.py", "simclr", False, True),
    "GroCo": ("groco_smallcnn_1xb256-50e_digits.py", "groco", False, True),
    "SupCon (pml SupConLoss, labels)": (HYDRA, "hydra_supcon", True, False),
    "Hydra (labels)": (HYDRA, "hydra", False, False),
    "SupCon + NT-Xent (labels)": (HYDRA, "hydra_supcon_ntxent", True, True),
    "Hydra + NT-Xent (labels)": (HYDRA, "hydra_ntxent", False, True),
}


class SupConOnViews(nn.Module):
    """pml's ``SupConLoss`` on all views with the batch labels, in Hydra's ``loss(views, labels)`` call."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        from pytorch_metric_learning.losses import SupConLoss

        self.loss = SupConLoss(temperature=temperature)

    def forward(self, views: List[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return self.loss(torch.cat(views), labels.repeat(len(views)))


def run(name: str, spec: tuple, epochs: int, out: str, seed: int, temperature: float = None) -> Dict[str, float]:
    from mmengine.config import Config
    from mmengine.runner import Runner

    recipe, work_dir, supcon, instance = spec
    cfg = Config.fromfile(os.path.join(ROOT, "recipes", recipe))
    cfg.work_dir = os.path.join(out, work_dir + (f"_t{temperature}" if temperature else ""))
    if temperature and cfg.model.type == "Hydra":
        cfg.model.loss.temperature = temperature
    if cfg.model.type == "Hydra":  # the recipe has no instance term; the "+ NT-Xent" rows add one
        cfg.model.instance_loss = dict(type="NTXentLoss", temperature=0.2) if instance else None
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=epochs, val_interval=epochs)
    if epochs < cfg.get("max_epochs", epochs):  # keep the schedule's shape on a shorter run
        warmup = max(1, epochs // 10)
        cfg.param_scheduler = [
            dict(type="LinearLR", start_factor=1e-3, by_epoch=True, begin=0, end=warmup, convert_to_iter_based=True)]
        if epochs > warmup:
            cfg.param_scheduler.append(dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=True, begin=warmup,
                                            end=epochs, T_max=epochs - warmup, convert_to_iter_based=True))
    cfg.val_evaluator = [dict(type="KNNAccuracy", k=20, temperature=0.07), dict(type="EffectiveRank")]
    cfg.custom_hooks = [dict(type="CurvesHook", interval=1), dict(type="SpectrumHook")]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=epochs, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = 50
    runner = Runner.from_cfg(cfg)
    if supcon:
        runner.model.loss_module = SupConOnViews(temperature or 0.1)
    start = time.time()
    runner.train()
    seconds = time.time() - start
    scalars = json.load(open(os.path.join(cfg.work_dir, "scalars.json")))
    last = scalars["val"][-1]
    return {"knn_top1": last["knn/top1"], "erank": last["spectrum/erank"],
            "erank_ratio": last["spectrum/erank_ratio"], "train_seconds": seconds,
            "spectrum_png": os.path.join(cfg.work_dir, "spectrum.png")}


def _short(name: str) -> str:
    for detail in (" (lightly NTXentLoss)", " (pml SupConLoss, labels)", " (labels)"):
        name = name.replace(detail, "")
    return name


def summarize(results: Dict[str, dict], out: str, analyze_run: str = "hydra") -> str:
    """Markdown table, one plot of every method's final spectrum, and Hydra's gate analysis."""
    import glob

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lines = ["| method | kNN top-1 (%) | effective rank (of 128) | train + eval time (s) |", "|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, r in results.items():
        lines.append(f"| {name} | {r['knn_top1']:.1f} | {r['erank']:.1f} | {r['train_seconds']:.0f} |")
        npz = os.path.join(os.path.dirname(r["spectrum_png"]), "spectrum.npz")
        if os.path.exists(npz):
            stored = np.load(npz)
            s = stored[sorted(stored.files, key=lambda k: int(k.split("_")[1]))[-1]]
            ax.semilogy(np.arange(1, len(s) + 1), s / s[0], label=f"{_short(name)}: erank {r['erank']:.1f}")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("s_k / s_1 (test + bank features)")
    ax.set_title(f"digits, SmallCNN features after {next(iter(results.values()))['epochs']} epochs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "spectra.png"), dpi=100)
    plt.close(fig)
    checkpoints = sorted(glob.glob(os.path.join(out, analyze_run, "epoch_*.pth")))
    if checkpoints:
        from rankssl.mm.analyze import analyze_checkpoint

        analyze_checkpoint(checkpoints[-1], os.path.join(out, "hydra_analysis"))
    table = "\n".join(lines)
    open(os.path.join(out, "table.md"), "w").write(table + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="subset of method names (prefix match)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "hydra_digits"))
    parser.add_argument("--label-temperature", type=float, default=None,
                        help="temperature of Hydra and SupCon instead of the recipe's 0.1 (names get a suffix)")
    parser.add_argument("--analyze-run", default="hydra", help="work dir (under --out) whose gates to analyse")
    parser.add_argument("--summarize-only", action="store_true", help="only rebuild table and plots")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    results_path = os.path.join(args.out, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    for name, recipe in RECIPES.items():
        if args.summarize_only:
            break
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        t = args.label_temperature if recipe[0] == HYDRA else None
        key = name + (f", T={t}" if t else "")
        results[key] = dict(run(name, recipe, args.epochs, args.out, args.seed, t), epochs=args.epochs, seed=args.seed)
        json.dump(results, open(results_path, "w"), indent=1)
        print(key, results[key], flush=True)
    print(summarize(results, args.out, args.analyze_run))


if __name__ == "__main__":
    main()
