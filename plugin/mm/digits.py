"""The embedded data set: scikit-learn's handwritten digits on a larger noisy canvas.

Protocol (deterministic, offline):

1. ``sklearn.datasets.load_digits``: 1,797 real 8x8 grey images, 10 classes.
2. A stratified split (``train_test_split(test_size=0.2, random_state=0)``):
   1,437 train / 360 test images.
3. Each image is upsampled (bilinear) to a random size between ``min_size`` and
   ``max_size`` pixels, pasted at a random position on a ``canvas`` x ``canvas``
   background, and Gaussian noise is added; pixel values are clipped to [0, 255].
   The random placement comes from ``numpy.random.default_rng(seed + offset)``, with a
   different offset for the two splits, so every call gives the same images.

Because the digit's position and size vary, nearest neighbours in raw pixel space are
poor, while a model trained to be invariant to crops and rescaling recognises the
digit: the task rewards the augmentations, which is what self-supervised methods learn.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["make_digits_canvas"]

_SPLITS = {"train": 0, "test": 1}


@lru_cache(maxsize=8)
def make_digits_canvas(
    split: str = "train",
    canvas: int = 32,
    min_size: int = 10,
    max_size: int = 20,
    noise: float = 30.0,
    seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Generate the digits canvas split.

    Args:
        split: ``'train'`` (1,437 images) or ``'test'`` (360 images).
        canvas: side of the square canvas in pixels.
        min_size, max_size: range of the digit's side after upsampling.
        noise: standard deviation of the additive Gaussian noise (pixel scale 0..255).
        seed: base seed of the placement and noise.

    Returns:
        images (N, canvas, canvas) uint8 and labels (N,) int64. Read-only arrays.

    Example:
        >>> images, labels = make_digits_canvas('test')
        >>> images.shape, images.dtype, labels.shape
        ((360, 32, 32), dtype('uint8'), (360,))
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if not 1 <= min_size <= max_size <= canvas:
        raise ValueError(f"Need 1 <= min_size <= max_size <= canvas, got {min_size}, {max_size}, {canvas}.")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    train_idx, test_idx = train_test_split(indices, test_size=0.2, random_state=0, stratify=digits.target)
    idx = np.sort(train_idx if split == "train" else test_idx)
    small = torch.from_numpy(digits.images[idx].astype(np.float32) * (255.0 / 16.0)).unsqueeze(1)
    labels = digits.target[idx].astype(np.int64)

    rng = np.random.default_rng(seed * 7919 + _SPLITS[split])
    images = rng.normal(0.0, noise, size=(len(idx), canvas, canvas)).astype(np.float32)
    sizes = rng.integers(min_size, max_size + 1, size=len(idx))
    for i, size in enumerate(sizes):
        digit = F.interpolate(small[i : i + 1], size=(int(size), int(size)), mode="bilinear", align_corners=False)
        top, left = rng.integers(0, canvas - size + 1, size=2)
        images[i, top : top + size, left : left + size] += digit[0, 0].numpy()
    images = np.clip(images, 0, 255).astype(np.uint8)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels
