"""Shared pieces of the Lightning examples: the embedded digits with lightly views, a backbone, kNN.

The digits are scikit-learn's 8x8 handwritten digits pasted at random sizes and
positions on a noisy 32x32 canvas (:func:`rankssl.mm.digits.make_digits_canvas`): real
images, offline, with no download. :func:`knn_accuracy` says whether a run learned: the
weighted kNN top-1 (k=20, T=0.07) of the backbone's features on the test split against
the train split, the evaluation the project uses everywhere.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torchvision
from lightly.transforms.utils import IMAGENET_NORMALIZE
from PIL import Image
from rankssl.mm.digits import make_digits_canvas
from rankssl.mm.metrics import weighted_knn_predict
from rankssl.models import SmallCNN
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


BACKBONES = {"resnet18": (resnet18_backbone, 512), "smallcnn": (lambda: SmallCNN(3, widths=(16, 32, 64)), 64)}


def make_backbone(name: str):
    """``(module, feature dim)``: ``resnet18`` (the default) or ``smallcnn`` (16-32-64 channels, seconds on a CPU)."""
    make, dim = BACKBONES[name]
    return make(), dim


def _eval_split(split: str, image_size: int):
    """The un-augmented canvas as the SimCLR transform feeds it: RGB, resized, ImageNet-normalised."""
    images, labels = make_digits_canvas(split)
    x = torch.tensor(images, dtype=torch.float32).div(255.0)[:, None].expand(-1, 3, -1, -1)
    if image_size != x.shape[-1]:
        x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True)
    mean = torch.tensor(IMAGENET_NORMALIZE["mean"])[None, :, None, None]
    std = torch.tensor(IMAGENET_NORMALIZE["std"])[None, :, None, None]
    return (x - mean) / std, torch.as_tensor(labels.copy())


def knn_accuracy(backbone: torch.nn.Module, image_size: int = 32) -> float:
    """Weighted kNN top-1 (%) of ``backbone``'s features: test digits against the train digits (k=20, T=0.07)."""
    (bank, bank_labels), (query, query_labels) = _eval_split("train", image_size), _eval_split("test", image_size)
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    with torch.no_grad():
        bank_features = torch.cat([backbone(x.to(device)).cpu() for x in bank.split(256)])
        query_features = torch.cat([backbone(x.to(device)).cpu() for x in query.split(256)])
    backbone.train(was_training)
    scores = weighted_knn_predict(query_features, bank_features, bank_labels, 10, k=20, temperature=0.07)
    return 100.0 * (scores.argmax(1) == query_labels).float().mean().item()


def add_common_args(parser) -> None:
    parser.add_argument("--max-steps", type=int, default=2000, help="optimizer steps to train")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.06)
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="resnet18",
                        help="resnet18 (torchvision's, 3x3 stem) or smallcnn (a CPU run in seconds)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or model summary")
    parser.add_argument("--toy", action="store_true", help="tiny run: 32 images, 16x16 crops, small head, quiet")


def finish_args(args):
    """``--toy``: 16x16 crops, batches of 8 from 32 images, a small head (a CPU test in seconds)."""
    args.image_size = 16 if args.toy else 32
    args.quiet = args.quiet or args.toy
    if args.toy:
        args.batch_size = min(args.batch_size, 8)
    return args


def make_trainer(args):
    import pytorch_lightning as pl

    return pl.Trainer(
        max_steps=args.max_steps, accelerator="auto", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=not args.quiet, enable_model_summary=not args.quiet,
    )
