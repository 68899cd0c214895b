"""Check ``--cfg-options`` overrides against the recipe's own values before anything is built.

mmengine merges ``KEY=VALUE`` overrides without looking at them, so ``lr=abc`` or
``widths=7`` fail deep inside the optimizer or the network with torch's message, and
``val_interval=0`` divides by zero after the first epoch. :func:`check_option_types`
compares each override with the value it replaces and with what a few well-known keys
need, and raises ``ValueError`` naming the key, the expected type and the value given.

Rules, by the value the recipe has at the key: a number wants a number, a sequence a
sequence (``(8, 16)``), a boolean a boolean, a dict a dict (a string or ``None`` in the
recipe accepts anything). By the key's last part: ``lr``, ``momentum``,
``weight_decay``, ``temperature`` need a number; ``seed`` a whole number (or ``None``);
``val_interval``, ``max_epochs``, ``max_iters``, ``batch_size`` a whole number >= 1;
``interval`` a whole number other than 0 (-1 disables a hook's interval);
``num_workers`` a whole number >= 0.

Example:
    >>> check_option_types({"optim_wrapper": {"optimizer": {"lr": 0.1}}}, {"optim_wrapper.optimizer.lr": 0.2})
    >>> check_option_types({"optim_wrapper": {"optimizer": {"lr": 0.1}}}, {"optim_wrapper.optimizer.lr": "abc"})
    Traceback (most recent call last):
    ...
    ValueError: --cfg-options optim_wrapper.optimizer.lr expects a number (the recipe has 0.1), got 'abc' (str)
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

__all__ = ["check_option_types"]

_MISSING = object()
_NUMBER_KEYS = {"lr", "momentum", "weight_decay", "temperature", "eta_min", "start_factor"}
_POSITIVE_INT_KEYS = {"val_interval", "max_epochs", "max_iters", "batch_size"}


def _lookup(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _what(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _expected(key: str, old: Any, new: Any) -> Optional[str]:
    """What ``key`` needs if ``new`` does not fit, else None."""
    name = key.rsplit(".", 1)[-1]
    had = "" if old is _MISSING else f" (the recipe has {old!r})"
    if name in _POSITIVE_INT_KEYS and not (_is_whole(new) and new >= 1):
        return f"a whole number >= 1{had}"
    if name == "interval" and not (_is_whole(new) and new != 0):
        return f"a whole number other than 0 (-1 turns it off){had}"
    if name == "num_workers" and not (_is_whole(new) and new >= 0):
        return f"a whole number >= 0{had}"
    if name == "seed" and not (new is None or _is_whole(new)):
        return f"a whole number (or None){had}"
    if name in _NUMBER_KEYS and not _is_number(new):
        return f"a number{had}"
    if name in _POSITIVE_INT_KEYS | _NUMBER_KEYS | {"interval", "num_workers", "seed"}:
        return None  # the key's own rule decides (seed=None is fine where the recipe has 0)
    if old is _MISSING or old is None or isinstance(old, str):
        return None
    if isinstance(old, bool):
        return None if isinstance(new, bool) else f"True or False{had}"
    if _is_number(old):
        return None if _is_number(new) else f"a number{had}"
    if isinstance(old, (list, tuple)):
        return None if isinstance(new, (list, tuple)) else f"a sequence such as {tuple(old)!r}{had}"
    if isinstance(old, Mapping):
        return None if isinstance(new, Mapping) else f"a dict of settings (the recipe's has keys {sorted(old)})"
    return None


def check_option_types(cfg: Any, options: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for the first override in ``options`` whose value does not fit ``cfg``.

    Args:
        cfg: the recipe's config before the overrides (an mmengine ``Config`` or a dict).
        options: parsed ``--cfg-options`` (dotted keys -> values, as mmengine's ``DictAction`` gives).
    """
    if not isinstance(cfg, Mapping) and hasattr(cfg, "to_dict"):  # mmengine's Config wraps its dict
        cfg = cfg.to_dict()
    for key, new in options.items():
        expected = _expected(key, _lookup(cfg, key), new)
        if expected is not None:
            raise ValueError(f"--cfg-options {key} expects {expected}, got {_what(new)}")
