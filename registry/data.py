"""Register datasets, transforms and data samplers (imported lazily through ``locations``)."""

from rankssl.mm.datasets import (
    CIFAR10,
    STL10,
    DigitsCanvas,
    FakeImageDataset,
    ImageFolder,
    KNNEvalDataset,
    TwoDigitCanvas,
)
from rankssl.mm.fashion_mnist import FashionMNIST
from rankssl.mm.own_images import UnlabelledImages
from rankssl.mm.samplers import MPerClassSampler
from rankssl.mm.transforms import EvalView, MultiView, PackViews
from rankssl.registry import DATA_SAMPLERS, DATASETS, TRANSFORMS
from rankssl.registry._catalog import register

for _dataset in (
    DigitsCanvas,
    TwoDigitCanvas,
    CIFAR10,
    STL10,
    ImageFolder,
    FakeImageDataset,
    KNNEvalDataset,
    FashionMNIST,
    UnlabelledImages,
):
    register(DATASETS, _dataset)
for _transform in (MultiView, EvalView, PackViews):
    register(TRANSFORMS, _transform, hosts=("mmengine", "lightly transforms"))
register(DATA_SAMPLERS, MPerClassSampler, hosts=("mmengine", "from pml"))
