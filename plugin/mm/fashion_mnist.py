"""Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747) read from its IDX files, never downloaded.

70,000 grey 28x28 images of 10 clothing classes (60,000 train, 10,000 test). The four
files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each optionally ``.gz``) are found under ``data_root`` in
torchvision's layout (``data_root/FashionMNIST/raw/``, what
``torchvision.datasets.FashionMNIST(data_root, download=True)`` writes) or flat in
``data_root`` itself (the Debian package ``dataset-fashion-mnist`` installs them in
``/usr/share/datasets/fashion-mnist``).

Example::

    >>> from rankssl.mm.fashion_mnist import find_fashion_mnist
    >>> find_fashion_mnist('/nonexistent') is None
    True
"""

from __future__ import annotations

import gzip
import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from rankssl.mm.datasets import _ImageDataset, _missing

__all__ = ["FashionMNIST", "find_fashion_mnist", "read_idx", "DEBIAN_ROOT"]

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type codes (http://yann.lecun.com/exdb/mnist/): only unsigned bytes occur in (Fashion-)MNIST.
_IDX_UBYTE = 0x08


def _find_file(folder: str, name: str) -> Optional[str]:
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def find_fashion_mnist(data_root: str) -> Optional[Dict[str, Tuple[str, str]]]:
    """``{'train': (images, labels), 'test': (images, labels)}`` paths under ``data_root``, or ``None``.

    torchvision's layout (``data_root/FashionMNIST/raw``) is tried first, then ``data_root`` itself.
    """
    for folder in (os.path.join(data_root, "FashionMNIST", "raw"), data_root):
        found = {split: tuple(_find_file(folder, n) for n in names) for split, names in _FILES.items()}
        if all(path is not None for pair in found.values() for path in pair):
            return found  # type: ignore[return-value]
    return None


def read_idx(path: str) -> np.ndarray:
    """An IDX file (plain or gzip) as a uint8 array of the shape its header gives.

    Raises ``ValueError`` naming the file when the header or the size is wrong (a damaged
    or truncated copy).
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read the IDX file ({exc}); the copy is damaged, replace it.") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (header {data[:4].hex()}).")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(
            f"{path}: {len(data)} bytes, expected {expected} for shape {shape}; the file is truncated "
            "or damaged, replace it."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


class FashionMNIST(_ImageDataset):
    """Fashion-MNIST from ``data_root`` (torchvision's layout or the flat IDX files), never downloaded.

    Items are dicts with ``img`` (a (28, 28) uint8 array) and ``gt_label`` (0-9).

    Args:
        data_root: folder holding ``FashionMNIST/raw/*-ubyte[.gz]`` or the four files themselves.
        split: ``'train'`` (60,000) or ``'test'`` (10,000).
        pipeline, indices, test_mode: as in mmengine's ``BaseDataset`` (``indices=10000``: the
            first 10,000 images, a fixed subset).

    Example::

        >>> ds = FashionMNIST('/usr/share/datasets/fashion-mnist', split='test')  # doctest: +SKIP
        >>> ds[0]['img'].shape, ds[0]['gt_label']  # doctest: +SKIP
        ((28, 28), 9)
    """

    METAINFO = {"classes": CLASSES}

    @staticmethod
    def check_data_root(data_root: str = "data/fashion-mnist") -> None:
        """Raise ``FileNotFoundError`` with instructions when the four IDX files are not under ``data_root``."""
        if find_fashion_mnist(data_root) is None:
            raise _missing(
                "FashionMNIST",
                data_root,
                "Expected train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                "t10k-labels-idx1-ubyte (optionally .gz) in DIR/FashionMNIST/raw or in DIR itself. On Debian or "
                f"Ubuntu `apt-get install dataset-fashion-mnist` puts them in {DEBIAN_ROOT}; elsewhere `python -c "
                "\"import torchvision; torchvision.datasets.FashionMNIST('DIR', download=True)\"` on a machine with "
                "network access.",
            )

    def __init__(self, data_root: str = "data/fashion-mnist", split: str = "train", **kwargs: Any) -> None:
        if split not in _FILES:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
        self.check_data_root(data_root)
        paths = find_fashion_mnist(data_root)
        assert paths is not None
        images_path, labels_path = paths[split]
        self.images = read_idx(images_path)
        self.labels = read_idx(labels_path)
        if self.images.ndim != 3 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise ValueError(
                f"{images_path} and {labels_path}: {self.images.shape} images for "
                f"{self.labels.shape} labels; expected (N, 28, 28) and (N,)."
            )
        super().__init__(**kwargs)

    def _labels(self) -> Union[Sequence[int], np.ndarray]:
        return self.labels

    def _load_image(self, index: int) -> np.ndarray:
        return self.images[index]
