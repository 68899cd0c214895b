"""The one-line swap from lightly, measured: what makes GroCo learn at lightly's settings.

    python benchmarks/lightly_swap.py                      # every configuration, 2 seeds
    python benchmarks/lightly_swap.py --configs ntxent groco_gs50 --steps 50 --seeds 0
    python benchmarks/lightly_swap.py --seeds 0 --json s0.jsonl   # one process per seed, then:
    python benchmarks/lightly_swap.py --report s0.jsonl s1.jsonl   # the table of all recorded runs

lightly's quick-start loop (the one ``examples/groco_lightning.py`` runs): lightly's
``SimCLRTransform`` makes two views of each embedded digit (32x32 canvas, no blur, min
scale 0.3, as the examples), a backbone and a projection head embed them, the criterion
is ``NTXentLoss()`` or a ``GroCoLoss`` variant, and ``SGD(lr, momentum=0.9)`` at batch
128 trains every configuration for the same number of steps from the same seeded
initialisation and the same augmented views (drawn once per seed). The backbone is the
project's ``SmallCNN`` (widths 16, 32, 64; three input channels) in place of the
examples' ResNet-18, so that a run takes a minute or two on one CPU thread. Only the
criterion (and, where a row says so, the projection head or the learning rate) changes
between rows.

Each run reports the weighted-kNN accuracy (k=20, T=0.07, L2-normalised backbone
features, bank = the train split, queries = the test split, as the project evaluates)
before and after training, and how much the loss fell: the mean of the last 10 steps'
losses against the mean of the first 10, in percent of the latter. Prints a markdown
table (mean and spread over seeds) and, with ``--json``, writes every run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from result_record import record_on_exit  # noqa: E402

LIGHTLY_LR = 0.06
BATCH = 128
# The authors' rule lr = 0.75 x 32 x batch / 1024 (METHODS.md): 3.0 at batch 128, 50x lightly's 0.06.
AUTHORS_LR = 0.75 * 32 * BATCH / 1024


def _groco(**kwargs) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        from rankssl.losses import GroCoLoss

        return GroCoLoss(**kwargs)
    return make


def _ntxent() -> nn.Module:
    from lightly.loss import NTXentLoss

    return NTXentLoss()


# name -> (criterion factory, head ("lightly" = SimCLRProjectionHead, "groco" = GroCoProjectionHead), lr, label)
CONFIGS: Dict[str, Tuple[Callable[[], nn.Module], str, float, str]] = {
    "ntxent": (_ntxent, "lightly", LIGHTLY_LR, "NTXentLoss()"),
    "groco": (_groco(), "lightly", LIGHTLY_LR, "GroCoLoss()"),
    "groco_gs10": (_groco(gradient_scale=10), "lightly", LIGHTLY_LR, "GroCoLoss(gradient_scale=10)"),
    "groco_gs50": (_groco(gradient_scale=50), "lightly", LIGHTLY_LR, "GroCoLoss(gradient_scale=50)"),
    "groco_gs100": (_groco(gradient_scale=100), "lightly", LIGHTLY_LR, "GroCoLoss(gradient_scale=100)"),
    "groco_gs300": (_groco(gradient_scale=300), "lightly", LIGHTLY_LR, "GroCoLoss(gradient_scale=300)"),
    "groco_gs50_k3": (_groco(gradient_scale=50, n_negatives=3), "lightly", LIGHTLY_LR,
                      "GroCoLoss(gradient_scale=50, n_negatives=3)"),
    "groco_gs50_k30": (_groco(gradient_scale=50, n_negatives=30), "lightly", LIGHTLY_LR,
                       "GroCoLoss(gradient_scale=50, n_negatives=30)"),
    "groco_gs50_s4": (_groco(gradient_scale=50, steepness=4.0), "lightly", LIGHTLY_LR,
                      "GroCoLoss(gradient_scale=50, steepness=4)"),
    "groco_gs50_s10": (_groco(gradient_scale=50, steepness=10.0), "lightly", LIGHTLY_LR,
                       "GroCoLoss(gradient_scale=50, steepness=10)"),
    "groco_gs50_nostop": (_groco(gradient_scale=50, stop_gradient=False), "lightly", LIGHTLY_LR,
                          "GroCoLoss(gradient_scale=50, stop_gradient=False)"),
    "groco_gs50_grocohead": (_groco(gradient_scale=50), "groco", LIGHTLY_LR,
                             "GroCoLoss(gradient_scale=50), GroCo head"),
    "groco_grocohead": (_groco(), "groco", LIGHTLY_LR, "GroCoLoss(), GroCo head"),
    "groco_lr3": (_groco(), "lightly", AUTHORS_LR, f"GroCoLoss() at the authors' lr {AUTHORS_LR:g}"),
    "ntxent_lr3": (_ntxent, "lightly", AUTHORS_LR, f"NTXentLoss() at lr {AUTHORS_LR:g}"),
}


def eval_tensors(split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """The un-augmented canvas split as the transform would feed it: RGB, ImageNet-normalised."""
    from lightly.transforms.utils import IMAGENET_NORMALIZE
    from rankssl.mm.digits import make_digits_canvas

    images, labels = make_digits_canvas(split)
    x = torch.tensor(images, dtype=torch.float32).div(255.0)[:, None].expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_NORMALIZE["mean"])[None, :, None, None]
    std = torch.tensor(IMAGENET_NORMALIZE["std"])[None, :, None, None]
    return (x - mean) / std, torch.as_tensor(labels.copy())


def knn_accuracy(backbone: nn.Module, bank: Tuple[torch.Tensor, torch.Tensor],
                 query: Tuple[torch.Tensor, torch.Tensor]) -> float:
    """Weighted kNN top-1 (%) of the frozen backbone: k=20, T=0.07, as the project evaluates."""
    from rankssl.mm.metrics import weighted_knn_predict

    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        bank_features, query_features = backbone(bank[0]), backbone(query[0])
    backbone.train(was_training)
    scores = weighted_knn_predict(query_features, bank_features, bank[1], 10, k=20, temperature=0.07)
    return 100.0 * (scores.argmax(1) == query[1]).float().mean().item()


def build(head: str, seed: int) -> Tuple[nn.Module, nn.Module]:
    from lightly.models.modules import SimCLRProjectionHead
    from rankssl.models import GroCoProjectionHead, SmallCNN

    torch.manual_seed(seed)
    backbone = SmallCNN(in_channels=3, widths=(16, 32, 64))
    if head == "lightly":
        projection = SimCLRProjectionHead(backbone.out_dim, 512, 128)
    else:
        projection = GroCoProjectionHead(backbone.out_dim, 512, 128)
    return backbone, projection


def draw_views(steps: int, seed: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches of two lightly SimCLR views (as the examples make them), float16 to save memory."""
    from lightly.transforms import SimCLRTransform
    from digits_data import digits_loader

    transform = SimCLRTransform(input_size=32, gaussian_blur=0.0, min_scale=0.3)
    torch.manual_seed(1000 + seed)
    batches: List[Tuple[torch.Tensor, torch.Tensor]] = []
    while len(batches) < steps:
        for (view0, view1), _ in digits_loader(transform, BATCH):
            batches.append((view0.half(), view1.half()))
            if len(batches) == steps:
                break
    return batches


