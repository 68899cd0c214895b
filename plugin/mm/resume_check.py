"""Compare a checkpoint with the run that is about to resume from it, before training.

mmengine checkpoints record the configuration that wrote them (``meta['cfg']``, the
config's text, and ``meta['experiment_name']``, the recipe's name plus a timestamp).
:func:`check_resume` compares them, and the checkpoint's model tensors, with the new run:

- refused (``ValueError``): a checkpoint whose model does not fit, naming the recipe
  that wrote it and the first differing tensors with both shapes (or the tensors one side
  lacks), and a checkpoint of another method (a component ``type`` under ``model``
  differs: another recipe's checkpoint);
- reported: changed settings that the resumed state overrides. A resume continues the
  saved run exactly as mmengine does: the optimizer's state (learning rate, momentum,
  weight decay of every parameter group) and the learning-rate schedule's state (its
  base values, begin, end) come from the checkpoint, so a changed
  ``optim_wrapper.optimizer.lr`` or schedule has no effect; the random seed is the
  checkpoint's too (mmengine). Every other change (epochs, batch size, data,
  augmentations, hooks) applies from the resumed iteration on, and is listed as such.

To use new optimizer settings, start a new work dir from the weights with
``--cfg-options load_from=PATH`` instead of ``--resume``.

Example:
    >>> import torch
    >>> report = compare_state_dicts({"w": torch.zeros(2, 3)}, {"w": torch.zeros(3, 3)})
    >>> report
    ["tensor 'w' is (2, 3) in the checkpoint, (3, 3) in this run's model"]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Tuple

__all__ = ["ResumeReport", "check_resume", "compare_state_dicts", "config_differences", "recipe_of"]

# Kept from the checkpoint on resume (mmengine loads the optimizer's and the schedulers' states).
OVERRIDDEN_BY_CHECKPOINT = ("optim_wrapper", "param_scheduler", "randomness.seed")
# Bookkeeping that differs between a run and its resume by design.
IGNORED = (
    "work_dir",
    "resume",
    "load_from",
    "launcher",
    "experiment_name",
    "model_wrapper_cfg",
    "env_cfg.dist_cfg",
    "filename",
)
_MAX_LISTED = 5


def recipe_of(experiment_name: Optional[str]) -> str:
    """The recipe name in mmengine's ``experiment_name`` (``<recipe>_<YYYYmmdd_HHMMSS>``)."""
    if not experiment_name:
        return "an unknown recipe"
    return re.sub(r"_\d{8}_\d{6}$", "", str(experiment_name))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_differences(old: Any, new: Any, prefix: str = "") -> List[Tuple[str, Any, Any]]:
    """``(key, old, new)`` for every leaf that differs (dotted keys, list items as ``[i]``).

    Example:
        >>> config_differences({"a": {"lr": 0.1}, "b": (1, 2)}, {"a": {"lr": 0.2}, "b": [1, 2]})
        [('a.lr', 0.1, 0.2)]
    """
    old, new = _plain(old), _plain(new)
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            name = f"{prefix}.{key}" if prefix else str(key)
            out += config_differences(old.get(key, "<unset>"), new.get(key, "<unset>"), name)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += config_differences(a, b, f"{prefix}[{i}]")
        return out
    return [] if old == new else [(prefix, old, new)]


def _shape(value: Any) -> Optional[Tuple[int, ...]]:
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else None


def compare_state_dicts(saved: Mapping[str, Any], model: Mapping[str, Any]) -> List[str]:
    """Why ``saved`` (a checkpoint's ``state_dict``) cannot load into ``model`` (a state dict): [] if it can."""
    problems = []
    for name in saved:
        # _extra_state (a loss's generator state) is a byte blob whose size varies with the generator's device.
        if name in model and not name.endswith("_extra_state") and _shape(saved[name]) != _shape(model[name]):
            problems.append(
                f"tensor {name!r} is {_shape(saved[name])} in the checkpoint, {_shape(model[name])} in this run's model"
            )
    missing = [n for n in model if n not in saved]
    extra = [n for n in saved if n not in model]
    if missing:
        problems.append(f"the checkpoint lacks {len(missing)} tensor(s) of this run's model ({_names(missing)})")
    if extra:
        problems.append(f"the checkpoint has {len(extra)} tensor(s) this run's model lacks ({_names(extra)})")
    return problems


