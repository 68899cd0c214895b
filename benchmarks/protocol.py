"""Issue 13's benchmark protocol: fair tuning, paper and common heads, equal views, seeds, curves, claims.

One command per table (each resumable: every training run writes its JSON as it finishes
and a re-run skips it):

    python benchmarks/protocol.py --table main        # every method, its paper's head, its recipe's views
    python benchmarks/protocol.py --table heads       # every method with one common head
    python benchmarks/protocol.py --table views       # SimCLR, GroCo, S2R2 at 2 and 4 views
    python benchmarks/protocol.py --table multicrop   # GroCo: 2 global + 4 small views vs 2 views
    python benchmarks/protocol.py --table s2r2_views  # S2R2 at 2, 4, 8, 16 views, 256 images per batch
    python benchmarks/protocol.py --table claims      # the papers' claims, from the tables' JSON only
    python benchmarks/protocol.py --table main --plan [--measure]  # runs needed, cost (measure s/step first)
    python benchmarks/protocol.py --table costs       # s/step of every row measured by --measure
    python benchmarks/protocol.py --table main --size small   # a minute: the test suite runs it
    python benchmarks/protocol.py --table views --finished-only  # a table from the finished runs only
    python benchmarks/protocol.py --probe SimCLR/paper/4 --lr 0.01  # one configuration off the grid
    options: --dataset digits|two_digits, --methods ..., --views 16 ..., --device cuda, --out DIR,
             --jobs N (train a grid's runs and a row's seeds in N processes; same selection)

For every variant (method x head x views): the same hyper-parameter search
(``protocol_tuning.select``: a learning-rate grid of >= 4 values spaced x2, widened
until the winner is inside, then the method's main parameter and weight decay), each
configuration trained at the reported budget on 80% of the training split and scored
by kNN on the other 20% (the test split is never loaded for it); then the winner is
trained on the whole training split with every seed and scored on the test split:
weighted kNN (k=20, T=0.07 and k=200, T=0.1), linear probe, effective rank of the
features, a kNN curve every ``eval_every`` epochs, and the seconds per training step
measured in the run itself (median over its iterations; the compute column).
Outputs under ``--out/DATASET/``: ``runs/*.json`` (one per training run),
``TABLE.json`` (summaries), ``TABLE.md`` and ``TABLE_curves.png``; ``claims.md``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import statistics
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCHMARKS)

from protocol_claims import claims_table  # noqa: E402
from protocol_tuning import SearchSpace, Selection, select  # noqa: E402

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


def _load_digits() -> Dict:
    from quality import load_digits_canvas

    return load_digits_canvas()


_TWO_DIGITS_PER_CLASS = {"train": 30, "test": 10}  # the two-digit recipes' sizes: 3,000 / 1,000 images


def _load_two_digits() -> Dict:
    import numpy as np
    import torch

    make_two_digit_canvas = _two_digits_maker()
    data = {}
    for split, per_class in _TWO_DIGITS_PER_CLASS.items():
        images, labels = make_two_digit_canvas(split, per_class)
        data[f"{split}_x"] = torch.from_numpy(np.array(images, dtype=np.float32) / 255.0).unsqueeze(1)
        data[f"{split}_y"] = torch.from_numpy(np.array(labels))
    return data


def _two_digits_maker():
    """The 100-class two-digit numbers (built in the Hydra issue); a clear error on a branch without them."""
    try:
        from rankssl.mm.digits import make_two_digit_canvas
    except ImportError as error:
        raise ValueError("dataset 'two_digits' needs rankssl.mm.digits.make_two_digit_canvas and the "
                         "'TwoDigitCanvas' dataset (the Hydra issue's), which this branch does not have.") from error
    return make_two_digit_canvas


DATASETS: Dict[str, DatasetSpec] = {
    "digits": DatasetSpec("digits", _load_digits, lambda split: dict(type="DigitsCanvas", split=split), 10,
                          train_size=1437),
    "two_digits": DatasetSpec(
        "two_digits", _load_two_digits,
        lambda split: dict(type="TwoDigitCanvas", split=split, per_class=_TWO_DIGITS_PER_CLASS[split]), 100,
        train_size=3000, recipe_suffix="_two-digits"),
}


def recipe_digest(method: str, dataset: DatasetSpec) -> str:
    """Short digest of the text of the recipe that ``method`` trains on ``dataset``."""
    from rankssl.recipes import find_recipe

    with open(find_recipe(recipe_for(METHODS[method].recipe, dataset)), "rb") as handle:
        return hashlib.sha1(handle.read()).hexdigest()[:8]


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


# Base learning rates: the recipes' original rules (quality.py); parameter grids bracket the recipes' values.
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
        by_count = sorted(candidates, key=lambda v: _view_count(v.name))
        offered = list(dict.fromkeys(v.views for v in by_count))
        raise ValueError(f"table {table!r} has no row with methods={list(methods) if methods else 'any'} and "
                         f"views={list(views) if views else 'any'}; its view counts are {offered}")
    return rows

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
    # What a 2-core CPU can finish in a session: the old quality table's 20-epoch budget, tuned and seeded
    # as the protocol asks (the figures in RESULTS.md "Protocol" are this size).
    "medium": Size(epochs=20, seeds=(0, 1, 2), eval_every=5),
    "small": Size(epochs=1, seeds=(0, 1), eval_every=1, max_widen=1, train_subset=512, param_values=1),
}

# ----------------------------------------------------------------------------- one training run


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


def _figures(runs: Sequence[Dict]) -> Dict[str, List[float]]:
    """Each test figure of the final runs, one value per seed."""
    return {k: [r[k] for r in runs] for k in ("knn20", "knn200", "linear", "erank")}


def _variant_from_name(name: str) -> Variant:
    """'SimCLR/paper/4' -> Variant; a malformed name raises, naming what a variant name is made of."""
    parts = name.split("/")
    if (len(parts) != 3 or parts[0] not in METHODS or parts[1] not in ("paper", "common")
            or not all(v.isdigit() and int(v) > 0 for v in parts[2].split("+"))):
        raise ValueError(f"expected METHOD/HEAD/VIEWS with METHOD one of {sorted(METHODS)}, HEAD 'paper' or "
                         f"'common' and VIEWS a count or 'GLOBAL+SMALL' (e.g. 'SimCLR/paper/4'), got {name!r}.")
    method, head, views = parts
    return Variant(method, head, views)


def tuning_split(train_y, fraction: float = 0.2, seed: int = 0) -> Tuple[List[int], List[int]]:
    """(fit, validation) indices of the training split, stratified; the only data selection sees."""
    from quality import validation_indices

    return validation_indices(train_y, fraction, seed)


def _view_pipeline(base_view: dict, views: str) -> List[dict]:
    """MultiView configs: 'V' = V views of the recipe's crop; '2+4' = 2 of them + 4 small (16 px) crops."""
    if "+" in views:
        global_views, small_views = (int(v) for v in views.split("+"))
        small = dict(base_view, input_size=base_view["input_size"] // 2, min_scale=0.05, num_views=small_views)
        return [dict(base_view, num_views=global_views), small]
    return [dict(base_view, num_views=int(views))]


def build_config(spec: RunSpec, dataset: DatasetSpec, work_dir: str, fit_indices: Optional[Sequence[int]]):
    """The recipe of ``spec``'s method with the protocol's overrides (an mmengine Config)."""
    from rankssl.cli import load_config, set_epochs

    variant = _variant_from_name(spec.variant)
    method = METHODS[variant.method]
    cfg = load_config(recipe_for(method.recipe, dataset), work_dir)
    set_epochs(cfg, spec.epochs)
    cfg.randomness = dict(seed=spec.seed, deterministic=False)
    cfg.optim_wrapper.optimizer.lr = spec.lr
    cfg.optim_wrapper.optimizer.weight_decay = spec.weight_decay
    if cfg.model.get("instance_loss") is not None:  # label-based losses alone, as in quality.py
        cfg.model.instance_loss = None
    if not method.supcon:
        cfg.model.loss[method.space.param_name] = spec.param
    if cfg.model.type == "Hydra":
        cfg.model.loss.num_classes = dataset.num_classes
    if variant.head == "common":
        cfg.model.neck = dict(COMMON_HEAD)
    elif variant.head != "paper":
        raise ValueError(f"head must be 'paper' or 'common', got {variant.head!r}.")
    pipeline = cfg.train_dataloader.dataset.pipeline
    pipeline[0].views = _view_pipeline(dict(pipeline[0].views[0]), variant.views)
    if "+" in variant.views:
        if variant.method != "GroCo":
            raise ValueError(f"multi-crop views '{variant.views}' are wired for GroCo only, not {variant.method}.")
        cfg.model.loss.n_positive_views = int(variant.views.split("+")[0])
    cfg.train_dataloader.batch_size = 256  # images per batch, whatever the views
    if cfg.train_dataloader.sampler.get("batch_size"):
        cfg.train_dataloader.sampler.batch_size = 256
    cfg.train_dataloader.dataset.update(dataset.mm_dataset("train"))
    cfg.log_level = "WARNING"  # the protocol prints its own progress line
    cfg.default_hooks.logger.interval = 50
    cfg.custom_hooks = [dict(type="CurvesHook", interval=1)]
    cfg.default_hooks.checkpoint = None  # the tuning runs keep no weights; the seeds keep their last epoch
    if spec.purpose == "tune":
        cfg.train_dataloader.dataset.indices = list(fit_indices)
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    else:
        cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=spec.epochs, max_keep_ckpts=1)
        if spec.train_subset:
            cfg.train_dataloader.dataset.indices = list(range(spec.train_subset))
        cfg.val_dataloader.dataset.bank.update(dataset.mm_dataset("train"))
        cfg.val_dataloader.dataset.query.update(dataset.mm_dataset("test"))
        cfg.train_cfg.val_interval = spec.eval_every
        cfg.val_evaluator = dict(type="KNNAccuracy", k=20, temperature=0.07)
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    return cfg


