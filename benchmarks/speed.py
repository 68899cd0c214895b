"""Speed and memory of every loss against its peer, and each algorithm's training step.

    python benchmarks/speed.py                   # CPU, the sizes below
    python benchmarks/speed.py --quick           # toy sizes (the test suite runs it)
    python benchmarks/speed.py --device cuda     # on a GPU, with mixed precision for the step

Losses, forward + backward on the same random embeddings, peer first:

* GroCo (rankssl) vs lightly's ``NTXentLoss`` (SimCLR), 2 views;
* S2R2 (rankssl, binned and sigmoid estimators) vs pytorch-metric-learning's
  ``FastAPLoss`` on the same items with image labels;
* Hydra (rankssl) vs pytorch-metric-learning's ``SupConLoss``.

Training step: ResNet-18 + projection head + loss, SGD, batch 256 of 32x32 images
(2 views; S2R2 4), against SimCLR's step; the table gives the loss's share of the step
time. The sorting networks against diffsort are in ``bench_sorting.py`` and the AP
estimators in detail in ``bench_ap.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Callable, Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import machine_description, median_time, peak_memory_in_subprocess, peak_memory_of  # noqa: E402
from result_record import record_on_exit  # noqa: E402


def _embeddings(batch: int, dim: int, views: int, device: str, seed: int = 0) -> List[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, dim, generator=generator).to(device).requires_grad_(True) for _ in range(views)]


def _labels(batch: int, classes: int, device: str) -> torch.Tensor:
    return (torch.arange(batch) % classes).to(device)


def loss_case(name: str, batch: int, dim: int, device: str) -> Callable[[], None]:
    """A forward + backward closure for one loss at one size."""
    from lightly.loss import NTXentLoss
    from pytorch_metric_learning.losses import FastAPLoss, SupConLoss

    from rankssl.losses import GroCoLoss, HydraLoss, S2R2Loss

    two = _embeddings(batch, dim, 2, device)
    four = _embeddings(batch, dim, 4, device)
    labels = _labels(batch, 100, device)

    def backward(loss):
        loss.backward()

    if name == "NTXentLoss":
        fn = NTXentLoss(temperature=0.5)
        return lambda: backward(fn(*two))
    if name == "GroCoLoss":
        fn = GroCoLoss(n_negatives=10)
        return lambda: backward(fn(*two))
    if name == "FastAPLoss":
        fn = FastAPLoss(num_bins=10)
        image_ids = torch.arange(batch, device=device).repeat(4)
        return lambda: backward(fn(torch.cat(four), image_ids))
    if name.startswith("S2R2Loss"):
        fn = S2R2Loss(estimator=name.split(":")[1])
        return lambda: backward(fn(four))
    if name == "SupConLoss":
        fn = SupConLoss(temperature=0.1)
        return lambda: backward(fn(torch.cat(two), labels.repeat(2)))
    if name == "HydraLoss":
        fn = HydraLoss(num_classes=100, dim=dim, seed=0).to(device)
        return lambda: backward(fn(two, labels))
    raise ValueError(name)


LOSS_PAIRS = [("NTXentLoss", "GroCoLoss"), ("FastAPLoss", "S2R2Loss:binned"), ("FastAPLoss", "S2R2Loss:sigmoid"),
              ("SupConLoss", "HydraLoss")]


def step_case(method: str, batch: int, device: str, amp: bool, measure_loss_only: bool = False) -> Callable[[], None]:
    """One training step of ResNet-18 + head + loss (or the loss alone on detached embeddings)."""
    import torchvision
    from lightly.loss import NTXentLoss

    from rankssl.losses import GroCoLoss, HydraLoss, S2R2Loss
    from rankssl.models import MLPHead

    views = 4 if method == "S2R2" else 2
    backbone = torchvision.models.resnet18(num_classes=10)
    backbone.fc = torch.nn.Identity()
    head = MLPHead(512, 512, 128, num_layers=2)
    loss_fn = {
        "SimCLR": lambda: NTXentLoss(temperature=0.5),
        "GroCo": lambda: GroCoLoss(n_negatives=10),
        "S2R2": lambda: S2R2Loss(),
        "Hydra": lambda: HydraLoss(num_classes=10, dim=128, seed=0),
    }[method]()
    model = torch.nn.ModuleList([backbone, head, loss_fn]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    images = [torch.randn(batch, 3, 32, 32, generator=generator).to(device) for _ in range(views)]
    labels = _labels(batch, 10, device)

    def compute(embeddings):
        if method == "Hydra":
            return loss_fn(list(embeddings), labels)
        return loss_fn(*embeddings) if views == 2 else loss_fn(list(embeddings))

    if measure_loss_only:
        with torch.no_grad():
            fixed = [head(backbone(x)).float() for x in images]

        def loss_only():
            embeddings = [e.clone().requires_grad_(True) for e in fixed]
            compute(embeddings).backward()

        return loss_only

    def step():
        with torch.autocast(device_type="cuda", enabled=amp and device.startswith("cuda")):
            embeddings = head(backbone(torch.cat(images))).float().chunk(views)
        loss = compute(embeddings)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def run_losses(batch: int, dim: int, device: str, repeats: int, in_process_memory: bool = False) -> List[Dict]:
    rows = []
    script = os.path.abspath(__file__)
    for peer, ours in LOSS_PAIRS:
        row = {"peer": peer, "ours": ours, "batch": batch, "dim": dim}
        for role, name in (("peer", peer), ("ours", ours)):
            row[f"{role}_ms"] = 1e3 * median_time(loss_case(name, batch, dim, device), device, repeats=repeats)
            case = {"kind": "loss", "name": name, "batch": batch, "dim": dim, "device": device}
            in_process = in_process_memory or device.startswith("cuda")
            row[f"{role}_mb"] = (peak_memory_of(loss_case(name, batch, dim, device), device)
                                 if in_process else peak_memory_in_subprocess(script, case)) / 2**20
        rows.append(row)
        print(
            f"| {ours} | {peer} | {batch} | {row['ours_ms']:.1f} | {row['peer_ms']:.1f} | "
            f"{row['peer_ms'] / row['ours_ms']:.2f}x | {row['ours_mb']:.1f} | {row['peer_mb']:.1f} |",
            flush=True,
        )
    return rows


def run_steps(batch: int, device: str, amp: bool, repeats: int) -> List[Dict]:
    rows = []
    simclr_ms = None
    for method in ("SimCLR", "GroCo", "S2R2", "Hydra"):
        step_ms = 1e3 * median_time(step_case(method, batch, device, amp), device, repeats=repeats, warmup=1)
        loss_ms = 1e3 * median_time(step_case(method, batch, device, amp, measure_loss_only=True), device, repeats=repeats)
        simclr_ms = simclr_ms or step_ms
        rows.append({"method": method, "step_ms": step_ms, "loss_ms": loss_ms})
        print(f"| {method} | {step_ms:.0f} | {step_ms / simclr_ms:.2f}x | {loss_ms:.1f} | {100 * loss_ms / step_ms:.1f}% |",
              flush=True)
    return rows


GROCO_SCALING = [
    # (batch, K, network)
    (512, 10, "odd_even"),
    (1024, 62, "odd_even"),
    (1024, 62, "bitonic_mirrored"),
    (1024, 1023, "bitonic"),
]
GROCO_SCALING_QUICK = [(16, 3, "odd_even"), (16, 15, "bitonic")]


def groco_case(batch: int, n_negatives: int, network: str, device: str, path: str) -> Callable[[], None]:
    """GroCoLoss forward + backward on 2 views of (batch, 128); path: default | torch | kernel.

    ``kernel`` times the fused GroCo kernel alone on the pre-ordered scores of the same
    views (the arithmetic of the sorting network and the loss, without the cosine
    similarities, top-k, sorts and autograd around it)."""
    from rankssl.losses import GroCoLoss

    two = _embeddings(batch, 128, 2, device)
    fn = GroCoLoss(n_negatives=n_negatives, sorting_network=network)
    if path == "kernel":
        from rankssl.ops import fused, get_network

        n = n_negatives + 1
        scores = torch.randn(2 * batch, n).sort(dim=1).values.contiguous()
        layers = get_network(network, n)
        loss, grad = torch.empty(2 * batch), torch.empty(2 * batch, n)
        return lambda: fused._run(layers, "cauchy", 1.0, 0.25, 2, scores, out=loss, grad_x=grad, num_neg=n_negatives)

    def step():
        previous = os.environ.get("RANKSSL_DISABLE_FUSED")
        if path == "torch":
            os.environ["RANKSSL_DISABLE_FUSED"] = "1"
        try:
            fn(*two).backward()
        finally:
            if path == "torch":
                if previous is None:
                    del os.environ["RANKSSL_DISABLE_FUSED"]
                else:
                    os.environ["RANKSSL_DISABLE_FUSED"] = previous

    return step


def run_groco_scaling(cases, device: str, repeats: int, torch_path_limit_s: float = 5.0) -> List[Dict]:
    """GroCoLoss (fused default path, pure-torch path, kernel alone) against NTXentLoss."""
    rows = []
    for batch, k, network in cases:
        row = {"batch": batch, "K": k, "network": network}
        row["ntxent_ms"] = 1e3 * median_time(loss_case("NTXentLoss", batch, 128, device), device, repeats=repeats)
        row["groco_ms"] = 1e3 * median_time(groco_case(batch, k, network, device, "default"), device, repeats=repeats)
        # The pure-torch path takes tens of seconds at K = 1023: time it once there.
        slow = row["groco_ms"] * 50 > 1e3 * torch_path_limit_s
        row["torch_ms"] = 1e3 * median_time(
            groco_case(batch, k, network, device, "torch"), device,
            repeats=1 if slow else repeats, warmup=0 if slow else 2,
        )
        from rankssl.ops import fused

        row["kernel_ms"] = (
            1e3 * median_time(groco_case(batch, k, network, device, "kernel"), device, repeats=repeats)
            if device == "cpu" and fused.available() else float("nan")
        )
        rows.append(row)
        print(
            f"| {batch} | {k} | {network} | {row['ntxent_ms']:.1f} | {row['groco_ms']:.1f} | {row['torch_ms']:.1f} | "
            f"{row['kernel_ms']:.2f} | {row['groco_ms'] / row['ntxent_ms']:.2f}x | "
            f"{row['torch_ms'] / row['ntxent_ms']:.2f}x | {row['torch_ms'] / row['groco_ms']:.1f}x |",
            flush=True,
        )
    return rows


GROCO_SCALING_HEADER = (
    "| batch | K | network | NTXent ms | GroCo ms (fused) | GroCo ms (torch path) | GroCo kernel alone ms "
    "| GroCo / NTXent time | torch path / NTXent time | speed-up of fused |\n|" + "---|" * 10
)


def main(argv=None) -> None:
    torch.set_flush_denormal(True)  # as rankssl.mm does for training
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--groco-scaling", action="store_true",
                        help="only GroCoLoss against NTXentLoss at large batches and K (2 views, D = 128)")
    parser.add_argument("--json", metavar="PATH", help="also write the printed tables as a record for report.py")
    args = parser.parse_args(argv)
    record_on_exit(args.json)
    if args.groco_scaling:
        print(f"# GroCoLoss vs NTXentLoss, forward + backward; {machine_description(args.device)}; "
              f"{datetime.date.today()}")
        print(GROCO_SCALING_HEADER)
        run_groco_scaling(GROCO_SCALING_QUICK if args.quick else GROCO_SCALING, args.device,
                          1 if args.quick else args.repeats)
        return
    if args.memory_case:
        case = json.loads(args.memory_case)
        print(peak_memory_of(loss_case(case["name"], case["batch"], case["dim"], case["device"]), case["device"]))
        return
    batch, step_batch, repeats = (16, 12, 1) if args.quick else (256, 256, args.repeats)
    print(f"# Losses, forward + backward; {machine_description(args.device)}; {datetime.date.today()}")
    print("| loss | peer | batch | ms | peer ms | peer / ours | MiB | peer MiB |\n|---|---|---|---|---|---|---|---|")
    run_losses(batch, 128, args.device, repeats, in_process_memory=args.quick)
    print(f"\n# Training step, ResNet-18 at 32x32, batch {step_batch}, "
          f"{'mixed precision' if args.device.startswith('cuda') else 'fp32'}")
    print("| method | step ms | vs SimCLR | loss fwd+bwd ms | loss share |\n|---|---|---|---|---|")
    run_steps(step_batch, args.device, args.device.startswith("cuda"), max(1, repeats // 2))


if __name__ == "__main__":
    main()