def _names(names: List[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    return shown + (f", ... {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") or key.startswith(p + "[") for p in prefixes)


@dataclass
class ResumeReport:
    """What :func:`check_resume` found; ``errors`` non-empty means the resume is refused."""

    path: str
    checkpoint_recipe: str
    recipe: str
    errors: List[str] = field(default_factory=list)
    overridden: List[Tuple[str, Any, Any]] = field(default_factory=list)  # (key, checkpoint's, this run's)
    applied: List[Tuple[str, Any, Any]] = field(default_factory=list)

    def error_message(self) -> str:
        return (
            f"cannot resume from {self.path}: it was written by recipe {self.checkpoint_recipe!r} and does "
            f"not fit this run (recipe {self.recipe!r}): "
            + "; ".join(self.errors[:_MAX_LISTED])
            + ". Resume with the recipe and settings that wrote it, or train into a new --work-dir "
            "(--cfg-options load_from=PATH starts from its matching weights without resuming)."
        )

    def messages(self) -> List[str]:
        """Warning lines: the changed settings the checkpoint overrides, and those that apply."""
        lines = []
        if self.overridden:
            changes = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in self.overridden)
            lines.append(
                f"resume keeps the checkpoint's optimizer, learning-rate schedule and seed; these changed "
                f"settings have no effect: {changes}. To use them, train into a new --work-dir with "
                "--cfg-options load_from=PATH instead of --resume."
            )
        if self.applied:
            changes = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in self.applied)
            lines.append(f"settings changed since the checkpoint, applied from the resumed iteration on: {changes}")
        return lines


def check_resume(
    path: str,
    checkpoint: Mapping[str, Any],
    cfg: Any,
    model_state: Mapping[str, Any],
    experiment_name: Optional[str] = None,
) -> ResumeReport:
    """Compare ``checkpoint`` (loaded from ``path``) with the run's config ``cfg`` and model state dict.

    Args:
        path: the checkpoint's path (for messages).
        checkpoint: the loaded checkpoint (``meta``, ``state_dict``).
        cfg: the new run's config (an mmengine ``Config`` or a dict).
        model_state: the new run's model ``state_dict()`` (unwrapped).
        experiment_name: the new run's mmengine experiment name (for the recipe's name).
    """
    meta = checkpoint.get("meta") or {}
    report = ResumeReport(
        path=path, checkpoint_recipe=recipe_of(meta.get("experiment_name")), recipe=recipe_of(experiment_name)
    )
    old_cfg = None
    if isinstance(meta.get("cfg"), str):
        from mmengine.config import Config

        try:
            old_cfg = Config.fromstring(meta["cfg"], file_format=".py").to_dict()
        except Exception:  # noqa: BLE001 - an unreadable record only skips the config comparison
            old_cfg = None
    new_cfg = _plain(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    if old_cfg is not None:
        for key, old, new in config_differences(old_cfg.get("model", {}), new_cfg.get("model", {}), "model"):
            if key.endswith(".type") or key == "model.type":
                report.errors.append(f"{key} is {old!r} in the checkpoint, {new!r} in this run (another method)")
    report.errors += compare_state_dicts(checkpoint.get("state_dict") or {}, model_state)
    if old_cfg is not None and not report.errors:
        for key, old, new in config_differences(old_cfg, new_cfg):
            if _under(key, IGNORED):
                continue
            (report.overridden if _under(key, OVERRIDDEN_BY_CHECKPOINT) else report.applied).append((key, old, new))
    return report
