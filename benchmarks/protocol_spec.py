"""What the protocol trains: data sets, methods and their search spaces, table rows, budgets, run keys.

Nothing here trains or writes: ``protocol_training`` trains one run, ``protocol`` runs a
table's search and seeds, ``protocol_reports`` writes what they found.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from protocol_tuning import SearchSpace

# ----------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class DatasetSpec:
    """A data set the protocol can run on: arrays for evaluation, an mmengine dataset for training."""

    name: str
    load: Callable[[], Dict]  # -> {"train_x": (N, C, H, W) float in [0, 1], "train_y", "test_x", "test_y"}
    mm_dataset: Callable[[str], dict]  # split -> the dataset config the recipes' pipelines run on
    num_classes: int
    train_size: Optional[int] = None  # training images, for the cost estimate of --plan
    recipe_suffix: Optional[str] = None  # '_digits' in a recipe's name becomes this where such a recipe ships
    normalize: Tuple[float, float] = (0.2, 0.25)  # the digits recipes' data preprocessor (mean, std)


def _as_arrays(splits: Dict[str, Tuple]) -> Dict:
    """{split: (uint8 images (N, H, W), labels (N,))} -> the protocol's arrays: ``SPLIT_x`` (N, 1, H, W)
    float32 in [0, 1] and ``SPLIT_y`` (N,) int64."""
    import numpy as np
    import torch

    data = {}
    for split, (images, labels) in splits.items():
        data[f"{split}_x"] = torch.from_numpy(np.array(images, dtype=np.float32) / 255.0).unsqueeze(1)
        data[f"{split}_y"] = torch.from_numpy(np.array(labels, dtype=np.int64))
    return data


def _load_digits() -> Dict:
    from rankssl.mm.digits import make_digits_canvas

    return _as_arrays({split: make_digits_canvas(split) for split in ("train", "test")})


_TWO_DIGITS_PER_CLASS = {"train": 30, "test": 10}  # the two-digit recipes' sizes: 3,000 / 1,000 images


def _load_two_digits() -> Dict:
    """The 100-class two-digit numbers (``rankssl.mm.digits.make_two_digit_canvas``) at the recipes' sizes."""
    from rankssl.mm.digits import make_two_digit_canvas

    return _as_arrays({split: make_two_digit_canvas(split, per_class)
                       for split, per_class in _TWO_DIGITS_PER_CLASS.items()})


def fashion_mnist_root() -> str:
    """Where the Fashion-MNIST IDX files are read from: ``$RANKSSL_FASHION_MNIST``, else Debian's folder."""
    from rankssl.mm.fashion_mnist import DEBIAN_ROOT

    return os.environ.get("RANKSSL_FASHION_MNIST", DEBIAN_ROOT)


def _load_fashion_mnist() -> Dict:
    from rankssl.mm.fashion_mnist import FashionMNIST

    root = fashion_mnist_root()
    FashionMNIST.check_data_root(root)  # names the files and how to get them
    splits = {}
    for split in ("train", "test"):
        dataset = FashionMNIST(root, split)
        splits[split] = (dataset.images, dataset.labels)
    return _as_arrays(splits)


DATASETS: Dict[str, DatasetSpec] = {
    "digits": DatasetSpec("digits", _load_digits, lambda split: dict(type="DigitsCanvas", split=split), 10,
                          train_size=1437),
    "two_digits": DatasetSpec(
        "two_digits", _load_two_digits,
        lambda split: dict(type="TwoDigitCanvas", split=split, per_class=_TWO_DIGITS_PER_CLASS[split]), 100,
        train_size=3000, recipe_suffix="_two-digits"),
    # Fashion-MNIST (60,000 / 10,000 grey 28x28 images; Debian's dataset-fashion-mnist): the shipped
    # *_fashion-mnist recipes (the digits recipes on 28x28 clothes, with flips), the digits recipe elsewhere.
    "fashion_mnist": DatasetSpec(
        "fashion_mnist", _load_fashion_mnist,
        lambda split: dict(type="FashionMNIST", data_root=fashion_mnist_root(), split=split), 10,
        train_size=60000, recipe_suffix="_fashion-mnist", normalize=(0.286, 0.353)),
}