def _step_timer(device: str):
    """An mmengine hook that records the wall time of every training iteration.

    An iteration runs from the end of the previous one (or the epoch's start) to its own
    end, so it includes loading and augmenting the batch (``num_workers=0``), which
    grows with the views; validation, between epochs, is not counted.
    """
    import torch
    from mmengine.hooks import Hook

    class StepTimer(Hook):
        priority = "VERY_LOW"

        def __init__(self) -> None:
            self.times: List[float] = []
            self._last = 0.0

        def _now(self) -> float:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter()

        def before_train_epoch(self, runner) -> None:
            self._last = self._now()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            now = self._now()
            self.times.append(now - self._last)
            self._last = now

    return StepTimer()


def effective_rank(features) -> float:
    """exp(entropy) of the normalised singular values of the L2-normalised features (rankssl.ops)."""
    import torch.nn.functional as F

    from rankssl.ops.spectrum import effective_rank as erank

    return float(erank(F.normalize(features.float(), dim=1)))


def train_run(spec: RunSpec, dataset: DatasetSpec, data: Dict, fit_val: Tuple[List[int], List[int]],
              work_root: str) -> Dict:
    """Train one run and score it: the validation part for 'tune', the test split for 'final'."""
    from mmengine.runner import Runner

    from quality import SupConOnViews, evaluate, features, knn_accuracy

    fit_idx, val_idx = fit_val
    work_dir = os.path.join(work_root, spec.run_id)
    cfg = build_config(spec, dataset, work_dir, fit_idx)
    runner = Runner.from_cfg(cfg)
    if METHODS[_variant_from_name(spec.variant).method].supcon:
        runner.model.loss_module = SupConOnViews(temperature=spec.param)
    timer = _step_timer(spec.device)
    runner.register_hook(timer)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    backbone = runner.model.backbone
    mean, std = dataset.normalize
    norm = lambda x: (x - mean) / std  # noqa: E731
    result = {"spec": asdict(spec), "train_seconds": seconds, "steps": len(timer.times),
              "s_per_step": statistics.median(timer.times[1:] or timer.times)}
    train_x, train_y = data["train_x"], data["train_y"]
    if spec.purpose == "tune":
        fit_f = features(backbone, norm(train_x[fit_idx]), spec.device)
        val_f = features(backbone, norm(train_x[val_idx]), spec.device)
        result["val_knn20"] = knn_accuracy(fit_f, train_y[fit_idx], val_f, train_y[val_idx], 20, 0.07)
        return result
    train_f = features(backbone, norm(train_x), spec.device)
    test_f = features(backbone, norm(data["test_x"]), spec.device)
    result.update(evaluate(train_f, train_y, test_f, data["test_y"]))
    result["erank"] = effective_rank(test_f)
    with open(os.path.join(work_dir, "scalars.json")) as handle:
        result["curve"] = [(r["epoch"], r["knn/top1"] / 100) for r in json.load(handle)["val"] if "knn/top1" in r]
    return result