def run(name: str, batches, seed: int, bank, query) -> Dict[str, float]:
    make_criterion, head, lr, _ = CONFIGS[name]
    backbone, projection = build(head, seed)
    criterion = make_criterion()
    optimizer = torch.optim.SGD([*backbone.parameters(), *projection.parameters()], lr=lr, momentum=0.9)
    before = knn_accuracy(backbone, bank, query)
    losses: List[float] = []
    start = time.time()
    for view0, view1 in batches:
        loss = criterion(projection(backbone(view0.float())), projection(backbone(view1.float())))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    after = knn_accuracy(backbone, bank, query)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    finite = all(map(lambda v: v == v and abs(v) != float("inf"), losses))
    return dict(config=name, seed=seed, knn_before=before, knn_after=after,
                loss_drop_pct=100.0 * (first - last) / abs(first) if finite else float("nan"),
                seconds=time.time() - start)


def table(results: List[Dict[str, float]], names: List[str]) -> str:
    def fmt(values: List[float]) -> str:
        mean = sum(values) / len(values)
        if len(values) == 1:
            return f"{mean:.1f}"
        spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        return f"{mean:.1f} ± {spread:.1f}"

    lines = ["| configuration | lr | seeds | kNN before (%) | kNN after (%) | kNN gain (points) | loss drop (%) |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        rows = [r for r in results if r["config"] == name]
        if not rows:
            continue
        _, _, lr, label = CONFIGS[name]
        lines.append(f"| {label} | {lr:g} | {len(rows)} | {fmt([r['knn_before'] for r in rows])} | "
                     f"{fmt([r['knn_after'] for r in rows])} | "
                     f"{fmt([r['knn_after'] - r['knn_before'] for r in rows])} | "
                     f"{fmt([r['loss_drop_pct'] for r in rows])} |")
    return "\n".join(lines)


def main(argv=None) -> List[Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per run (batch 128)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--json", help="append every run as one JSON line to this file")
    parser.add_argument("--report", nargs="+", metavar="JSONL",
                        help="train nothing: print the table of the runs recorded in these --json files")
    parser.add_argument("--record", metavar="PATH", help="also write the printed tables as a record for report.py")
    args = parser.parse_args(argv)
    record_on_exit(args.record)
    if args.report:
        results = [json.loads(line) for path in args.report for line in open(path) if line.strip()]
        print(table(results, [name for name in CONFIGS if name in args.configs]))
        return results
    # GroCo's small gradients make subnormal floats that slow CPUs tenfold (GroCoLoss's note).
    torch.set_flush_denormal(True)
    bank, query = eval_tensors("train"), eval_tensors("test")
    results = []
    for seed in args.seeds:
        batches = draw_views(args.steps, seed)
        for name in args.configs:
            result = run(name, batches, seed, bank, query)
            results.append(result)
            print(json.dumps(result), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(result) + "\n")
    print(table(results, args.configs))
    return results


if __name__ == "__main__":
    main()