# Recipe edits that do not change what a recipe trains, so its committed runs keep the digest they were
# made with: Hydra's digits and two-digit recipes (and SupCon's) spelling out the loss and head options
# that were the defaults when the runs were made, before HydraLoss's defaults became SimLAP's (checked in
# tests/test_hydra_recipes.py); every digits and two-digit recipe gaining an `auto_scale_lr` block
# (enable=False: read only by `--auto-scale-lr`) and comment lines (tracker references dropped from two Hydra
# recipes' comments included). Current digest -> the runs' digest.
RECIPE_DIGEST_ALIASES = {
    "eb3a2765": "62c19233",  # groco_smallcnn_1xb256-50e_digits
    "90b3b2b5": "2cf9a894",  # groco_smallcnn_1xb256-50e_two-digits
    "3a99cb7f": "cd29ee6a",  # hydra_smallcnn_1xb256-50e_digits
    "84c09178": "4da3f536",  # hydra_smallcnn_1xb256-50e_two-digits
    "3ab8b486": "3682b299",  # s2r2_smallcnn_1xb256-4v-50e_digits
    "38d2a8c3": "ceb5cf1f",  # s2r2_smallcnn_1xb256-4v-50e_two-digits
    "9cec78b5": "bd74f627",  # simclr_smallcnn_1xb256-50e_digits
    "1c3468d2": "93007603",  # simclr_smallcnn_1xb256-50e_two-digits
    "0ce57369": "87903461",  # supcon_smallcnn_1xb256-50e_two-digits
}


def recipe_digest(method: str, dataset: DatasetSpec) -> str:
    """Short digest of the text of the recipe that ``method`` trains on ``dataset``."""
    from rankssl.recipes import find_recipe

    with open(find_recipe(recipe_for(METHODS[method].recipe, dataset)), "rb") as handle:
        digest = hashlib.sha1(handle.read()).hexdigest()[:8]
    return RECIPE_DIGEST_ALIASES.get(digest, digest)


def recipe_for(method_recipe: str, dataset: DatasetSpec) -> str:
    """The data set's own recipe of the method where one ships (its views, sampler), else the digits recipe."""
    if dataset.recipe_suffix:
        from rankssl.recipes import find_recipe

        candidate = method_recipe.replace("_digits", dataset.recipe_suffix)
        try:
            find_recipe(candidate)
            return candidate
        except FileNotFoundError:
            pass
    return method_recipe

# ----------------------------------------------------------------------------- methods and variants


COMMON_HEAD = dict(type="MLPHead", hidden_dim=512, out_dim=128, num_layers=2)  # SimCLR's digits head


@dataclass(frozen=True)
class Method:
    """A method = a shipped digits recipe and its search space."""

    name: str
    recipe: str
    space: SearchSpace
    views: str = "2"  # the recipe's views
    uses_labels: bool = False
    supcon: bool = False  # the Hydra recipe with pml's SupConLoss on all views


# Base learning rates: the recipes' original rules (SimCLR's 0.3 x batch / 256; GroCo's paper rule
# 0.75 x 32 x batch / 1024, halved, as its gradients are small); parameter grids bracket the recipes' values.
METHODS: Dict[str, Method] = {
    "SimCLR": Method("SimCLR", "simclr_smallcnn_1xb256-50e_digits",
                     SearchSpace(0.3, "temperature", (0.1, 0.2, 0.5), 0.2)),
    "GroCo": Method("GroCo", "groco_smallcnn_1xb256-50e_digits",
                    SearchSpace(3.0, "steepness", (1.0, 4.0, 16.0), 4.0)),
    "S2R2": Method("S2R2", "s2r2_smallcnn_1xb256-4v-50e_digits",
                   SearchSpace(0.3, "num_bins", (20, 40, 80), 40), views="4"),
    "Hydra": Method("Hydra", "hydra_smallcnn_1xb256-50e_digits",
                    SearchSpace(0.3, "temperature", (0.2, 0.5, 1.0), 0.5), uses_labels=True),
    "SupCon": Method("SupCon", "hydra_smallcnn_1xb256-50e_digits",
                     SearchSpace(0.3, "temperature", (0.2, 0.5, 1.0), 0.5), uses_labels=True, supcon=True),
}


@dataclass(frozen=True)
class Variant:
    """What one row of a table trains: a method with a head ('paper' or 'common') and views ('4', '2+4')."""

    method: str
    head: str = "paper"
    views: Optional[str] = None  # None: the recipe's

    @property
    def name(self) -> str:
        return f"{self.method}/{self.head}/{self.views or METHODS[self.method].views}"

    def resolved(self) -> "Variant":
        return replace(self, views=self.views or METHODS[self.method].views)


TABLES: Dict[str, List[Variant]] = {
    "main": [Variant(m) for m in METHODS],
    "heads": [Variant(m, "common") for m in METHODS],
    "views": [Variant(m, "paper", v) for m in ("SimCLR", "GroCo", "S2R2") for v in ("2", "4")],
    "multicrop": [Variant("GroCo", "paper", "2"), Variant("GroCo", "paper", "2+4")],
    "s2r2_views": [Variant("S2R2", "paper", v) for v in ("2", "4", "8", "16")],
}


