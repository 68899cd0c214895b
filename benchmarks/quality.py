"""Quality of every method on the embedded digits benchmark, against its peers.

    python benchmarks/quality.py                     # default size, ~30 min on 2 CPU cores
    python benchmarks/quality.py --quick             # toy size (the test suite runs it)
    python benchmarks/quality.py --device cuda --size large

Every method trains the same SmallCNN backbone with the same batched augmentations,
epochs, batch size and seeds on the digits canvas (``rankssl.mm.digits``), then is
evaluated on frozen backbone features: weighted kNN with GroCo's protocol (k=20,
T=0.07) and lightly's (k=200, T=0.1), and a linear probe (logistic regression).
Methods: SimCLR (lightly's ``NTXentLoss``), GroCo, S2R2, Hydra (uses labels) and a
supervised-contrastive reference (pytorch-metric-learning's ``SupConLoss``, uses
labels), next to raw-pixel and random-init baselines.

Each method first gets the same small sweep of its own hyper-parameters (its base
learning rate x0.5 and x1.5, times two values of one method parameter), scored by kNN
accuracy on a validation split carved out of the training set; the winner is then trained on the full training set with every seed
and scored on the test set. Results: a markdown table, a plot of kNN accuracy against
epochs, and JSON, written to ``--out`` (default ``benchmarks/quality``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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


def validation_split(x: torch.Tensor, y: torch.Tensor, fraction: float = 0.2, seed: int = 0):
    """A stratified (train, val) split of the training set for the sweep."""
    generator = torch.Generator().manual_seed(seed)
    val_idx = []
    for label in y.unique():
        idx = torch.nonzero(y == label).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        val_idx.append(idx[: max(1, int(round(fraction * len(idx))))])
    val_idx = torch.cat(val_idx)
    train_mask = torch.ones(len(y), dtype=torch.bool)
    train_mask[val_idx] = False
    return (x[train_mask], y[train_mask]), (x[val_idx], y[val_idx])


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Batched random resized crop (scale 0.35-1, aspect 3/4-4/3), rotation (+-15 deg),
    brightness/contrast jitter and pixel noise on (N, 1, H, W) images in [0, 1]."""
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    area = uniform(0.35, 1.0)
    log_ratio = uniform(math.log(3 / 4), math.log(4 / 3))
    ratio = torch.exp(log_ratio)
    scale_x = torch.sqrt(area * ratio).clamp(max=1.0)
    scale_y = torch.sqrt(area / ratio).clamp(max=1.0)
    shift_x = (1 - scale_x) * uniform(-1.0, 1.0)
    shift_y = (1 - scale_y) * uniform(-1.0, 1.0)
    angle = uniform(-math.pi / 12, math.pi / 12)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        (
            torch.stack((scale_x * cos, -scale_y * sin, shift_x), 1),
            torch.stack((scale_x * sin, scale_y * cos, shift_y), 1),
        ),
        1,
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid.to(x.device), padding_mode="border", align_corners=False)
    contrast = uniform(0.6, 1.4).view(n, 1, 1, 1).to(x.device)
    brightness = uniform(-0.2, 0.2).view(n, 1, 1, 1).to(x.device)
    noise = 0.05 * torch.randn(out.shape, generator=generator).to(x.device)
    return (out - 0.5) * contrast + 0.5 + brightness + noise


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
    """How to build a method's head and loss, and its sweep grid."""

    name: str
    num_views: int
    uses_labels: bool
    build: Callable[[int, dict], Tuple[nn.Module, nn.Module]]  # (backbone_dim, params) -> (head, loss)
    compute: Callable[[nn.Module, List[torch.Tensor], torch.Tensor], torch.Tensor]
    grid: Dict[str, Sequence] = field(default_factory=dict)
    defaults: Dict[str, float] = field(default_factory=dict)
    base_lr: float = 0.3  # the sweep scales it by Size.lr_multipliers


def _mlp(in_dim: int, out_dim: int = 64, hidden: int = 256) -> nn.Module:
    from rankssl.models import MLPHead

    return MLPHead(in_dim, hidden, out_dim, num_layers=2)


def _simclr(dim, p):
    from lightly.loss import NTXentLoss

    return _mlp(dim), NTXentLoss(temperature=p["temperature"])


def _groco(dim, p):
    from rankssl.losses import GroCoLoss

    return _mlp(dim), GroCoLoss(n_negatives=int(p["n_negatives"]), steepness=p["steepness"])


def _s2r2(dim, p):
    from rankssl.losses import S2R2Loss

    return _mlp(dim), S2R2Loss(**{k: v for k, v in p.items() if k not in ("lr",)})


