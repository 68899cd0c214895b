"""The shipped mmengine recipes (config files), loadable by name.

Recipe names follow OpenMMLab: ``{method}_{backbone}_{gpus}xb{batch}-{schedule}_{data}.py``,
e.g. ``groco_resnet18_1xb256-coslr-200e_cifar10.py``. Shared parts live in ``_base_/``
(``datasets/``, ``schedules/``, ``default_runtime.py``) and are pulled in with
relative ``_base_`` paths, so a recipe also runs through mmengine's own
``Runner.from_cfg(Config.fromfile(path))``.

Example:
    >>> from rankssl.recipes import find_recipe, list_recipes
    >>> 'groco_smallcnn_1xb256-50e_digits' in list_recipes()
    True
    >>> find_recipe('groco_smallcnn_1xb256-50e_digits').endswith('.py')
    True
"""

from __future__ import annotations

import difflib
import os
from typing import List

RECIPES_DIR = os.path.dirname(os.path.abspath(__file__))

__all__ = ["RECIPES_DIR", "list_recipes", "find_recipe"]


def list_recipes() -> List[str]:
    """Names (without ``.py``) of the shipped recipes, sorted."""
    return sorted(
        name[:-3] for name in os.listdir(RECIPES_DIR)
        if name.endswith(".py") and not name.startswith("_")
    )


def find_recipe(name_or_path: str) -> str:
    """Path of a recipe given as a file path or a shipped recipe's name (with or without ``.py``)."""
    if os.path.isfile(name_or_path):
        return os.path.abspath(name_or_path)
    name = os.path.basename(name_or_path)
    name = name[:-3] if name.endswith(".py") else name
    if name in list_recipes():
        return os.path.join(RECIPES_DIR, name + ".py")
    close = difflib.get_close_matches(name, list_recipes(), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise FileNotFoundError(
        f"No recipe {name_or_path!r}: not a file and not a shipped recipe.{hint} "
        "`rankssl recipes` lists the shipped ones."
    )
