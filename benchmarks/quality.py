"""Quality of every method on the embedded digits benchmark, against its peers.

    python benchmarks/quality.py                     # default size, ~30 min on 2 CPU cores
    python benchmarks/quality.py --quick             # toy size (the test suite runs it)
    python benchmarks/quality.py --device cuda --size large

Every method trains its shipped digits recipe through mmengine's Runner (the main
job's pipeline) with the same SmallCNN backbone, augmentations, schedule shape, epochs,
batch of 256 images and seeds on the digits canvas (``rankssl.mm.digits``); views: 2,
S2R2 4 (its premise is many views). The label-based recipes run without their NT-Xent
term. Each is then evaluated on frozen backbone features: weighted kNN with GroCo's protocol (k=20,
T=0.07) and lightly's (k=200, T=0.1), and a linear probe (logistic regression).
Methods: SimCLR (lightly's ``NTXentLoss``), GroCo, S2R2, Hydra (uses labels) and a
supervised-contrastive reference (pytorch-metric-learning's ``SupConLoss``, uses
labels), next to raw-pixel and random-init baselines.

Each method first gets the same small sweep of its own hyper-parameters (its base
learning rate x0.5 and x1.5, times two values of one method parameter), scored by kNN
accuracy on a validation split carved out of the training set (the test split is never
used for choosing); the winner is then trained on the full training set with every seed
and scored on the test set. Results: a markdown table, a plot of kNN accuracy against
epochs, and JSON, written to ``--out`` (default ``benchmarks/quality``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- data


def load_digits_canvas() -> Dict[str, torch.Tensor]:
    """Train/test images (N, 1, 32, 32) in [0, 1] and labels (N,)."""
    from rankssl.mm.digits import make_digits_canvas

    data = {}
    for split in ("train", "test"):
        images, labels = make_digits_canvas(split)
        data[f"{split}_x"] = torch.from_numpy(np.array(images, dtype=np.float32) / 255.0).unsqueeze(1)
        data[f"{split}_y"] = torch.from_numpy(np.array(labels))
    return data


def load_two_digit_canvas() -> Dict[str, torch.Tensor]:
    """The two-digit numbers (100 classes, ``rankssl.mm.digits.make_two_digit_canvas``): 3,000 train
    (30 per class) and 1,000 test images (10 per class), as for :func:`load_digits_canvas`."""
    from rankssl.mm.digits import make_two_digit_canvas

    data = {}
    for split, per_class in (("train", 30), ("test", 10)):
        images, labels = make_two_digit_canvas(split, per_class=per_class)
        data[f"{split}_x"] = torch.from_numpy(np.array(images, dtype=np.float32) / 255.0).unsqueeze(1)
        data[f"{split}_y"] = torch.from_numpy(np.array(labels))
    return data


DATASETS = {"digits": load_digits_canvas, "two-digits": load_two_digit_canvas}


def validation_indices(y: torch.Tensor, fraction: float = 0.2, seed: int = 0) -> Tuple[List[int], List[int]]:
    """A stratified (train, val) split of the training set's indices for the sweep."""
    generator = torch.Generator().manual_seed(seed)
    val_idx = []
    for label in y.unique():
        idx = torch.nonzero(y == label).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        val_idx.append(idx[: max(1, int(round(fraction * len(idx))))])
    val_idx = torch.cat(val_idx)
    train_mask = torch.ones(len(y), dtype=torch.bool)
    train_mask[val_idx] = False
    return torch.nonzero(train_mask).squeeze(1).tolist(), sorted(val_idx.tolist())


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def features(backbone: nn.Module, x: torch.Tensor, device: str, batch: int = 512) -> torch.Tensor:
    backbone.eval()
    out = [backbone(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
    return torch.cat(out)


def knn_accuracy(bank: torch.Tensor, bank_y: torch.Tensor, query: torch.Tensor, query_y: torch.Tensor,
                 k: int, temperature: float) -> float:
    """Weighted kNN (Wu et al. 2018) on L2-normalised features: votes exp(cos / T)."""
    bank, query = F.normalize(bank, dim=1), F.normalize(query, dim=1)
    sims, idx = (query @ bank.T).topk(min(k, len(bank)), dim=1)
    votes = torch.zeros(len(query), int(bank_y.max()) + 1)
    votes.scatter_add_(1, bank_y[idx], torch.exp(sims / temperature))
    return (votes.argmax(1) == query_y).float().mean().item()


def linear_probe_accuracy(train: torch.Tensor, train_y: torch.Tensor, test: torch.Tensor, test_y: torch.Tensor) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train.numpy())
    probe = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(train.numpy()), train_y.numpy())
    return float(probe.score(scaler.transform(test.numpy()), test_y.numpy()))