# ----------------------------------------------------------------------------- the protocol


class RunStore:
    """One JSON file per finished run, named by its key; a run whose file exists is never trained again."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)

    def path(self, key: str) -> str:
        return os.path.join(self.root, key + ".json")

    def get(self, key: str) -> Optional[Dict]:
        path = self.path(key)
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            return json.load(handle)

    def put(self, key: str, result: Dict) -> None:
        tmp = self.path(key) + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(result, handle, indent=1, default=str)
        os.replace(tmp, self.path(key))  # atomic: a kill never leaves half a result

    def cached(self, key: str, compute: Callable[[], Dict]) -> Dict:
        """The stored result of ``key``, or ``compute()`` stored and returned as a re-run will read it."""
        result = self.get(key)
        if result is None:
            self.put(key, compute())
            result = self.get(key)
        return result


@dataclass
class Progress:
    """Counts runs (planned is a lower bound: widening adds runs) and prints a line with an ETA."""

    planned: int
    done: int = 0
    trained: int = 0
    trained_seconds: float = 0.0
    log: Callable[[str], None] = field(default=lambda msg: print(msg, flush=True))
    jobs: int = 1  # runs trained side by side: the ETA divides by it

    def record(self, spec: RunSpec, seconds: Optional[float], score: float) -> None:
        self.done += 1
        self.planned = max(self.planned, self.done)
        if seconds is not None:
            self.trained += 1
            self.trained_seconds += seconds
        eta = "?"
        if self.trained:
            left = (self.planned - self.done) * self.trained_seconds / self.trained / self.jobs
            eta = str(datetime.timedelta(seconds=round(left)))
        how = "skipped (done before)" if seconds is None else f"{seconds:.0f} s"
        self.log(f"[{self.done}/>={self.planned}] {spec.variant} {spec.purpose} lr={spec.lr:g} "
                 f"param={spec.param} wd={spec.weight_decay:g} seed={spec.seed}: {100 * score:.1f} "
                 f"({how}); ETA >= {eta}")


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


def check_one_budget(out: str, epochs: int) -> None:
    """Refuse to mix budgets in one folder: a table written at another number of epochs would be overwritten,
    and the claims and costs read every table and run file of the folder as one budget."""
    for table in TABLES:
        path = os.path.join(out, f"{table}.json")
        if not os.path.exists(path):
            continue
        with open(path) as handle:
            written = json.load(handle).get("size", {}).get("epochs")
        if written is not None and written != epochs:
            raise ValueError(f"{path} holds a {written}-epoch table and this run is {epochs} epochs: give each "
                             f"budget its own --out folder (e.g. benchmarks/protocol_{epochs}_epochs)")


class NotFinished(Exception):
    """Raised in ``finished_only`` mode where a run would have to be trained."""


def _process_pool(workers: int) -> Executor:
    # spawn, not fork: a forked child of a process that has run torch can hang in OpenMP or CUDA.
    import multiprocessing

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_prepare_worker)


def _prepare_worker() -> None:
    import multiprocessing

    import torch

    torch.set_flush_denormal(True)  # as main() does: subnormal floats slow CPU back-propagation ~10x
    # mmengine's Runner sets 'fork' in every process it starts in, and warns where it finds 'spawn'.
    multiprocessing.set_start_method("fork", force=True)


def _train_and_store(store_root: str, spec: RunSpec, dataset_name: str, data: Dict,
                     fit_val: Tuple[List[int], List[int]], work_root: str, trainer: Callable) -> float:
    """Train one run in a worker of ``--jobs`` and store it as the sequential path would; its seconds."""
    dataset = DATASETS[dataset_name]  # by name: a DatasetSpec holds lambdas, which do not pickle
    result = RunStore(store_root).cached(spec.run_id, lambda: trainer(spec, dataset, data, fit_val, work_root))
    return result["train_seconds"]


class Protocol:
    """Tunes and trains the variants of a table on one data set, resumably.

    With ``finished_only`` nothing is trained: a table is written from the runs already
    finished, and a row that would need one more run is listed as not run.
    """

    def __init__(self, dataset: DatasetSpec, size: Size, out: str, device: str = "cpu",
                 trainer: Callable = train_run, data: Optional[Dict] = None, finished_only: bool = False,
                 jobs: int = 1, executor: Callable[[int], Executor] = _process_pool) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a whole number >= 1 (runs trained side by side), got {jobs!r}.")
        self.dataset, self.size, self.device, self.trainer = dataset, size, device, trainer
        self.finished_only = finished_only
        self.jobs, self.executor = jobs, executor
        self._trained_aside: Dict[str, float] = {}  # run id -> seconds, for runs a worker trained
        self.out = os.path.join(out, dataset.name)
        check_one_budget(self.out, size.epochs)
        self.store = RunStore(os.path.join(self.out, "runs"))
        self.work_root = os.path.join(self.out, "work_dirs")
        self.data = data if data is not None else dataset.load()
        train_y = self.data["train_y"]
        if size.train_subset:
            train_y = train_y[: size.train_subset]
        self.fit_val = tuning_split(train_y)
        self.progress = Progress(0, jobs=jobs)

    def _run(self, spec: RunSpec) -> Dict:
        result = self.store.get(spec.run_id)
        if result is None and self.finished_only:
            raise NotFinished(spec.variant)
        if result is None:
            result = self.store.cached(spec.run_id, lambda: self.trainer(spec, self.dataset, self._data_for(spec),
                                                                         self.fit_val, self.work_root))
            seconds = result["train_seconds"]
        else:
            seconds = self._trained_aside.pop(spec.run_id, None)
        self.progress.record(spec, seconds, result.get("val_knn20", result.get("knn20", float("nan"))))
        return result

    def _train_side_by_side(self, specs: Sequence[RunSpec]) -> None:
        """Train the runs of ``specs`` not stored yet in up to ``jobs`` worker processes.

        Nothing to do with one job, one missing run, or ``finished_only``: ``_run`` then
        trains (or refuses) them one by one. A run that fails in a worker raises here once
        the others have finished and been stored.
        """
        missing = [spec for spec in specs if self.store.get(spec.run_id) is None]
        if self.finished_only or self.jobs < 2 or len(missing) < 2:
            return
        workers = min(self.jobs, len(missing))
        self.progress.log(f"training {len(missing)} runs side by side in {workers} processes: "
                          + "; ".join(f"{s.variant} {s.purpose} lr={s.lr:g} param={s.param} wd={s.weight_decay:g} "
                                      f"seed={s.seed}" for s in missing))
        with self.executor(workers) as pool:
            futures = {spec.run_id: pool.submit(_train_and_store, self.store.root, spec, self.dataset.name,
                                                self._data_for(spec), self.fit_val, self.work_root, self.trainer)
                       for spec in missing}
            for run_id, future in futures.items():
                self._trained_aside[run_id] = future.result()

    def _data_for(self, spec: RunSpec) -> Dict:
        """Tuning runs get the training split only: selection cannot see the test split."""
        if spec.purpose == "tune":
            return {"train_x": self.data["train_x"], "train_y": self.data["train_y"]}
        return self.data

    def _spec(self, variant: Variant, config: Dict, seed: int, purpose: str) -> RunSpec:
        space = METHODS[variant.method].space
        return RunSpec(self.dataset.name, variant.name, config["lr"], config[space.param_name],
                       config["weight_decay"], self.size.epochs, seed, purpose, self.size.train_subset,
                       self.size.eval_every, self.device, recipe_digest(variant.method, self.dataset))

    @staticmethod
    def _training_variant(variant: Variant) -> Variant:
        """The variant whose runs to train: a 'common' head equal to the recipe's own shares the 'paper' runs."""
        if variant.head != "common":
            return variant
        from rankssl.cli import load_config

        neck = load_config(METHODS[variant.method].recipe, "/tmp").model.get("neck")
        return replace(variant, head="paper") if neck is not None and dict(neck) == COMMON_HEAD else variant

    def tune(self, variant: Variant) -> Selection:
        method = METHODS[variant.method]
        return select(search_space(method, self.size),
                      lambda config: self._run(self._spec(variant, config, 0, "tune"))["val_knn20"],
                      max_widen=self.size.max_widen,
                      prefetch=lambda configs: self._train_side_by_side(
                          [self._spec(variant, config, 0, "tune") for config in configs]))

    def _final_runs(self, trained: Variant, config: Dict) -> List[Dict]:
        """The configuration trained on the whole training split with each of the size's seeds, test-scored."""
        specs = [self._spec(trained, config, seed, "final") for seed in self.size.seeds]
        self._train_side_by_side(specs)
        return [self._run(spec) for spec in specs]

    def probe(self, variant_name: str, lr: float, param=None, weight_decay: Optional[float] = None,
              final: bool = False) -> Dict:
        """Score one configuration the search did not reach, exactly as a tuning run (validation kNN, seed 0).

        ``param`` and ``weight_decay`` default to the method's defaults, the context of the
        search's first learning-rate grid. The run is stored like the search's own, so a later
        search that reaches this configuration reuses it; nothing about the selection changes.
        With ``final``, the configuration is also trained with the size's seeds on the whole
        training split and scored on the test split, as a table's row would be.
        Returns ``{"variant", "config", "val_knn20", "selection", "test"}``: ``selection`` is the
        search's winner and its validation score when the search has finished, else None;
        ``test`` maps each figure (knn20, knn200, linear, erank) to its per-seed values, or is None.
        """
        variant = _variant_from_name(variant_name).resolved()
        if not lr > 0:
            raise ValueError(f"probe: lr must be positive, got {lr!r}.")
        if weight_decay is not None and not weight_decay >= 0:
            raise ValueError(f"probe: weight_decay must be >= 0, got {weight_decay!r}.")
        space = METHODS[variant.method].space
        if param is None:
            param = space.default_param
        elif not param > 0:  # temperature, steepness and bins are all positive
            raise ValueError(f"probe: {space.param_name} must be positive, got {param!r}.")
        elif isinstance(space.default_param, int):
            if float(param) != int(param):
                raise ValueError(f"probe: {space.param_name} takes whole numbers, got {param!r}.")
            param = int(param)
        config = {"lr": lr, space.param_name: param,
                  "weight_decay": space.default_weight_decay if weight_decay is None else weight_decay}
        trained = self._training_variant(variant)
        score = self._run(self._spec(trained, config, 0, "tune"))["val_knn20"]
        test = None
        if final:
            test = _figures(self._final_runs(trained, config))
        finished_only, progress = self.finished_only, self.progress
        self.finished_only, self.progress = True, Progress(0, log=lambda msg: None)  # replay the search quietly
        try:
            chosen = self.tune(trained)
            selection = {"lr": chosen.lr, space.param_name: chosen.param, "weight_decay": chosen.weight_decay,
                         "val_knn20": chosen.score}
        except NotFinished:
            selection = None
        finally:
            self.finished_only, self.progress = finished_only, progress
        return {"variant": variant.name, "config": config, "val_knn20": score, "selection": selection,
                "test": test}

    def variant_summary(self, variant: Variant) -> Dict:
        variant = variant.resolved()
        trained = self._training_variant(variant)
        chosen = self.tune(trained)
        config = {"lr": chosen.lr, METHODS[variant.method].space.param_name: chosen.param,
                  "weight_decay": chosen.weight_decay}
        runs = self._final_runs(trained, config)
        return {
            "variant": variant.name, "runs_of": trained.name, "method": variant.method, "head": variant.head,
            "views": variant.views,
            "uses_labels": METHODS[variant.method].uses_labels,
            "selection": {"lr": chosen.lr, "param_name": METHODS[variant.method].space.param_name,
                          "param": chosen.param, "weight_decay": chosen.weight_decay, "val_knn20": chosen.score,
                          "lr_grid": chosen.lr_grid, "lr_position": chosen.lr_position,
                          "param_position": chosen.param_position,
                          "weight_decay_position": chosen.weight_decay_position,
                          "weight_decay_grid": chosen.weight_decay_grid,
                          "param_grid": chosen.param_grid,
                          "edges": chosen.edges, "trials": chosen.trials},
            **_figures(runs),
            "curves": [r["curve"] for r in runs],
            "s_per_step": statistics.median(r["s_per_step"] for r in runs),
            "train_seconds": statistics.mean(r["train_seconds"] for r in runs),
            "seeds": list(self.size.seeds), "epochs": self.size.epochs,
        }

    def table(self, name: str, methods: Optional[Sequence[str]] = None,
              views: Optional[Sequence[str]] = None) -> Dict:
        variants = table_variants(name, methods, views)
        self.progress = Progress(planned_runs(variants, self.size), jobs=self.jobs)
        summaries, not_run = {}, []
        for variant in variants:
            try:
                summaries[variant.resolved().name] = self.variant_summary(variant)
            except NotFinished:
                not_run.append(variant.resolved().name)
        baselines = self.baselines() if name == "main" else {}
        report = {"table": name, "dataset": self.dataset.name, "size": asdict(self.size), "device": self.device,
                  "date": str(datetime.date.today()), "variants": summaries, "baselines": baselines,
                  "not_run": not_run}
        with open(os.path.join(self.out, f"{name}.json"), "w") as handle:
            json.dump(report, handle, indent=1, default=str)
        with open(os.path.join(self.out, f"{name}.md"), "w") as handle:
            handle.write(format_table(report))
        plot_curves(summaries, os.path.join(self.out, f"{name}_curves.png"), self.dataset.name)
        return report

    def baselines(self) -> Dict[str, Dict[str, float]]:
        # A table written from finished runs trains nothing, so it must not need the runs'
        # accelerator (a --device cuda table is written on the CPU host the runs came back to);
        # the raw-pixel and random-network rows are cheap there.
        device = "cpu" if self.finished_only else self.device
        return baseline_rows(self.data, self.size.seeds, device, self.dataset.normalize)


