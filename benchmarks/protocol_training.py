"""One training run of the protocol: the method's recipe with the protocol's overrides, trained and scored.

``train_run`` is the unit ``protocol.Protocol`` schedules (in-process or in a ``--jobs``
worker); ``baseline_rows`` scores the untrained references (raw pixels, random init).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from protocol_spec import COMMON_HEAD, METHODS, DatasetSpec, RunSpec, recipe_for, variant_from_name


def tuning_split(train_y, fraction: float = 0.2, seed: int = 0) -> Tuple[List[int], List[int]]:
    """(fit, validation) indices of the training split, stratified; the only data selection sees."""
    from protocol_eval import stratified_split

    return stratified_split(train_y, fraction, seed)


def _view_pipeline(base_view: dict, views: str) -> List[dict]:
    """MultiView configs: 'V' = V views of the recipe's crop; '2+4' = 2 of them + 4 small (16 px) crops."""
    if "+" in views:
        global_views, small_views = (int(v) for v in views.split("+"))
        small = dict(base_view, input_size=base_view["input_size"] // 2, min_scale=0.05, num_views=small_views)
        return [dict(base_view, num_views=global_views), small]
    return [dict(base_view, num_views=int(views))]


def _supcon_model(hydra_model, temperature: float) -> dict:
    """The Hydra recipe's model as ``LabelledViews`` with pml's ``SupConLoss``: same backbone, head and
    preprocessing (and, left to the recipe, the same sampler and schedule), only the loss differs.

    SupCon rows keep the Hydra recipe's digest in their run keys: the recipe is what they train.
    """
    model = dict(type="LabelledViews", backbone=hydra_model.backbone, neck=hydra_model.neck,
                 loss=dict(type="SupConLoss", temperature=temperature))
    for key in ("data_preprocessor", "pool", "neck_input"):
        if hydra_model.get(key) is not None:
            model[key] = hydra_model[key]
    return model


def build_config(spec: RunSpec, dataset: DatasetSpec, work_dir: str, fit_indices: Optional[Sequence[int]]):
    """The recipe of ``spec``'s method with the protocol's overrides (an mmengine Config)."""
    from rankssl.cli import load_config, set_epochs

    variant = variant_from_name(spec.variant)
    method = METHODS[variant.method]
    cfg = load_config(recipe_for(method.recipe, dataset), work_dir)
    set_epochs(cfg, spec.epochs)
    cfg.randomness = dict(seed=spec.seed, deterministic=False)
    cfg.optim_wrapper.optimizer.lr = spec.lr
    cfg.optim_wrapper.optimizer.weight_decay = spec.weight_decay
    if cfg.model.get("instance_loss") is not None:  # the label-based losses alone
        cfg.model.instance_loss = None
    if method.supcon:
        cfg.model = _supcon_model(cfg.model, spec.param)
    else:
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


def train_run(spec: RunSpec, dataset: DatasetSpec, data: Dict, fit_val: Tuple[List[int], List[int]],
              work_root: str) -> Dict:
    """Train one run and score it: the validation part for 'tune', the test split for 'final'."""
    from mmengine.runner import Runner

    from protocol_eval import effective_rank, evaluate, features, knn_accuracy

    fit_idx, val_idx = fit_val
    work_dir = os.path.join(work_root, spec.run_id)
    cfg = build_config(spec, dataset, work_dir, fit_idx)
    runner = Runner.from_cfg(cfg)
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


def baseline_rows(data: Dict, seeds: Sequence[int], device: str = "cpu", normalize: Tuple[float, float] = (0.0, 1.0),
                  erank: Optional[Callable] = None) -> Dict[str, Dict[str, float]]:
    """Raw pixels (as given) and a random-init SmallCNN on ``(x - mean) / std`` (mean over ``seeds``),
    scored like trained rows; ``erank(test_features)`` adds the random init's effective rank."""
    import torch

    from protocol_eval import evaluate, features
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