def evaluate(train_f, train_y, test_f, test_y, probe: bool = True) -> Dict[str, float]:
    scores = {
        "knn20": knn_accuracy(train_f, train_y, test_f, test_y, 20, 0.07),
        "knn200": knn_accuracy(train_f, train_y, test_f, test_y, 200, 0.1),
    }
    if probe:
        scores["linear"] = linear_probe_accuracy(train_f, train_y, test_f, test_y)
    return scores


# ----------------------------------------------------------------------------- methods


@dataclass
class Method:
    """A method = a shipped digits recipe, the loss parameter its sweep varies, its base lr."""

    name: str
    recipe: str
    uses_labels: bool
    grid: Dict[str, Sequence] = field(default_factory=dict)
    base_lr: float = 0.3  # the sweep scales it by Size.lr_multipliers
    supcon: bool = False  # swap the Hydra recipe's loss for pml's SupConLoss
    views: int = 2


class SupConOnViews(nn.Module):
    """pml's ``SupConLoss`` on all views with the batch labels, in Hydra's ``loss(views, labels)`` call."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        from pytorch_metric_learning.losses import SupConLoss

        self.loss = SupConLoss(temperature=temperature)

    def forward(self, views: List[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return self.loss(torch.cat(views), labels.repeat(len(views)))


# Base learning rates are the recipes' original rules (SimCLR's 0.3 x batch / 256; GroCo's paper rule
# 0.75 x 32 x batch / 1024, halved in the digits recipe, because its gradients are small).
# Label-based methods run without the recipes' NT-Xent term, to compare the losses alone;
# at T = 0.1 (the Hydra paper's) both collapse on the digits (RESULTS.md, Hydra), so their
# temperature grid starts at 0.2.
METHODS: Dict[str, Method] = {
    "SimCLR": Method("SimCLR", "simclr_smallcnn_1xb256-50e_digits", False, {"temperature": [0.2, 0.5]}, 0.3),
    "GroCo": Method("GroCo", "groco_smallcnn_1xb256-50e_digits", False, {"steepness": [1.0, 4.0]}, 3.0),
    "S2R2": Method("S2R2", "s2r2_smallcnn_1xb256-4v-50e_digits", False, {"num_bins": [10, 40]}, 0.3, views=4),
    "Hydra": Method("Hydra", "hydra_smallcnn_1xb256-50e_digits", True, {"temperature": [0.2, 0.5]}, 0.3),
    "SupCon": Method("SupCon", "hydra_smallcnn_1xb256-50e_digits", True, {"temperature": [0.2, 0.5]}, 0.3,
                     supcon=True),
}


def for_dataset(method: Method, dataset: str) -> Method:
    """The method's recipe for ``dataset``: the ``*_two-digits`` recipes for the two-digit data, where
    the SupCon reference has its own recipe (``LabelledViews`` with pml's ``SupConLoss``)."""
    if dataset == "digits":
        return method
    import dataclasses

    recipe = method.recipe.replace("_digits", "_two-digits")
    if method.supcon:
        recipe = "supcon_smallcnn_1xb256-50e_two-digits"
    return dataclasses.replace(method, recipe=recipe, supcon=False)


# ----------------------------------------------------------------------------- training


@dataclass
class Size:
    epochs: int
    sweep_epochs: int
    seeds: Tuple[int, ...]
    lr_multipliers: Tuple[float, ...]
    eval_every: int


SIZES = {
    "quick": Size(epochs=1, sweep_epochs=1, seeds=(0,), lr_multipliers=(1.0,), eval_every=1),
    "default": Size(epochs=20, sweep_epochs=5, seeds=(0, 1, 2), lr_multipliers=(0.5, 1.5), eval_every=5),
    "large": Size(epochs=100, sweep_epochs=25, seeds=(0, 1, 2), lr_multipliers=(0.25, 0.5, 1.0, 2.0), eval_every=10),
}

NORMALIZE = (0.2, 0.25)  # the digits recipes' data preprocessor (mean, std)


def _recipe_config(method: Method, params: dict, lr: float, epochs: int, seed: int, work_dir: str,
                   train_indices: Optional[Sequence[int]], eval_every: int):
    from rankssl.cli import load_config, set_epochs

    cfg = load_config(method.recipe, work_dir)
    set_epochs(cfg, epochs)
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.optim_wrapper.optimizer.lr = lr
    if cfg.model.get("instance_loss") is not None:
        cfg.model.instance_loss = None
    if not method.supcon:
        cfg.model.loss.update(params)
    # Same batch (256 images) and views (S2R2: 4) for every method.
    cfg.train_dataloader.batch_size = 256
    if cfg.train_dataloader.sampler.get("batch_size"):
        cfg.train_dataloader.sampler.batch_size = 256
    cfg.train_dataloader.dataset.pipeline[0].views[0].num_views = method.views
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=epochs, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = 50
    cfg.custom_hooks = [h for h in cfg.get("custom_hooks", []) if h["type"] == "CurvesHook"] or [
        dict(type="CurvesHook", interval=1)]
    if train_indices is not None:  # the sweep: train on part of the train split, no mmengine validation
        cfg.train_dataloader.dataset.indices = list(train_indices)
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    else:
        cfg.train_cfg.val_interval = eval_every
        cfg.val_evaluator = dict(type="KNNAccuracy", k=20, temperature=0.07)
    return cfg


def train(method: Method, params: dict, lr: float, epochs: int, seed: int, out: str,
          train_indices: Optional[Sequence[int]] = None, eval_every: int = 5):
    """Train ``method``'s recipe with overrides; return the backbone, the kNN curve and seconds."""
    from mmengine.runner import Runner

    tag = "_".join(f"{k}{v}" for k, v in params.items())
    work_dir = os.path.join(out, "runs", f"{method.name}_lr{lr:g}_{tag}_s{seed}{'_sweep' if train_indices else ''}")
    cfg = _recipe_config(method, params, lr, epochs, seed, work_dir, train_indices, eval_every)
    runner = Runner.from_cfg(cfg)
    if method.supcon:
        runner.model.loss_module = SupConOnViews(**params)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    curve = []
    if train_indices is None:
        with open(os.path.join(work_dir, "scalars.json")) as handle:
            curve = [(r["epoch"], r["knn/top1"] / 100) for r in json.load(handle)["val"] if "knn/top1" in r]
    return runner.model.backbone, curve, seconds


def normalized(x: torch.Tensor) -> torch.Tensor:
    return (x - NORMALIZE[0]) / NORMALIZE[1]


def sweep(method: Method, data, size: Size, out: str, device: str, log) -> Tuple[dict, float, List[dict]]:
    """Same grid size for every method: base lr x multipliers, x two values of one parameter."""
    (train_idx, val_idx) = validation_indices(data["train_y"])
    grid_name, grid_values = next(iter(method.grid.items()))
    trials = []
    for lr in [method.base_lr * m for m in size.lr_multipliers]:
        for value in grid_values:
            params = {grid_name: value}
            backbone, _, _ = train(method, params, lr, size.sweep_epochs, 0, out, train_idx)
            x, y = normalized(data["train_x"]), data["train_y"]
            acc = knn_accuracy(features(backbone, x[train_idx], device), y[train_idx],
                               features(backbone, x[val_idx], device), y[val_idx], 20, 0.07)
            trials.append({"lr": lr, **params, "val_knn20": acc})
            log(f"  sweep {method.name} lr={lr:g} {params}: val kNN {100 * acc:.1f}")
    best = max(trials, key=lambda t: t["val_knn20"])
    return {grid_name: best[grid_name]}, best["lr"], trials


def baselines(data, size: Size, device: str) -> Dict[str, Dict[str, float]]:
    from rankssl.models import SmallCNN

    flat = lambda t: t.flatten(1)  # noqa: E731
    rows = {"raw pixels": evaluate(flat(data["train_x"]), data["train_y"], flat(data["test_x"]), data["test_y"])}
    random_scores = []
    for seed in size.seeds:
        torch.manual_seed(seed)
        net = SmallCNN(in_channels=1, widths=(32, 64, 128)).to(device)
        random_scores.append(evaluate(features(net, normalized(data["train_x"]), device), data["train_y"],
                                      features(net, normalized(data["test_x"]), device), data["test_y"]))
    rows["random init"] = {k: statistics.mean(s[k] for s in random_scores) for k in random_scores[0]}
    return rows


def _mean_std(values: List[float]) -> str:
    mean = 100 * statistics.mean(values)
    spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {spread:.1f}"


def run(methods: Sequence[str], size_name: str, device: str, out: str, no_sweep: bool,
        overrides: Optional[Dict[str, dict]] = None, seeds: Optional[Sequence[int]] = None,
        eval_every: Optional[int] = None, dataset: str = "digits") -> str:
    size = SIZES[size_name]
    if seeds is not None or eval_every is not None:
        size = replace(size, seeds=tuple(seeds or size.seeds), eval_every=eval_every or size.eval_every)
    os.makedirs(out, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    data = DATASETS[dataset]()
    results: Dict[str, dict] = {}
    for name in methods:
        method = for_dataset(METHODS[name], dataset)
        log(f"== {name}")
        if no_sweep:
            grid_name, grid_values = next(iter(method.grid.items()))
            params, lr, trials = {grid_name: grid_values[-1]}, method.base_lr, []
        else:
            params, lr, trials = sweep(method, data, size, out, device, log)
        params = {**params, **(overrides or {}).get(name, {})}
        lr = params.pop("lr", lr)  # "--set METHOD.lr=..." sets the learning rate
        runs = []
        for seed in size.seeds:
            backbone, curve, seconds = train(method, params, lr, size.epochs, seed, out, eval_every=size.eval_every)
            scores = evaluate(features(backbone, normalized(data["train_x"]), device), data["train_y"],
                              features(backbone, normalized(data["test_x"]), device), data["test_y"])
            runs.append({"seed": seed, "seconds": seconds, "curve": curve, **scores})
            log(f"  {name} seed {seed}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in scores.items()))
        results[name] = {"params": params, "lr": lr, "sweep": trials, "runs": runs,
                         "num_views": method.views, "uses_labels": method.uses_labels}
    base = baselines(data, size, device)
    table = format_table(results, base, size, device, dataset)
    with open(os.path.join(out, "quality.json"), "w") as handle:
        json.dump({"results": results, "baselines": base, "size": size_name}, handle, indent=1)
    with open(os.path.join(out, "quality.md"), "w") as handle:
        handle.write(table)
    plot_curves(results, os.path.join(out, "quality_curves.png"))
    return table


def format_table(results, base, size: Size, device: str, dataset: str = "digits") -> str:
    from measure import machine_description

    title = "Digits canvas, the shipped digits recipes" if dataset == "digits" else \
        "Two-digit numbers (100 classes), the shipped two-digits recipes"
    lines = [
        f"{title} (SmallCNN[32, 64, 128]), {size.epochs} epochs, batch 256, "
        f"seeds {list(size.seeds)}; {machine_description(device)}; {datetime.date.today()}",
        "",
        "| method | labels | views | chosen hyper-parameters | kNN k=20 T=0.07 | kNN k=200 T=0.1 | linear probe | train s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        chosen = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in {"lr": r["lr"], **r["params"]}.items())
        cells = [_mean_std([run[k] for run in r["runs"]]) for k in ("knn20", "knn200", "linear")]
        seconds = statistics.mean(run["seconds"] for run in r["runs"])
        lines.append(f"| {name} | {'yes' if r['uses_labels'] else 'no'} | {r['num_views']} | {chosen} | "
                     f"{' | '.join(cells)} | {seconds:.0f} |")
    for name, scores in base.items():
        lines.append(f"| {name} | no | - | - | {100 * scores['knn20']:.1f} | {100 * scores['knn200']:.1f} | "
                     f"{100 * scores['linear']:.1f} | - |")
    return "\n".join(lines) + "\n"


def plot_curves(results, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        epochs = [e for e, _ in r["runs"][0]["curve"]]
        accs = np.array([[a for _, a in run["curve"]] for run in r["runs"]]) * 100
        ax.plot(epochs, accs.mean(0), marker="o", label=name)
        if len(accs) > 1:
            ax.fill_between(epochs, accs.min(0), accs.max(0), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test kNN top-1 (k=20, T=0.07), %")
    ax.set_title("Embedded digits: kNN accuracy during training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> None:
    # As rankssl.mm does for training: subnormal floats from small gradients slow CPU
    # back-propagation ~10x; the flag must be set before torch starts its threads.
    torch.set_flush_denormal(True)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--size", default="default", choices=list(SIZES))
    parser.add_argument("--quick", action="store_true", help="same as --size quick")
    parser.add_argument("--no-sweep", action="store_true", help="train each method's defaults only")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.PARAM=VALUE",
                        help="override a loss parameter (or lr) of one method, e.g. S2R2.num_bins=640")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the final runs (default: the size's)")
    parser.add_argument("--eval-every", type=int, help="epochs between kNN evaluations (default: the size's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", default="digits", choices=list(DATASETS))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "quality"))
    args = parser.parse_args(argv)
    overrides: Dict[str, dict] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        method, param = key.split(".", 1)
        overrides.setdefault(method, {})[param] = json.loads(value)
    print(run(args.methods, "quick" if args.quick else args.size, args.device, args.out, args.no_sweep,
              overrides, args.seeds, args.eval_every, args.dataset))


if __name__ == "__main__":
    main()