def baseline_rows(data: Dict, seeds: Sequence[int], device: str = "cpu", normalize: Tuple[float, float] = (0.0, 1.0),
                  erank: Optional[Callable] = None) -> Dict[str, Dict[str, float]]:
    """Raw pixels (as given) and a random-init SmallCNN on ``(x - mean) / std`` (mean over ``seeds``),
    scored like trained rows; ``erank(test_features)`` adds the random init's effective rank."""
    import torch

    from quality import evaluate, features
    from rankssl.models import SmallCNN

    mean, std = normalize
    flat = lambda t: t.flatten(1)  # noqa: E731
    rows = {"raw pixels": evaluate(flat(data["train_x"]), data["train_y"], flat(data["test_x"]), data["test_y"])}
    scores = []
    for seed in seeds:
        torch.manual_seed(seed)
        net = SmallCNN(in_channels=data["train_x"].shape[1], widths=(32, 64, 128)).to(device)
        train_f = features(net, (data["train_x"] - mean) / std, device)
        test_f = features(net, (data["test_x"] - mean) / std, device)
        score = evaluate(train_f, data["train_y"], test_f, data["test_y"])
        if erank is not None:
            score["erank_backbone"] = float(erank(test_f))
        scores.append(score)
    rows["random init"] = {k: statistics.mean(s[k] for s in scores) for k in scores[0]}
    return rows


