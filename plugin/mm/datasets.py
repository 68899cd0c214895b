"""Datasets for mmengine recipes: the embedded digits canvas, torchvision data sets, fakes, kNN evaluation.

Every dataset yields pipeline dicts with ``img`` and ``gt_label`` and runs its
``pipeline`` (see :mod:`rankssl.mm.transforms`). Datasets never download: a missing
data root raises ``FileNotFoundError`` saying how to obtain the data.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset
from torch.utils.data import Dataset

from rankssl.mm.builder import build_from_config
from rankssl.mm.digits import make_digits_canvas, make_two_digit_canvas

__all__ = ["DigitsCanvas", "TwoDigitCanvas", "CIFAR10", "STL10", "ImageFolder", "FakeImageDataset", "KNNEvalDataset"]


class _ImageDataset(BaseDataset):
    """mmengine ``BaseDataset`` whose images come from ``_load_image(idx)``."""

    def __init__(
        self,
        pipeline: Sequence[Any] = (),
        indices: Optional[Union[int, Sequence[int]]] = None,
        test_mode: bool = False,
        lazy_init: bool = False,
        max_refetch: int = 1000,
    ) -> None:
        # Build the transforms in the rankssl scope, so the dataset also works when built by prefix.
        pipeline = [build_from_config(t, "TRANSFORMS") for t in pipeline]
        super().__init__(
            ann_file="",
            pipeline=pipeline,
            indices=indices,
            serialize_data=False,
            test_mode=test_mode,
            lazy_init=lazy_init,
            max_refetch=max_refetch,
        )

    def _labels(self) -> Union[Sequence[int], np.ndarray]:
        raise NotImplementedError

    def _load_image(self, index: int) -> Any:
        raise NotImplementedError

    def load_data_list(self) -> List[Dict[str, Any]]:
        return [{"gt_label": int(y), "source_index": i} for i, y in enumerate(self._labels())]

    def get_data_info(self, idx: int) -> Dict[str, Any]:
        info = dict(super().get_data_info(idx))
        info["img"] = self._load_image(info["source_index"])
        return info

    def get_gt_labels(self) -> np.ndarray:
        """Labels of all items (after ``indices``), used by label-aware samplers."""
        return np.array([self.get_data_info_meta(i)["gt_label"] for i in range(len(self))])

    def get_data_info_meta(self, idx: int) -> Dict[str, Any]:
        return super().get_data_info(idx)


class DigitsCanvas(_ImageDataset):
    """scikit-learn's digits on a noisy canvas (see :func:`rankssl.mm.digits.make_digits_canvas`).

    Args:
        split: ``'train'`` (1,437) or ``'test'`` (360).
        canvas, min_size, max_size, noise, seed: the canvas protocol.
        pipeline, indices, test_mode: as in mmengine's ``BaseDataset``.
    """

    METAINFO = {"classes": tuple(str(i) for i in range(10))}

    def __init__(
        self,
        split: str = "train",
        canvas: int = 32,
        min_size: int = 10,
        max_size: int = 20,
        noise: float = 30.0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.images, self.labels = make_digits_canvas(split, canvas, min_size, max_size, noise, seed)
        super().__init__(**kwargs)

    def _labels(self) -> Union[Sequence[int], np.ndarray]:
        return self.labels

    def _load_image(self, index: int) -> np.ndarray:
        return self.images[index]


class TwoDigitCanvas(_ImageDataset):
    """Two-digit numbers 00 to 99 (100 classes) made of scikit-learn's digits side by side.

    See :func:`rankssl.mm.digits.make_two_digit_canvas`: the tens and units digits come
    from the split's own digits only; two classes are related when they share a digit.

    Args:
        split: ``'train'`` (100 x ``per_class`` images) or ``'test'``.
        per_class: images per class (default 30 for train; the ``_base_`` config uses 10 for test).
        canvas, min_size, max_size, noise, seed: the canvas protocol.
        pipeline, indices, test_mode: as in mmengine's ``BaseDataset``.
    """

    METAINFO = {"classes": tuple(f"{i:02d}" for i in range(100))}

    def __init__(
        self,
        split: str = "train",
        per_class: int = 30,
        canvas: int = 32,
        min_size: int = 8,
        max_size: int = 16,
        noise: float = 30.0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.images, self.labels = make_two_digit_canvas(split, per_class, canvas, min_size, max_size, noise, seed)
        super().__init__(**kwargs)

    def _labels(self) -> Union[Sequence[int], np.ndarray]:
        return self.labels

    def _load_image(self, index: int) -> np.ndarray:
        return self.images[index]


class FakeImageDataset(_ImageDataset):
    """Random uint8 images with random labels, for smoke tests of recipes.

    Args:
        num_samples, image_size, channels, num_classes, seed: what to generate.
    """

    def __init__(
        self,
        num_samples: int = 32,
        image_size: int = 32,
        channels: int = 3,
        num_classes: int = 4,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        rng = np.random.default_rng(seed)
        shape = (num_samples, image_size, image_size) + ((channels,) if channels > 1 else ())
        self.images = rng.integers(0, 256, size=shape, dtype=np.uint8)
        self.labels = np.arange(num_samples) % num_classes
        super().__init__(**kwargs)

    def _labels(self) -> Union[Sequence[int], np.ndarray]:
        return self.labels

    def _load_image(self, index: int) -> np.ndarray:
        return self.images[index]


def _missing(name: str, root: str, how: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name}: data root {os.path.abspath(root)!r} not found or incomplete. rankssl never downloads data. {how} "
        f"Then point the recipe at it: `rankssl train RECIPE --data-root DIR` (also `rankssl test`) sets the "
        f"data_root of every dataset of the recipe (train, kNN bank and queries)."
    )


class _TorchvisionDataset(_ImageDataset):
    def _labels(self) -> Union[Sequence[int], np.ndarray]:
        return self._targets

    def _load_image(self, index: int) -> Any:
        return self.source[index][0]


class CIFAR10(_TorchvisionDataset):
    """torchvision's CIFAR-10 (``cifar-10-batches-py`` under ``data_root``), never downloaded.

    Args:
        data_root: folder that contains ``cifar-10-batches-py``.
        split: ``'train'`` or ``'test'``.
    """

    METAINFO = {"classes": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")}

    @staticmethod
    def check_data_root(data_root: str = "data/cifar10") -> None:
        """Raise ``FileNotFoundError`` with instructions when the data is not under ``data_root``."""
        if not os.path.isdir(os.path.join(data_root, "cifar-10-batches-py")):
            raise _missing(
                "CIFAR10",
                data_root,
                'Get it with `python -c "import torchvision; '
                f"torchvision.datasets.CIFAR10('{data_root}', download=True)\"` on a machine with network "
                "access, or unpack cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html there.",
            )

    def __init__(self, data_root: str = "data/cifar10", split: str = "train", **kwargs: Any) -> None:
        import torchvision

        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
        self.check_data_root(data_root)
        self.source = torchvision.datasets.CIFAR10(data_root, train=split == "train", download=False)
        self._targets = list(self.source.targets)
        super().__init__(**kwargs)

    def _load_image(self, index: int) -> np.ndarray:
        return self.source.data[index]


class STL10(_TorchvisionDataset):
    """torchvision's STL-10 (``stl10_binary`` under ``data_root``), never downloaded.

    Args:
        data_root: folder that contains ``stl10_binary``.
        split: ``'train'``, ``'test'``, ``'unlabeled'`` or ``'train+unlabeled'``
            (unlabeled images have label -1).
    """

    METAINFO = {"classes": ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")}

    @staticmethod
    def check_data_root(data_root: str = "data/stl10") -> None:
        """Raise ``FileNotFoundError`` with instructions when the data is not under ``data_root``."""
        if not os.path.isdir(os.path.join(data_root, "stl10_binary")):
            raise _missing(
                "STL10",
                data_root,
                'Get it with `python -c "import torchvision; '
                f"torchvision.datasets.STL10('{data_root}', download=True)\"` on a machine with network "
                "access, or unpack stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/ there.",
            )

    def __init__(self, data_root: str = "data/stl10", split: str = "train", **kwargs: Any) -> None:
        import torchvision

        self.check_data_root(data_root)
        self.source = torchvision.datasets.STL10(data_root, split=split, download=False)
        self._targets = [int(y) for y in self.source.labels]
        super().__init__(**kwargs)

    def _load_image(self, index: int) -> np.ndarray:
        return np.transpose(self.source.data[index], (1, 2, 0))


class ImageFolder(_TorchvisionDataset):
    """torchvision's ``ImageFolder`` (``data_root/<class>/<image>``), e.g. ImageNet's train or val folder."""

    @staticmethod
    def check_data_root(data_root: str = "data/imagenet/train") -> None:
        """Raise ``FileNotFoundError`` with instructions when ``data_root`` is not a folder."""
        if not os.path.isdir(data_root):
            raise _missing(
                "ImageFolder",
                data_root,
                "Point data_root at a folder with one sub-folder of images per "
                "class (for ImageNet-1k: the extracted ILSVRC2012 train/ or val/ folder, val sorted into "
                "class folders).",
            )

    def __init__(self, data_root: str = "data/imagenet/train", **kwargs: Any) -> None:
        import torchvision

        self.check_data_root(data_root)
        self.source = torchvision.datasets.ImageFolder(data_root)
        self._targets = list(self.source.targets)
        self._metainfo_classes = tuple(self.source.classes)
        super().__init__(**kwargs)

    def _load_image(self, index: int) -> Any:
        from rankssl.mm.image_io import load_rgb

        return load_rgb(self.source.samples[index][0])  # a corrupt or truncated file is named


class KNNEvalDataset(Dataset):
    """The kNN evaluation set: the memory bank (train images) followed by the queries (test images).

    Each item's ``data_samples['is_bank']`` tells :class:`~rankssl.mm.metrics.KNNAccuracy`
    which role it plays, so kNN runs inside mmengine's ordinary validation loop
    (and in distributed runs, where the metric gathers results from all ranks).

    Args:
        bank: dataset config (or dataset) of labelled training images with an eval pipeline.
        query: dataset config (or dataset) of the images to classify.
    """

    def __init__(self, bank: Union[dict, Dataset], query: Union[dict, Dataset]) -> None:
        self.bank = build_from_config(bank, "DATASETS")
        self.query = build_from_config(query, "DATASETS")
        self._split = len(self.bank)

    @property
    def metainfo(self) -> dict:
        return dict(getattr(self.query, "metainfo", {}) or {})

    def full_init(self) -> None:
        for part in (self.bank, self.query):
            if hasattr(part, "full_init"):
                part.full_init()

    def __len__(self) -> int:
        return len(self.bank) + len(self.query)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        is_bank = idx < self._split
        item = self.bank[idx] if is_bank else self.query[idx - self._split]
        item = dict(item)
        item["data_samples"] = dict(item["data_samples"], is_bank=is_bank)
        return item
