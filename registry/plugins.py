"""Load third-party components from the ``rankssl.plugins`` entry-point group.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."rankssl.plugins"]
    my_plugin = "my_package.rankssl_plugin"          # a module that registers on import
    # or: my_plugin = "my_package.rankssl_plugin:register"   # a function called once

and registers its components with ``rankssl.registry`` (for example
``MODELS.register_module(module=MyLoss)``). Plugins load when a rankssl registry is
first used (this module is one of every registry's ``locations``), never at
``import rankssl``. A plugin that fails to load is reported by name in a warning and
skipped; it never breaks rankssl or another plugin.
"""

from __future__ import annotations

import warnings
from importlib import metadata
from typing import Dict, List, Tuple

from rankssl.registry._catalog import CATALOG

__all__ = ["ENTRY_POINT_GROUP", "LOADED", "FAILED", "load_plugins"]

ENTRY_POINT_GROUP = "rankssl.plugins"
LOADED: Dict[str, List[Tuple[str, str]]] = {}  # plugin name -> [(registry name, component name)]
FAILED: Dict[str, str] = {}  # plugin name -> error
_DONE = False


def _entry_points() -> list:
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # Python < 3.10


def _snapshot() -> Dict[Tuple[str, str], object]:
    from rankssl.registry import ALL_REGISTRIES

    return {(reg.name, name): obj for reg in ALL_REGISTRIES for name, obj in reg.module_dict.items()}


def load_plugins() -> None:
    """Load every plugin of the entry-point group once (later calls do nothing)."""
    global _DONE
    if _DONE:
        return
    _DONE = True
    seen = set()
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        before = _snapshot()
        try:
            loaded = ep.load()
            if callable(loaded) and not isinstance(loaded, type):
                loaded()
        except Exception as exc:  # a broken plugin must not break rankssl
            FAILED[ep.name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"rankssl plugin {ep.name!r} ({ep.value}) failed to load and was skipped: "
                f"{type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        added = [key for key in _snapshot() if key not in before and key not in CATALOG]
        dist = getattr(getattr(ep, "dist", None), "name", None)
        for key in added:
            CATALOG[key] = f"plugin {ep.name}" + (f" ({dist})" if dist else "")
        LOADED[ep.name] = added


load_plugins()