# ----------------------------------------------------------------------------- reports


def _pct(values: Sequence[float]) -> str:
    mean = 100 * statistics.mean(values)
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def _where(position: str) -> str:
    return {"inside": "inside", "untuned": "one value", "flat edge": "edge, tied with its neighbour"}.get(
        position, f"**{position}**")


def _decay(selection: Dict) -> str:
    """The chosen weight decay, with its grid when the grid was widened beyond the three shared values."""
    return f"{selection['weight_decay']:g}{_widened(selection.get('weight_decay_grid'))}"


def _param(selection: Dict) -> str:
    """The chosen parameter, with its grid when the grid was widened beyond the method's three values."""
    return f"{selection['param_name']}={selection['param']}{_widened(selection.get('param_grid'))}"


def _widened(grid: Optional[Sequence[float]]) -> str:
    """' (of v1, v2, ...)' for a grid that grew past the three values every search starts from, else ''."""
    return f" (of {', '.join(f'{v:g}' for v in grid)})" if grid and len(grid) > 3 else ""


def _search_extent(selection: Dict) -> str:
    """How far the search went: its runs and every learning rate any of them used ('lr grid' is the last bracket)."""
    rates = [trial["lr"] for trial in selection["trials"]]
    return f"{len(rates)} runs, lr {min(rates):g}-{max(rates):g}"


