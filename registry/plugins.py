"""Load third-party components from the ``rankssl.plugins`` entry-point group.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."rankssl.plugins"]
    my_plugin = "my_package.rankssl_plugin"          # a module that registers on import
    # or: my_plugin = "my_package.rankssl_plugin:register"   # a function called once

and registers its components with ``rankssl.registry`` (for example
``MODELS.register_module(module=MyLoss)``). Plugins load when a rankssl registry is
first used (this module is one of every registry's ``locations``), never at
``import rankssl``. A plugin that fails to load (an exception, or ``sys.exit()``) is
reported by name in a warning and skipped, its registrations undone; it never breaks
rankssl or another plugin. A plugin cannot replace a component that rankssl (or an
earlier plugin) already registered under the same name: the existing one stays, and a
warning and ``rankssl list`` name both.
"""

from __future__ import annotations

import importlib
import warnings
from importlib import metadata
from typing import Dict, List, Tuple

from rankssl.registry._catalog import CATALOG

__all__ = ["ENTRY_POINT_GROUP", "LOADED", "FAILED", "COLLISIONS", "load_plugins", "report_lines"]

ENTRY_POINT_GROUP = "rankssl.plugins"
LOADED: Dict[str, List[Tuple[str, str]]] = {}  # plugin name -> [(registry name, component name)]
FAILED: Dict[str, str] = {}  # plugin name -> error
# plugin name -> [(registry name, component name, kept object's path, refused object's path)]
COLLISIONS: Dict[str, List[Tuple[str, str, str, str]]] = {}
_OWN_MODULES = ("rankssl.registry.models", "rankssl.registry.data", "rankssl.registry.evaluation")
_DONE = False


def _entry_points() -> list:
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # Python < 3.10


def _registries() -> dict:
    from rankssl.registry import ALL_REGISTRIES

    return {reg.name: reg for reg in ALL_REGISTRIES}


def _snapshot() -> Dict[Tuple[str, str], object]:
    return {(name, key): obj for name, reg in _registries().items() for key, obj in reg.module_dict.items()}


def _restore(before: Dict[Tuple[str, str], object]) -> None:
    """Put every registry back as it was in ``before`` (drop additions, undo replacements)."""
    for name, reg in _registries().items():
        current = reg._module_dict
        for key in [k for k in current if (name, k) not in before]:
            del current[key]
        for (reg_name, key), obj in before.items():
            if reg_name == name and current.get(key) is not obj:
                current[key] = obj


def _path(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', obj))}"


def _owner(key: Tuple[str, str]) -> str:
    origin = CATALOG.get(key, "rankssl")
    return origin if origin.startswith("plugin ") else "rankssl"


def load_plugins() -> None:
    """Load every plugin of the entry-point group once (later calls do nothing).

    A plugin that raises, or calls ``sys.exit()``, while loading is reported and its
    registrations are undone. A plugin that registers a name already taken (by
    rankssl or an earlier plugin) does not replace it: the existing component stays,
    a warning names both, and ``rankssl list`` shows the collision.
    """
    global _DONE
    if _DONE:
        return
    _DONE = True
    for module in _OWN_MODULES:  # rankssl's own names first, so that collisions are seen
        importlib.import_module(module)
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
        except (Exception, SystemExit) as exc:  # a broken plugin must not break rankssl
            _restore(before)
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, SystemExit):
                error = f"called sys.exit({exc.code!r}) while loading"
            FAILED[ep.name] = error
            warnings.warn(
                f"rankssl plugin {ep.name!r} ({ep.value}) failed to load and was skipped: {error}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        after = _snapshot()
        replaced = [key for key in before if after.get(key) is not before[key]]
        if replaced:
            refused = {key: after.get(key) for key in replaced}
            _restore({**after, **{key: before[key] for key in replaced}})
            COLLISIONS[ep.name] = [(key[0], key[1], _path(before[key]), _path(refused[key])) for key in replaced]
            for reg_name, name, kept, ignored in COLLISIONS[ep.name]:
                warnings.warn(
                    f"rankssl plugin {ep.name!r} registers {reg_name} {name!r}, which {_owner((reg_name, name))} "
                    f"already provides ({kept}); builds keep using {kept} and ignore the plugin's {ignored}. "
                    "The plugin should register it under another name.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        added = [key for key in after if key not in before]
        dist = getattr(getattr(ep, "dist", None), "name", None)
        for key in added:
            CATALOG[key] = f"plugin {ep.name}" + (f" ({dist})" if dist else "")
        LOADED[ep.name] = added


def report_lines() -> List[str]:
    """What ``rankssl list`` prints about plugins that failed or collided."""
    lines = [f"plugin {name!r} failed to load and was skipped: {error}" for name, error in sorted(FAILED.items())]
    for name, rows in sorted(COLLISIONS.items()):
        for reg_name, component, kept, ignored in rows:
            lines.append(
                f"plugin {name!r} also registers {reg_name} {component!r}: ignored ({ignored}); builds use {kept}"
            )
    return lines


load_plugins()