def _hydra(dim, p):
    from rankssl.losses import HydraLoss
    from rankssl.models import HydraProjectionHead

    head = HydraProjectionHead(dim, 256, 64)
    return head, HydraLoss(num_classes=10, dim=64, temperature=p["temperature"], seed=0)


def _supcon(dim, p):
    from pytorch_metric_learning.losses import SupConLoss

    return _mlp(dim), SupConLoss(temperature=p["temperature"])


def _views_only(loss, views, labels):
    return loss(*views) if len(views) == 2 else loss(views)


def _views_and_labels(loss, views, labels):
    return loss(views, labels)


def _concat_with_labels(loss, views, labels):
    return loss(torch.cat(views), labels.repeat(len(views)))


METHODS: Dict[str, Method] = {
    # Base learning rates follow each method's own recipe (SimCLR: 0.3 x batch / 256;
    # GroCo: the paper's 0.75 x 32 x batch / 1024, halved as in the digits recipe,
    # because its gradients are small); the sweep tries each at x0.5 and x1.5.
    "SimCLR": Method("SimCLR", 2, False, _simclr, _views_only,
                     grid={"temperature": [0.2, 0.5]}, defaults={"temperature": 0.5}, base_lr=0.3),
    "GroCo": Method("GroCo", 2, False, _groco, _views_only,
                    grid={"steepness": [1.0, 4.0]}, defaults={"steepness": 1.0, "n_negatives": 10}, base_lr=3.0),
    "S2R2": Method("S2R2", 4, False, _s2r2, _views_only,
                   grid={"num_bins": [10, 40]}, defaults={"estimator": "binned", "num_bins": 20}, base_lr=0.5),
    # T = 0.1 (the Hydra paper's) collapses both label-based losses on the digits (see
    # the Hydra section of RESULTS.md), so their grid starts at 0.2.
    "Hydra": Method("Hydra", 2, True, _hydra, _views_and_labels,
                    grid={"temperature": [0.2, 0.5]}, defaults={"temperature": 0.5}, base_lr=0.3),
    "SupCon": Method("SupCon", 2, True, _supcon, _concat_with_labels,
                     grid={"temperature": [0.2, 0.5]}, defaults={"temperature": 0.5}, base_lr=0.3),
}


# ----------------------------------------------------------------------------- training


@dataclass
class Size:
    epochs: int
    sweep_epochs: int
    batch: int
    seeds: Tuple[int, ...]
    lr_multipliers: Tuple[float, ...]
    eval_every: int
    widths: Tuple[int, ...] = (32, 64, 128)


SIZES = {
    "quick": Size(epochs=1, sweep_epochs=1, batch=128, seeds=(0,), lr_multipliers=(1.0,), eval_every=1, widths=(8, 16)),
    "default": Size(epochs=25, sweep_epochs=6, batch=256, seeds=(0, 1, 2), lr_multipliers=(0.5, 1.5), eval_every=5),
    "large": Size(epochs=200, sweep_epochs=50, batch=512, seeds=(0, 1, 2), lr_multipliers=(0.25, 0.5, 1.0, 2.0),
                  eval_every=10, widths=(64, 128, 256)),
}


