"""The registry class of the ``rankssl`` scope: mmengine's ``Registry`` with helpful misses."""

from __future__ import annotations

import difflib
from typing import Any, List, Optional

from mmengine.registry import Registry

__all__ = ["RankSSLRegistry", "UnknownComponentError"]


class UnknownComponentError(KeyError):
    """A config names a component type that no reachable registry holds."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class RankSSLRegistry(Registry):
    """mmengine ``Registry`` whose ``get`` raises :class:`UnknownComponentError` for unknown names.

    The error names the registry, its scope and the closest registered names
    (``difflib``), including those of the parents (mmengine's root) and of the sibling
    scopes (``mmpretrain.ResNet`` ...). ``key in registry`` still answers False.
    """

    def get(self, key: str) -> Optional[Any]:
        obj = super().get(key)
        if obj is None and isinstance(key, str):
            raise UnknownComponentError(self.unknown_message(key))
        return obj

    def __contains__(self, key: Any) -> bool:
        try:
            return super().get(key) is not None
        except KeyError:
            return False

    def visible_names(self) -> List[str]:
        """Names reachable from this registry: its own, its ancestors', and sibling scopes' with prefix."""
        names = set(self.module_dict)
        node = self.parent
        while node is not None:
            names.update(node.module_dict)
            root = node
            node = node.parent
        if self.parent is not None:
            for scope, child in root._children.items():
                if child is self:
                    continue
                names.update(f"{scope}.{name}" for name in child.module_dict)
        return sorted(names)

    def unknown_message(self, key: str) -> str:
        scope, real_key = self.split_scope_key(key)
        names = self.visible_names()
        close = difflib.get_close_matches(key, names, n=5, cutoff=0.5)
        if real_key != key:
            close += [n for n in difflib.get_close_matches(real_key, names, n=5, cutoff=0.5) if n not in close]
        lower = [n for n in names if n.lower() == real_key.lower() or n.lower().endswith("." + real_key.lower())]
        close = lower + [n for n in close if n not in lower]
        hint = f" Closest registered names: {', '.join(close[:5])}." if close else " No similar name is registered."
        where = f"'{scope}' scope" if scope else f"'{self.scope}' scope or its parents (mmengine)"
        return (
            f"{key!r} is not a registered {self.name}: not found in the {self.scope}::{self.name} registry "
            f"(searched the {where}).{hint} Run `rankssl list` to see every component; a component of another "
            f"OpenMMLab package needs its scope prefix (e.g. 'mmpretrain.ResNet')."
        )
