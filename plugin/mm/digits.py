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

__all__ = [
    "make_digits_canvas",
    "make_two_digit_canvas",
    "two_digit_sources",
    "digit_split_indices",
    "related_class_pairs",
]

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


@lru_cache(maxsize=1)
def _sklearn_digits() -> Tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def digit_split_indices(split: str) -> np.ndarray:
    """Sorted indices into ``load_digits()`` of the digits canvas's ``split`` (the same stratified
    80/20 split, ``random_state=0``): the two-digit data draws its digits from these only."""
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    from sklearn.model_selection import train_test_split

    target = _sklearn_digits()[1]
    train_idx, test_idx = train_test_split(np.arange(len(target)), test_size=0.2, random_state=0, stratify=target)
    return np.sort(train_idx if split == "train" else test_idx)


@lru_cache(maxsize=8)
def two_digit_sources(split: str = "train", per_class: int = 30, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Which real digits make each two-digit image.

    For every class 00..99 (label = 10 * tens + units), ``per_class`` images; the tens
    digit is drawn uniformly from the split's images of digit ``tens`` and the units
    digit from those of digit ``units`` (``numpy.random.default_rng``), so a training
    image never contains a test digit.

    Returns:
        sources (N, 2) int64 indices into ``load_digits()`` (tens, units) and labels (N,)
        int64, N = 100 * per_class, ordered by class. Read-only arrays.
    """
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}.")
    target = _sklearn_digits()[1]
    pool = digit_split_indices(split)
    by_digit = [pool[target[pool] == d] for d in range(10)]
    rng = np.random.default_rng(seed * 7919 + 100 + _SPLITS[split])
    labels = np.repeat(np.arange(100, dtype=np.int64), per_class)
    tens = np.array([rng.choice(by_digit[y // 10]) for y in labels], dtype=np.int64)
    units = np.array([rng.choice(by_digit[y % 10]) for y in labels], dtype=np.int64)
    sources = np.stack((tens, units), axis=1)
    sources.setflags(write=False)
    labels.setflags(write=False)
    return sources, labels


@lru_cache(maxsize=8)
def make_two_digit_canvas(
    split: str = "train",
    per_class: int = 30,
    canvas: int = 32,
    min_size: int = 8,
    max_size: int = 16,
    noise: float = 30.0,
    seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """The two-digit data set: 100 classes (00 to 99) built from the same real digits.

    Each image shows two of scikit-learn's digits side by side, the tens digit in the
    left half of the canvas and the units digit in the right half, each drawn from the
    split it belongs to (:func:`two_digit_sources`). As on the digits canvas
    (:func:`make_digits_canvas`), each digit is upsampled (bilinear) to a random size
    between ``min_size`` and ``max_size`` (the default range is the single-digit one scaled
    to a half canvas), pasted at a random position inside its half, and Gaussian noise is
    added; values are clipped to [0, 255]. Seeded and offline.

    Two classes are *related* when they share the tens or the units digit: each class has
    18 related classes, and 900 of the 4,950 pairs of distinct classes are related.

    Args:
        split: ``'train'`` (100 x ``per_class`` images from the 1,437 training digits) or
            ``'test'`` (from the 360 test digits).
        per_class: images per class.
        canvas, min_size, max_size, noise, seed: the canvas protocol (``max_size`` must fit
            a half canvas).

    Returns:
        images (N, canvas, canvas) uint8 and labels (N,) int64 in [0, 100). Read-only.

    Example:
        >>> images, labels = make_two_digit_canvas('test', per_class=2)
        >>> images.shape, int(labels.max())
        ((200, 32, 32), 99)
    """
    if not 1 <= min_size <= max_size <= canvas // 2:
        raise ValueError(f"Need 1 <= min_size <= max_size <= canvas // 2, got {min_size}, {max_size}, {canvas}.")
    sources, labels = two_digit_sources(split, per_class, seed)
    digits = _sklearn_digits()[0].astype(np.float32) * (255.0 / 16.0)
    rng = np.random.default_rng(seed * 7919 + 200 + _SPLITS[split])
    half = canvas // 2
    images = rng.normal(0.0, noise, size=(len(labels), canvas, canvas)).astype(np.float32)
    sizes = rng.integers(min_size, max_size + 1, size=(len(labels), 2))
    tops = rng.integers(0, canvas - sizes + 1)
    lefts = np.array([0, half]) + rng.integers(0, half - sizes + 1)
    for size in np.unique(sizes):  # upsample all digits of one size at once
        rows, slots = np.nonzero(sizes == size)
        small = torch.from_numpy(digits[sources[rows, slots]]).unsqueeze(1)
        resized = F.interpolate(small, size=(int(size), int(size)), mode="bilinear", align_corners=False)[:, 0].numpy()
        for digit, i, slot in zip(resized, rows, slots, strict=True):
            top, left = tops[i, slot], lefts[i, slot]
            images[i, top : top + size, left : left + size] += digit
    images = np.clip(images, 0, 255).astype(np.uint8)
    images.setflags(write=False)
    return images, labels


def related_class_pairs(num_classes: int = 100) -> np.ndarray:
    """(C, C) boolean: two distinct two-digit classes share the tens or the units digit."""
    c = np.arange(num_classes)
    tens, units = c // 10, c % 10
    related = (tens[:, None] == tens[None, :]) | (units[:, None] == units[None, :])
    np.fill_diagonal(related, False)
    return related
