"""Shared pieces of the Lightning examples: the embedded digits with lightly views, a ResNet-18.

The digits are scikit-learn's 8x8 handwritten digits pasted at random sizes and
positions on a noisy 32x32 canvas (:func:`rankssl.mm.digits.make_digits_canvas`): real
images, offline, with no download.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torchvision
from PIL import Image
from rankssl.mm.digits import make_digits_canvas
from torch.utils.data import DataLoader, Dataset


class DigitsViews(Dataset):
    """``(views, label)`` per digit image, the views made by a lightly transform."""

    def __init__(self, transform: Callable, limit: Optional[int] = None) -> None:
        images, labels = make_digits_canvas("train")
        self.images, self.labels = images[:limit], labels[:limit]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index]).convert("RGB")
        return self.transform(image), int(self.labels[index])


def digits_loader(transform: Callable, batch_size: int, limit: Optional[int] = None) -> DataLoader:
    return DataLoader(DigitsViews(transform, limit), batch_size=batch_size, shuffle=True, drop_last=True)


def resnet18_backbone() -> torch.nn.Module:
    """torchvision's ResNet-18 for 32x32 inputs (3x3 stem, no max-pool), 512 features out."""
    resnet = torchvision.models.resnet18()
    resnet.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    resnet.maxpool = torch.nn.Identity()
    resnet.fc = torch.nn.Identity()
    return resnet


def add_common_args(parser) -> None:
    parser.add_argument("--max-steps", type=int, default=2000, help="optimizer steps to train")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.06)
    parser.add_argument("--toy", action="store_true", help="tiny run: 32 images, 16x16 crops, small head, quiet")


def finish_args(args):
    """``--toy``: 16x16 crops, batches of 8 from 32 images, a small head (a CPU test in seconds)."""
    args.image_size = 16 if args.toy else 32
    if args.toy:
        args.batch_size = min(args.batch_size, 8)
    return args


def make_trainer(args):
    import pytorch_lightning as pl

    return pl.Trainer(
        max_steps=args.max_steps, accelerator="auto", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=not args.toy, enable_model_summary=not args.toy,
    )
