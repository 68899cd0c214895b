"""Refuse to evaluate a checkpoint with a recipe whose model it was not trained as.

mmengine loads a checkpoint into a model with ``strict=False`` and only logs the keys that
do not fit, so ``rankssl test RECIPE CKPT`` with another recipe's checkpoint used to report
metrics of a half-random model and exit 0. Two checks stop that:

1. :func:`model_config_differences`: mmengine records the training config in the checkpoint
   (``meta['cfg']``); its ``model`` section (backbone, neck, loss, algorithm type, ...) must
   equal the recipe's. The data preprocessor is left out (normalisation is a data choice:
   testing on other data is allowed) and so is ``init_cfg``.
2. :func:`state_dict_differences`: every tensor of the built model must be in the
   checkpoint with the same shape, and the checkpoint must hold no other model tensors
   (this covers checkpoints without a recorded config).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

__all__ = ["CheckpointMismatch", "model_config_differences", "state_dict_differences", "trained_recipe"]

_IGNORED = ("data_preprocessor", "init_cfg")


class CheckpointMismatch(ValueError):
    """The checkpoint was trained with another model than the recipe describes."""


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _diff(a: Any, b: Any, path: str, out: List[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=lambda k: (k != "type", str(k))):  # a type first
            if path == "model" and key in _IGNORED:
                continue
            if key not in a:
                out.append(f"{path}.{key}: recipe {_short(b[key])}, checkpoint has none")
            elif key not in b:
                out.append(f"{path}.{key}: checkpoint {_short(a[key])}, recipe has none")
            else:
                _diff(a[key], b[key], f"{path}.{key}", out)
    elif a != b:
        out.append(f"{path}: checkpoint {_short(a)}, recipe {_short(b)}")


def recorded_config(checkpoint: Dict[str, Any]):
    """The config mmengine recorded in the checkpoint (``meta['cfg']``), or None."""
    text = (checkpoint.get("meta") or {}).get("cfg") if isinstance(checkpoint, dict) else None
    if not isinstance(text, str):
        return None
    from mmengine.config import Config

    try:
        return Config.fromstring(text, file_format=".py")
    except Exception:  # noqa: BLE001 - an unreadable record: fall back to the state_dict check
        return None


def trained_recipe(checkpoint: Dict[str, Any]) -> Optional[str]:
    """The recipe's name as mmengine recorded it (``experiment_name`` minus its timestamp), or None."""
    name = (checkpoint.get("meta") or {}).get("experiment_name") if isinstance(checkpoint, dict) else None
    if not isinstance(name, str):
        return None
    parts = name.rsplit("_", 2)
    return parts[0] if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() else name


def model_config_differences(checkpoint: Dict[str, Any], recipe_model: Dict[str, Any]) -> List[str]:
    """Lines ``model.KEY: checkpoint X, recipe Y`` where the recorded model config differs (empty: equal
    or nothing recorded)."""
    recorded = recorded_config(checkpoint)
    if recorded is None or "model" not in recorded:
        return []
    out: List[str] = []
    _diff(
        _plain(recorded.model.to_dict() if hasattr(recorded.model, "to_dict") else recorded.model),
        _plain(recipe_model.to_dict() if hasattr(recipe_model, "to_dict") else recipe_model),
        "model",
        out,
    )
    return out


def state_dict_differences(model: torch.nn.Module, checkpoint: Dict[str, Any]) -> List[str]:
    """Lines naming missing, unexpected and differently shaped tensors (empty: the checkpoint fits)."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else {}
    state = {
        k[len("module.") :] if k.startswith("module.") else k: v
        for k, v in state.items()
        if isinstance(v, torch.Tensor)
    }
    expected = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    preprocessor = tuple(k for k in set(expected) | set(state) if k.startswith("data_preprocessor."))
    missing = sorted(set(expected) - set(state) - set(preprocessor))
    unexpected = sorted(set(state) - set(expected) - set(preprocessor))
    shapes = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    out = []
    for label, keys in (("missing from the checkpoint", missing), ("not in the recipe's model", unexpected)):
        if keys:
            out.append(f"{len(keys)} tensors {label} (e.g. {', '.join(keys[:3])})")
    if shapes:
        k = shapes[0]
        out.append(
            f"{len(shapes)} tensors of other shapes (e.g. {k}: checkpoint {tuple(state[k].shape)}, "
            f"recipe {tuple(expected[k].shape)})"
        )
    return out


def check_checkpoint_matches(
    checkpoint: Dict[str, Any],
    recipe_model: Dict[str, Any],
    checkpoint_path: str,
    recipe: str,
    model: Optional[torch.nn.Module] = None,
) -> None:
    """Raise :class:`CheckpointMismatch` (one line: what differs, what to do) unless the checkpoint is the
    recipe's model: its recorded model config first, then (with ``model``) its tensors' names and shapes."""
    problems = model_config_differences(checkpoint, recipe_model)
    if not problems and model is not None:
        problems = state_dict_differences(model, checkpoint)
    if not problems:
        return
    trained = trained_recipe(checkpoint)
    hint = f" (recorded: {trained!r})" if trained else ""
    shown = "; ".join(problems[:2]) + (f"; and {len(problems) - 2} more" if len(problems) > 2 else "")
    raise CheckpointMismatch(
        f"checkpoint {checkpoint_path!r} does not match recipe {recipe!r}: {shown}. Test it with the recipe "
        f"(and --cfg-options) it was trained with{hint}."
    )
