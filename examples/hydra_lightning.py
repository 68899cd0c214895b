"""Hydra (Wu et al., arXiv:2410.18200) as a PyTorch Lightning module, lightly style.

    python examples/hydra_lightning.py --max-steps 2000
    python examples/hydra_lightning.py --toy --max-steps 3   # seconds, on CPU

Hydra learns from pairs of classes through a learned feature filter, so it takes the
class labels next to the two views: ``criterion([z0, z1], labels)``. The filter is a
module of the loss; Lightning's ``self.parameters()`` includes it, so the optimizer
trains it with the network.
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from digits_data import add_common_args, digits_loader, finish_args, knn_accuracy, make_backbone, make_trainer
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform

from rankssl.losses import HydraLoss


class HydraModel(pl.LightningModule):
    def __init__(
        self, lr: float = 0.06, hidden_dim: int = 512, out_dim: int = 128, backbone: str = "resnet18",
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.backbone, features = make_backbone(backbone)
        self.projection_head = SimCLRProjectionHead(features, hidden_dim, out_dim)
        self.criterion = HydraLoss(num_classes=num_classes, dim=out_dim, embed_dim=64, hidden_dim=128)
        self.lr = lr
        self.losses = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))

    def training_step(self, batch, batch_index):
        (view0, view1), labels = batch
        loss = self.criterion([self(view0), self(view1)], labels)
        self.losses.append(loss.item())
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    return finish_args(parser.parse_args(argv))


def build(args: argparse.Namespace) -> HydraModel:
    pl.seed_everything(0, verbose=False)
    return HydraModel(args.lr, *((64, 32) if args.toy else (512, 128)), backbone=args.backbone)


def fit(model: HydraModel, args: argparse.Namespace) -> HydraModel:
    transform = SimCLRTransform(input_size=args.image_size, gaussian_blur=0.0, min_scale=0.3)
    loader = digits_loader(transform, args.batch_size, 32 if args.toy else None)
    make_trainer(args).fit(model, loader)
    return model


def main(argv=None) -> HydraModel:
    args = parse_args(argv)
    model = build(args)
    before = knn_accuracy(model.backbone, args.image_size)
    fit(model, args)
    print(f"kNN top-1 on the digits (test vs train split): {before:.1f}% untrained, "
          f"{knn_accuracy(model.backbone, args.image_size):.1f}% after {args.max_steps} steps")
    return model


if __name__ == "__main__":
    main()