def format_table(report: Dict) -> str:
    """The table's markdown: accuracy, step cost, and the tuning record (grid, winners, edges)."""
    size, seeds = report["size"], tuple(report["size"]["seeds"])  # a tuple, also when read back from JSON
    lines = [f"`{report['dataset']}`, table `{report['table']}`: {size['epochs']} epochs, batch 256 images, seeds "
             f"{seeds}, test split scored only after selection; {report['device']}; {report['date']}", "",
             "| variant | labels | kNN k=20 | kNN k=200 | linear probe | eff. rank | s/step | step vs first row |",
             "|---|---|---|---|---|---|---|---|"]
    first = None
    for name, s in report["variants"].items():
        first = first or s["s_per_step"]
        lines.append(f"| {name} | {'yes' if s['uses_labels'] else 'no'} | {_pct(s['knn20'])} | {_pct(s['knn200'])} | "
                     f"{_pct(s['linear'])} | {statistics.mean(s['erank']):.1f} | {s['s_per_step']:.3f} | "
                     f"{s['s_per_step'] / first:.2f}x |")
    for name, scores in report["baselines"].items():
        lines.append(f"| {name} | no | {100 * scores['knn20']:.1f} | {100 * scores['knn200']:.1f} | "
                     f"{100 * scores['linear']:.1f} | - | - | - |")
    lines += ["", "Selection (validation kNN on 20% of the training split; search: its runs and every rate they used, "
              "lr grid: the last bracket, at the chosen parameter and weight decay; **bold** = winner on an edge of "
              "its grid):",
              "", "| variant | search | lr grid | lr | where | parameter | where | weight decay | where | val kNN |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in report["variants"].items():
        sel = s["selection"]
        grid = ", ".join(f"{lr:g}" for lr in sel["lr_grid"])
        lines.append(f"| {name} | {_search_extent(sel)} | {grid} | {sel['lr']:g} | {_where(sel['lr_position'])} | "
                     f"{_param(sel)} | {_where(sel['param_position'])} | "
                     f"{_decay(sel)} | {_where(sel['weight_decay_position'])} | "
                     f"{100 * sel['val_knn20']:.1f} |")
    edges = [f"{name} ({', '.join(s['selection']['edges'])})" for name, s in report["variants"].items()
             if s["selection"]["edges"]]
    flat = any("flat edge" in (s["selection"]["lr_position"], s["selection"]["param_position"],
                               s["selection"]["weight_decay_position"]) for s in report["variants"].values())
    inside = ("Every winner lies inside its grid or on a flat edge (tied with its neighbour: the score "
              "does not rise past it)." if flat else "Every winner lies inside its grid.")
    lines += ["", f"Winners on an edge of their grid: {'; '.join(edges)}." if edges else inside]
    if report.get("not_run"):
        lines += ["", f"Not run yet (the table was written from finished runs): {', '.join(report['not_run'])}."]
    return "\n".join(lines) + "\n"


def plot_curves(summaries: Dict[str, Dict], path: str, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, s in summaries.items():
        epochs = [e for e, _ in s["curves"][0]]
        accs = np.array([[a for _, a in curve] for curve in s["curves"]]) * 100
        ax.plot(epochs, accs.mean(0), marker="o", label=name)
        if len(accs) > 1:
            ax.fill_between(epochs, accs.min(0), accs.max(0), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test kNN top-1 (k=20, T=0.07), %")
    ax.set_title(f"{dataset}: kNN accuracy against epochs (band: min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_claims(out: str, dataset: str) -> str:
    """claims.md from every table JSON found under ``out/dataset`` (later tables do not override earlier)."""
    root = os.path.join(out, dataset)
    summaries: Dict[str, Dict] = {}
    for table in TABLES:
        path = os.path.join(root, f"{table}.json")
        if os.path.exists(path):
            with open(path) as handle:
                for name, summary in json.load(handle)["variants"].items():
                    summaries.setdefault(name, summary)
    text = claims_table(summaries, dataset)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "claims.md"), "w") as handle:
        handle.write(text)
    return text


def measure_cost(protocol: "Protocol", table: str, methods: Optional[Sequence[str]], epochs: int = 2,
                 views: Optional[Sequence[str]] = None) -> None:
    """Train each variant of ``table`` once for ``epochs`` on the whole training split (recipe defaults, seed 0),
    so that ``plan`` can extrapolate its cost from the seconds per step measured there."""
    variants = [protocol._training_variant(v) for v in table_variants(table, methods, views)]
    protocol.progress = Progress(len(variants))
    for variant in variants:
        space = METHODS[variant.method].space
        protocol._run(RunSpec(protocol.dataset.name, variant.name, space.base_lr, space.default_param,
                              space.default_weight_decay, epochs, 0, "cost", None, epochs, protocol.device,
                              recipe_digest(variant.method, protocol.dataset)))


def _finished_runs(out: str, dataset: str) -> Dict[str, Dict[str, List[Dict]]]:
    """variant name -> run purpose ('tune', 'final', 'cost') -> the result of every finished run."""
    runs: Dict[str, Dict[str, List[Dict]]] = {}
    runs_dir = os.path.join(out, dataset, "runs")
    for file in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        with open(os.path.join(runs_dir, file)) as handle:
            result = json.load(handle)
        runs.setdefault(result["spec"]["variant"], {}).setdefault(result["spec"]["purpose"], []).append(result)
    return runs


def _seconds_per_step(out: str, dataset: str) -> Dict[str, Dict[str, List[float]]]:
    """variant name -> run purpose -> the s/step of every finished run."""
    return {name: {purpose: [r["s_per_step"] for r in results] for purpose, results in by_purpose.items()}
            for name, by_purpose in _finished_runs(out, dataset).items()}


def write_step_costs(out: str, dataset: str) -> str:
    """costs.md: the s/step of every variant's ``--measure`` run, against SimCLR/paper/2's when it was measured,
    and the tuning budget each variant was given (runs and training hours, read from its run files)."""
    runs = _finished_runs(out, dataset)
    measured = {name: statistics.median(r["s_per_step"] for r in by_purpose["cost"])
                for name, by_purpose in runs.items() if by_purpose.get("cost")}
    reference = measured.get("SimCLR/paper/2")
    lines = [f"`{dataset}`: seconds per training step of 256 images (`--plan --measure` runs: 2 epochs, whole "
             "training split, the recipe's settings; median over the steps)", ""]
    if measured:
        lines += ["| variant | s/step | vs SimCLR/paper/2 |", "|---|---|---|"]
        for name in sorted(measured, key=_variant_order):
            ratio = f"{measured[name] / reference:.2f}x" if reference else "-"
            lines.append(f"| {name} | {measured[name]:.3f} | {ratio} |")
    else:
        lines.append("No `--measure` run yet; the s/step column of each result table is measured in its own runs.")
    lines += ["", f"`{dataset}`: the search each variant was given (finished runs; hours = training time "
              "recorded in the runs, evaluations excluded, under whatever load they ran)", "",
              "| variant | tuning runs | tuning hours | seed runs | seed hours |", "|---|---|---|---|---|"]
    for name in sorted((n for n in runs if runs[n].get("tune")), key=_variant_order):
        tune, final = runs[name]["tune"], runs[name].get("final", [])
        lines.append(f"| {name} | {len(tune)} | {_hours(tune)} | {len(final)} | {_hours(final)} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(out, dataset), exist_ok=True)
    with open(os.path.join(out, dataset, "costs.md"), "w") as handle:
        handle.write(text)
    return text


def _hours(results: Sequence[Dict]) -> str:
    seconds = [r.get("train_seconds") for r in results]
    return f"{sum(seconds) / 3600:.2f}" if seconds and None not in seconds else "-"


def _variant_order(name: str) -> Tuple[str, str, int]:
    return name.split("/")[0], name.split("/")[1], _view_count(name)


def _view_count(name: str) -> int:
    """Total views of a variant name: '.../2+4' -> 6."""
    return sum(int(v) for v in name.rsplit("/", 1)[1].split("+"))


def plan(table: str, size: Size, methods: Optional[Sequence[str]], out: str, dataset: str,
         views: Optional[Sequence[str]] = None) -> str:
    """The runs a table needs (a lower bound) and their training time, from the s/step of finished runs.

    Seconds per step come from the ``--measure`` runs (whole training split) where they
    exist, else from any finished run of the variant; the estimate counts training
    steps only (not model building or the kNN evaluations), so it is a lower bound too.
    """
    variants = table_variants(table, methods, views)
    measured = _seconds_per_step(out, dataset)
    train_size = DATASETS[dataset].train_size
    if train_size is None:
        return f"no cost estimate: the training-set size of {dataset!r} is not recorded in DATASETS\n"
    steps = {"tune": (train_size - round(0.2 * train_size)) // 256, "final": train_size // 256}
    lines = [f"`{dataset}`, table `{table}`: {size.epochs} epochs, seeds {list(size.seeds)}; runs needed and "
             "training hours, both lower bounds (more runs where the grid widens)", "",
             "| variant | tuning runs >= | seed runs | s/step (measured) | hours >= |", "|---|---|---|---|---|"]
    total_hours = 0.0
    for v in variants:
        runs = planned_runs([v], size)
        name = v.resolved().name
        samples = measured.get(Protocol._training_variant(v.resolved()).name, {})
        samples = samples.get("cost") or [t for values in samples.values() for t in values]
        if not samples:
            lines.append(f"| {name} | {runs - len(size.seeds)} | {len(size.seeds)} | not measured | ? |")
            continue
        s_step = statistics.median(samples)
        hours = s_step * size.epochs * ((runs - len(size.seeds)) * steps["tune"]
                                        + len(size.seeds) * steps["final"]) / 3600
        total_hours += hours
        lines.append(f"| {name} | {runs - len(size.seeds)} | {len(size.seeds)} | {s_step:.2f} | {hours:.1f} |")
    lines.append(f"| all | {planned_runs(variants, size) - len(variants) * len(size.seeds)} | "
                 f"{len(variants) * len(size.seeds)} | | {total_hours:.1f} |")
    return "\n".join(lines) + "\n"


def format_probe(result: Dict) -> str:
    """One line: the probed configuration's validation kNN, and the search's winner beside it."""
    def settings(config: Dict) -> str:
        return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items()
                         if k != "val_knn20")

    line = f"{result['variant']} probe {settings(result['config'])}: val kNN {100 * result['val_knn20']:.1f}"
    chosen = result["selection"]
    if chosen is None:
        line += "; the search has not finished"
    else:
        line += f"; the search's winner {settings(chosen)}: val kNN {100 * chosen['val_knn20']:.1f}"
    if result.get("test"):
        figures = ", ".join(f"{name} {_pct(result['test'][key])}" for key, name in
                            (("knn20", "kNN k=20"), ("knn200", "kNN k=200"), ("linear", "linear probe")))
        line += f"\n{result['variant']} probe, test split over {len(result['test']['knn20'])} seeds: {figures}"
    return line


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", choices=[*TABLES, "claims", "costs"], help="required unless --probe")
    parser.add_argument("--dataset", default="digits", choices=list(DATASETS))
    parser.add_argument("--size", default="default", choices=list(SIZES))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="only these methods' rows")
    parser.add_argument("--views", nargs="+", metavar="VIEWS",
                        help="only the rows with these views, as in a row's name (16, 2+4): a table's rows can "
                             "then train in parallel processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train up to this many runs side by side (the learning rates of one grid, the seeds "
                             "of a row) in worker processes; the selection is the same as with 1. Each worker "
                             "holds a whole run's memory (S2R2 at 16 views: about 6 GB)")
    parser.add_argument("--plan", action="store_true", help="print the runs and cost estimate, train nothing")
    parser.add_argument("--measure", action="store_true",
                        help="with --plan: first train each variant 2 epochs to measure its s/step")
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="the final runs' seeds, in this order (default: the size's); two processes "
                             "given the seeds in opposite orders share a table's final runs")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: write the table from finished runs, listing the rows not run")
    parser.add_argument("--out", default=os.path.join(BENCHMARKS, "protocol"))
    parser.add_argument("--probe", metavar="METHOD/HEAD/VIEWS",
                        help="score one configuration the search did not reach (a tuning run on the validation "
                             "part) and print it beside the search's winner; with --lr [--param] [--weight-decay]")
    parser.add_argument("--lr", type=float, help="with --probe: the learning rate")
    parser.add_argument("--param", type=float, help="with --probe: the method's main parameter (default: its default)")
    parser.add_argument("--weight-decay", type=float, help="with --probe: the weight decay (default: the default)")
    parser.add_argument("--final", action="store_true",
                        help="with --probe: also train the seeds' final runs and score the test split")
    args = parser.parse_args(argv)
    if args.probe is not None and args.lr is None:
        parser.error("--probe needs --lr")
    if args.table is None and args.probe is None:
        parser.error("the following arguments are required: --table (or --probe)")
    if args.probe is not None and args.plan:
        parser.error("--probe trains one configuration; --plan is for a --table")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.views is not None and args.table not in TABLES:
        parser.error("--views picks rows of a training table (not --probe, claims or costs)")
    if args.table in TABLES:
        try:
            table_variants(args.table, args.methods, args.views)
        except ValueError as error:
            parser.error(str(error))
    if args.table == "claims":
        print(write_claims(args.out, args.dataset))
        return
    if args.table == "costs":
        print(write_step_costs(args.out, args.dataset))
        return
    size = SIZES[args.size] if not args.seeds else replace(SIZES[args.size], seeds=tuple(args.seeds))
    if args.plan and not args.measure:
        print(plan(args.table, size, args.methods, args.out, args.dataset, args.views))
        return
    if args.device == "cpu":  # mmengine's Runner would otherwise train on a visible GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    # As rankssl.mm does for training: subnormal floats slow CPU back-propagation ~10x.
    torch.set_flush_denormal(True)
    protocol = Protocol(DATASETS[args.dataset], size, args.out, args.device, finished_only=args.finished_only,
                        jobs=args.jobs)
    if args.plan:
        measure_cost(protocol, args.table, args.methods, views=args.views)
        print(plan(args.table, size, args.methods, args.out, args.dataset, args.views))
        return
    if args.probe is not None:
        print(format_probe(protocol.probe(args.probe, args.lr, args.param, args.weight_decay, args.final)))
        return
    report = protocol.table(args.table, args.methods, args.views)
    print(format_table(report))
    print(f"trained {protocol.progress.trained} runs, skipped {protocol.progress.done - protocol.progress.trained} "
          f"finished before; results in {protocol.out}")


if __name__ == "__main__":
    main()