def table_variants(table: str, methods: Optional[Sequence[str]] = None,
                   views: Optional[Sequence[str]] = None) -> List[Variant]:
    """The rows of ``table``, restricted to ``methods`` and to ``views`` (as written in a row's name: '16', '2+4').

    Raises ValueError when the restriction leaves no row, so a mistyped filter cannot pass for a finished table.
    """
    candidates = [v.resolved() for v in TABLES[table] if methods is None or v.method in methods]
    rows = [v for v in candidates if views is None or v.views in views]
    if not rows:
        by_count = sorted(candidates, key=lambda v: view_count(v.name))
        offered = list(dict.fromkeys(v.views for v in by_count))
        raise ValueError(f"table {table!r} has no row with methods={list(methods) if methods else 'any'} and "
                         f"views={list(views) if views else 'any'}; its view counts are {offered}")
    return rows


def training_variant(variant: Variant) -> Variant:
    """The variant whose runs to train: a 'common' head equal to the recipe's own shares the 'paper' runs."""
    if variant.head != "common":
        return variant
    from rankssl.cli import load_config

    neck = load_config(METHODS[variant.method].recipe, "/tmp").model.get("neck")
    return replace(variant, head="paper") if neck is not None and dict(neck) == COMMON_HEAD else variant


def view_count(name: str) -> int:
    """Total views of a variant name: '.../2+4' -> 6."""
    return sum(int(v) for v in name.rsplit("/", 1)[1].split("+"))


def variant_from_name(name: str) -> Variant:
    """'SimCLR/paper/4' -> Variant; a malformed name raises, naming what a variant name is made of."""
    parts = name.split("/")
    if (len(parts) != 3 or parts[0] not in METHODS or parts[1] not in ("paper", "common")
            or not all(v.isdigit() and int(v) > 0 for v in parts[2].split("+"))):
        raise ValueError(f"expected METHOD/HEAD/VIEWS with METHOD one of {sorted(METHODS)}, HEAD 'paper' or "
                         f"'common' and VIEWS a count or 'GLOBAL+SMALL' (e.g. 'SimCLR/paper/4'), got {name!r}.")
    method, head, views = parts
    return Variant(method, head, views)

# ----------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Size:
    epochs: int  # the reported budget, for tuning and for the seeds alike
    seeds: Tuple[int, ...]
    eval_every: int  # test-kNN curve interval (epochs)
    max_widen: int = 3
    train_subset: Optional[int] = None  # small: the first N training images only
    param_values: Optional[int] = None  # small: keep this many values of each grid (around the default)


SIZES = {
    "default": Size(epochs=50, seeds=(0, 1, 2), eval_every=5),
    # What a 2-core CPU can finish in a session: the 20-epoch budget of the first quality table, tuned and seeded
    # as the protocol asks (the figures in RESULTS.md "Protocol" are this size).
    "medium": Size(epochs=20, seeds=(0, 1, 2), eval_every=5),
    "small": Size(epochs=1, seeds=(0, 1), eval_every=1, max_widen=1, train_subset=512, param_values=1),
}


def search_space(method: Method, size: Size) -> SearchSpace:
    """The method's space; the small size keeps ``param_values`` values of each grid around the default."""
    space = method.space
    if size.param_values is None:
        return space

    def around(values, default):
        ordered = sorted(values)
        i = ordered.index(default)
        return tuple(ordered[max(0, i - (size.param_values - 1) // 2):][: size.param_values])

    return replace(space, param_values=around(space.param_values, space.default_param),
                   weight_decays=around(space.weight_decays, space.default_weight_decay))


def planned_runs(variants: Sequence[Variant], size: Size) -> int:
    """A lower bound of the runs a table needs (without widening or re-bracketing)."""
    total = 0
    for variant in variants:
        space = search_space(METHODS[variant.method], size)
        total += 4 + len(space.param_values) - 1 + len(space.weight_decays) - 1 + len(size.seeds)
    return total

# ----------------------------------------------------------------------------- run keys


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one training run; its hash names the run's JSON file."""

    dataset: str
    variant: str  # Variant.name
    lr: float
    param: object
    weight_decay: float
    epochs: int
    seed: int
    purpose: str  # 'tune' (fit part, scored on the validation part), 'final' (test split) or 'cost' (--measure)
    train_subset: Optional[int] = None
    eval_every: int = 5
    device: str = "cpu"
    recipe_sha: str = ""  # the recipe file's digest: editing a recipe invalidates its finished runs

    @property
    def run_id(self) -> str:
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.variant.replace('/', '_').replace('+', 'p')}_{self.purpose}_s{self.seed}_{digest}"
