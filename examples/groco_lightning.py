"""GroCo (Shvetsova et al., ICCV 2023) as a PyTorch Lightning module, lightly style.

    python examples/groco_lightning.py --max-steps 2000
    python examples/groco_lightning.py --toy --max-steps 3   # seconds, on CPU

lightly's SimCLR transform makes two views, a torchvision ResNet-18 (``--backbone
smallcnn``: a small CNN, for a CPU) and lightly's projection head embed them, and
``rankssl.losses.GroCoLoss(gradient_scale=50)`` replaces ``NTXentLoss()``: that is the
one-line change for a lightly user. ``gradient_scale=50`` is for lightly's SGD lr 0.06:
the paper's loss (the default) is made for the authors' lr 24 at batch 1024, and at
lr 0.06 it barely learns (benchmarks/lightly_swap.py). The run ends by printing the kNN
accuracy on the digits before and after training.
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from digits_data import add_common_args, digits_loader, finish_args, knn_accuracy, make_backbone, make_trainer
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform

from rankssl.losses import GroCoLoss


class GroCoModel(pl.LightningModule):
    def __init__(
        self, lr: float = 0.06, hidden_dim: int = 512, out_dim: int = 128, backbone: str = "resnet18",
        n_negatives: int = 10,
    ) -> None:
        super().__init__()
        self.backbone, features = make_backbone(backbone)
        self.projection_head = SimCLRProjectionHead(features, hidden_dim, out_dim)
        # was: lightly.loss.NTXentLoss(). gradient_scale=50: GroCo's gradients are small (the authors train
        # at lr 24); at lightly's lr 0.06 this learns, the default does not (benchmarks/lightly_swap.py).
        self.criterion = GroCoLoss(n_negatives=n_negatives, gradient_scale=50)
        self.lr = lr
        self.losses = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))

    def training_step(self, batch, batch_index):
        (view0, view1), _ = batch
        loss = self.criterion(self(view0), self(view1))
        self.losses.append(loss.item())
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--n-negatives", type=int, default=10, help="hardest negatives per anchor (< batch size)")
    return finish_args(parser.parse_args(argv))


def build(args: argparse.Namespace) -> GroCoModel:
    pl.seed_everything(0, verbose=False)
    sizes = (64, 32) if args.toy else (512, 128)
    return GroCoModel(args.lr, *sizes, backbone=args.backbone, n_negatives=min(args.n_negatives, args.batch_size - 1))


def fit(model: GroCoModel, args: argparse.Namespace) -> GroCoModel:
    transform = SimCLRTransform(input_size=args.image_size, gaussian_blur=0.0, min_scale=0.3)
    loader = digits_loader(transform, args.batch_size, 32 if args.toy else None)
    make_trainer(args).fit(model, loader)
    return model


def main(argv=None) -> GroCoModel:
    args = parse_args(argv)
    model = build(args)
    before = knn_accuracy(model.backbone, args.image_size)
    fit(model, args)
    print(f"kNN top-1 on the digits (test vs train split): {before:.1f}% untrained, "
          f"{knn_accuracy(model.backbone, args.image_size):.1f}% after {args.max_steps} steps")
    return model


if __name__ == "__main__":
    main()
