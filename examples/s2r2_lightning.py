"""S2R2 (Varamesh et al., arXiv:2010.07258) as a PyTorch Lightning module, lightly style.

    python examples/s2r2_lightning.py --max-steps 2000 --num-views 4
    python examples/s2r2_lightning.py --toy --max-steps 3   # seconds, on CPU

S2R2 ranks many views of each image by average precision: lightly's
``MultiViewTransform`` makes ``--num-views`` SimCLR views, and
``rankssl.losses.S2R2Loss`` takes the list of their embeddings.

``num_bins=40`` (``--num-bins``) is the one setting changed for lightly's SGD lr 0.06:
the default 640 bins (chosen so the AP estimate is within 0.01 of the exact AP) give
each score a gradient only from its neighbours within 2/640 in cosine, too local for an
untrained network to learn reliably in a short run. 30 steps of the small CNN (batch 128, 4 views), kNN gain
on the digits, seeds 0 / 1: 640 bins -1.9 / +4.7 (at seed 0 also lr 1.0: -11.9; loss x50:
-10.3; 2 views: -13.9), 40 bins +17.2 / +16.4, 20 bins +15.6 / +16.7, 10 bins +6.4.
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from digits_data import add_common_args, digits_loader, finish_args, knn_accuracy, make_backbone, make_trainer
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRViewTransform
from lightly.transforms.multi_view_transform import MultiViewTransform

from rankssl.losses import S2R2Loss


class S2R2Model(pl.LightningModule):
    def __init__(
        self, lr: float = 0.06, hidden_dim: int = 512, out_dim: int = 128, backbone: str = "resnet18",
        num_bins: int = 40,
    ) -> None:
        super().__init__()
        self.backbone, features = make_backbone(backbone)
        self.projection_head = SimCLRProjectionHead(features, hidden_dim, out_dim)
        # 1 - AP of each view's ranking of all views. num_bins=40: the default 640 bins (an AP estimate
        # within 0.01 of the exact one) pass gradients too locally to learn at lr 0.06 (see the docstring).
        self.criterion = S2R2Loss(num_bins=num_bins)
        self.lr = lr
        self.losses = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))

    def training_step(self, batch, batch_index):
        views, _ = batch
        loss = self.criterion([self(view) for view in views])
        self.losses.append(loss.item())
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--num-views", type=int, default=4)
    parser.add_argument("--num-bins", type=int, default=40, help="the AP estimator's bins (S2R2Loss's default: 640)")
    return finish_args(parser.parse_args(argv))


def build(args: argparse.Namespace) -> S2R2Model:
    pl.seed_everything(0, verbose=False)
    return S2R2Model(args.lr, *((64, 32) if args.toy else (512, 128)), backbone=args.backbone, num_bins=args.num_bins)


def fit(model: S2R2Model, args: argparse.Namespace) -> S2R2Model:
    view = SimCLRViewTransform(input_size=args.image_size, gaussian_blur=0.0, min_scale=0.3)
    transform = MultiViewTransform([view] * args.num_views)
    loader = digits_loader(transform, args.batch_size, 32 if args.toy else None)
    make_trainer(args).fit(model, loader)
    return model


def main(argv=None) -> S2R2Model:
    args = parse_args(argv)
    model = build(args)
    before = knn_accuracy(model.backbone, args.image_size)
    fit(model, args)
    print(f"kNN top-1 on the digits (test vs train split): {before:.1f}% untrained, "
          f"{knn_accuracy(model.backbone, args.image_size):.1f}% after {args.max_steps} steps")
    return model


if __name__ == "__main__":
    main()