def train(method: Method, params: dict, lr: float, data: Tuple[torch.Tensor, torch.Tensor],
          evaluation: Tuple[torch.Tensor, ...], size: Size, epochs: int, seed: int, device: str,
          log: Callable[[str], None]) -> Tuple[nn.Module, List[Tuple[int, float]], float]:
    """Train backbone + head with ``method``; return the backbone, the kNN curve and seconds."""
    from rankssl.models import SmallCNN

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, y = data
    backbone = SmallCNN(in_channels=1, widths=size.widths).to(device)
    head, loss_fn = method.build(backbone.out_dim, params)
    head, loss_fn = head.to(device), loss_fn.to(device)
    parameters = list(backbone.parameters()) + list(head.parameters()) + list(loss_fn.parameters())
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=1e-5)
    steps_per_epoch = len(x) // size.batch
    total_steps = max(1, epochs * steps_per_epoch)
    warmup_steps = max(1, total_steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine to zero
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    )
    curve = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        backbone.train(), head.train(), loss_fn.train()
        order = torch.randperm(len(x), generator=generator)
        for step in range(steps_per_epoch):
            idx = order[step * size.batch : (step + 1) * size.batch]
            batch = x[idx]
            views = [augment(batch, generator).to(device) for _ in range(method.num_views)]
            embeddings = head(backbone(torch.cat(views))).float().chunk(method.num_views)
            loss = method.compute(loss_fn, list(embeddings), y[idx].to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{method.name}: loss became {loss.item()} at epoch {epoch}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if epoch % size.eval_every == 0 or epoch == epochs:
            bank_x, bank_y, query_x, query_y = evaluation
            acc = knn_accuracy(features(backbone, bank_x, device), bank_y, features(backbone, query_x, device), query_y, 20, 0.07)
            curve.append((epoch, acc))
            log(f"  {method.name} seed {seed} epoch {epoch}/{epochs} loss {loss.item():.4f} kNN {100 * acc:.1f}")
    return backbone, curve, time.perf_counter() - start


def sweep(method: Method, data, size: Size, device: str, log) -> Tuple[dict, float, List[dict]]:
    """Same grid size for every method: learning rates x the method's own parameter."""
    (tx, ty), (vx, vy) = validation_split(*data)
    grid_name, grid_values = next(iter(method.grid.items()), (None, [None]))
    trials = []
    for lr in [method.base_lr * m for m in size.lr_multipliers]:
        for value in grid_values:
            params = dict(method.defaults)
            if grid_name is not None:
                params[grid_name] = value
            _, curve, _ = train(method, params, lr, (tx, ty), (tx, ty, vx, vy), size, size.sweep_epochs, 0, device, log)
            trials.append({"lr": lr, **params, "val_knn20": curve[-1][1]})
            log(f"  sweep {method.name} lr={lr} {params}: val kNN {100 * curve[-1][1]:.1f}")
    best = max(trials, key=lambda t: t["val_knn20"])
    params = {k: v for k, v in best.items() if k not in ("lr", "val_knn20")}
    return params, best["lr"], trials


def baselines(data, size: Size, device: str) -> Dict[str, Dict[str, float]]:
    from rankssl.models import SmallCNN

    flat = lambda t: t.flatten(1)  # noqa: E731
    rows = {"raw pixels": evaluate(flat(data["train_x"]), data["train_y"], flat(data["test_x"]), data["test_y"])}
    random_scores = []
    for seed in size.seeds:
        torch.manual_seed(seed)
        net = SmallCNN(in_channels=1, widths=size.widths).to(device)
        random_scores.append(evaluate(features(net, data["train_x"], device), data["train_y"],
                                      features(net, data["test_x"], device), data["test_y"]))
    rows["random init"] = {k: statistics.mean(s[k] for s in random_scores) for k in random_scores[0]}
    return rows


def _mean_std(values: List[float]) -> str:
    mean = 100 * statistics.mean(values)
    spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {spread:.1f}"


def run(methods: Sequence[str], size_name: str, device: str, out: str, no_sweep: bool) -> str:
    size = SIZES[size_name]
    os.makedirs(out, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    data = load_digits_canvas()
    results: Dict[str, dict] = {}
    for name in methods:
        method = METHODS[name]
        log(f"== {name}")
        if no_sweep:
            params, lr, trials = dict(method.defaults), method.base_lr, []
        else:
            params, lr, trials = sweep(method, (data["train_x"], data["train_y"]), size, device, log)
        runs = []
        for seed in size.seeds:
            backbone, curve, seconds = train(method, params, lr, (data["train_x"], data["train_y"]),
                                             (data["train_x"], data["train_y"], data["test_x"], data["test_y"]),
                                             size, size.epochs, seed, device, log)
            scores = evaluate(features(backbone, data["train_x"], device), data["train_y"],
                              features(backbone, data["test_x"], device), data["test_y"])
            runs.append({"seed": seed, "seconds": seconds, "curve": curve, **scores})
        results[name] = {"params": params, "lr": lr, "sweep": trials, "runs": runs,
                         "num_views": method.num_views, "uses_labels": method.uses_labels}
    base = baselines(data, size, device)
    table = format_table(results, base, size, device)
    with open(os.path.join(out, "quality.json"), "w") as handle:
        json.dump({"results": results, "baselines": base, "size": size_name}, handle, indent=1)
    with open(os.path.join(out, "quality.md"), "w") as handle:
        handle.write(table)
    plot_curves(results, os.path.join(out, "quality_curves.png"))
    return table


def format_table(results, base, size: Size, device: str) -> str:
    from measure import machine_description

    lines = [
        f"Digits canvas, SmallCNN{list(size.widths)}, {size.epochs} epochs, batch {size.batch}, "
        f"seeds {list(size.seeds)}; {machine_description(device)}; {datetime.date.today()}",
        "",
        "| method | labels | views | chosen hyper-parameters | kNN k=20 T=0.07 | kNN k=200 T=0.1 | linear probe | train s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        chosen = ", ".join(f"{k}={v}" for k, v in {"lr": r["lr"], **r["params"]}.items())
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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "quality"))
    args = parser.parse_args(argv)
    print(run(args.methods, "quick" if args.quick else args.size, args.device, args.out, args.no_sweep))


if __name__ == "__main__":
    main()
