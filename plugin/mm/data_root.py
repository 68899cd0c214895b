"""Point every dataset of a recipe at one folder (``rankssl train RECIPE --data-root DIR``).

A recipe's ``data_root`` variable is expanded inside its ``_base_`` data config, so
overriding it after loading changes nothing: each dataset (train, kNN bank, kNN query,
and the test copies of both) holds its own ``data_root``. :func:`set_data_root` rewrites
all of them. A dataset whose ``data_root`` extends the recipe's (ImageNet's
``data_root + '/train'`` and ``+ '/val'``) keeps its suffix under the new folder.

Example::

    >>> from mmengine.config import Config
    >>> cfg = Config(dict(data_root='data/x', train_dataloader=dict(dataset=dict(
    ...     type='ImageFolder', data_root='data/x/train'))))
    >>> set_data_root(cfg, '/my/x')
    1
    >>> cfg.train_dataloader.dataset.data_root
    '/my/x/train'
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Optional

__all__ = ["set_data_root", "data_root_datasets", "DATALOADER_KEYS"]

DATALOADER_KEYS = ("train_dataloader", "val_dataloader", "test_dataloader")


def _takes_data_root(node: dict) -> bool:
    """Whether a dataset config reads files from a ``data_root``."""
    if "data_root" in node:
        return True
    kind = node.get("type")
    if not isinstance(kind, str):
        return hasattr(kind, "check_data_root")
    from rankssl.registry import DATASETS

    cls = DATASETS.get(kind)
    return cls is not None and hasattr(cls, "check_data_root")


def data_root_datasets(node: Any) -> Iterator[dict]:
    """Every dataset config under ``node`` (nested in wrappers, kNN bank/query) that reads a ``data_root``."""
    if isinstance(node, dict):
        if "type" in node and _takes_data_root(node):
            yield node
        for value in node.values():
            yield from data_root_datasets(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from data_root_datasets(value)


def _moved(old: Optional[str], base: Optional[str], new: str) -> str:
    """``old`` with the recipe's ``base`` folder replaced by ``new`` (``new`` itself if ``old`` is not under it)."""
    if isinstance(old, str) and isinstance(base, str) and base:
        base_n, old_n = os.path.normpath(base), os.path.normpath(old)
        if old_n != base_n and old_n.startswith(base_n + os.sep):
            return os.path.join(new, os.path.relpath(old_n, base_n))
    return new


def set_data_root(cfg: Any, data_root: str) -> int:
    """Set the ``data_root`` of every dataset in ``cfg``'s dataloaders; returns how many changed.

    Raises ``ValueError`` when the recipe reads no data from disk (e.g. the embedded digits),
    so a mistyped recipe never silently ignores ``--data-root``.
    """
    if not isinstance(data_root, str) or not data_root:
        raise ValueError(f"--data-root must be a folder path, got {data_root!r}.")
    base = cfg.get("data_root")
    count = 0
    seen = set()  # test_dataloader may be the very dict of val_dataloader: move each dataset once
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if not loader:
            continue
        for dataset in data_root_datasets(loader.get("dataset")):
            if id(dataset) in seen:
                continue
            seen.add(id(dataset))
            dataset["data_root"] = _moved(dataset.get("data_root"), base, data_root)
            count += 1
    if count == 0:
        raise ValueError(
            f"--data-root {data_root}: this recipe's datasets read no files (embedded or generated "
            "data); drop --data-root or pick a recipe that trains on files."
        )
    cfg.data_root = data_root
    return count
