"""The registry class of the ``rankssl`` scope: mmengine's ``Registry`` with helpful build errors."""

from __future__ import annotations

import difflib
import sys
from types import FrameType
from typing import Any, List, Optional, Tuple

from mmengine.registry import Registry
from mmengine.utils import get_object_from_string

_BUILD_MODULE = "mmengine.registry.build_functions"
_REGISTRY_MODULES = ("mmengine.registry.registry", __name__)

__all__ = ["RankSSLRegistry", "UnknownComponentError"]


class UnknownComponentError(KeyError):
    """A config names a component type that no reachable registry holds."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def _lookup_context() -> Tuple[bool, bool]:
    """``(via_parent, building)`` for the current :meth:`RankSSLRegistry.get` call.

    ``via_parent``: a parent's ``Registry.get`` called us after stripping our scope from
    the key (``'rankssl.X'``). ``building``: the lookup serves one of mmengine's build
    functions (``Registry.build``, ``Runner.from_cfg`` ...), not a probe.

    Why the call stack, and not an explicit flag: ``get`` must answer ``None`` to a probe
    (OpenMMLab code tries registries and falls back) but a *build* of an unknown name should
    raise our :class:`UnknownComponentError`. mmengine's build functions
    (``mmengine.registry.build_functions``: ``build_from_cfg``, ``build_model_from_cfg``, ...)
    call ``registry.get(type)`` without saying they build, and a build reaches our ``get``
    through code we do not own: mmengine's root registries (``MODELS.build(dict(type=
    'rankssl.X'))``, ``Runner.from_cfg``) or those module-level functions called directly. The
    only alternative that tells a build from a probe on every such path is replacing mmengine's
    build functions or its root registries' ``build_func`` for the whole process, a wider side
    effect than this read-only look. What it reads: the ``__name__`` of the calling frames' modules
    (no locals, no arguments), only after a lookup missed, so known names never pay for it. What
    would break it: mmengine moving its build functions out of ``_BUILD_MODULE``; then failed builds
    fall back to mmengine's own ``KeyError`` (still a ``KeyError``, without our closest names), and
    ``tests/test_mmengine_contract.py`` (``test_failed_build_is_a_key_error_with_the_closest_names``)
    fails.
    """
    frame: Optional[FrameType] = sys._getframe(2)  # 0: this function, 1: RankSSLRegistry.get
    via_parent = False
    while frame is not None and frame.f_globals.get("__name__") in _REGISTRY_MODULES:
        via_parent = True
        frame = frame.f_back
    return via_parent, frame is not None and frame.f_globals.get("__name__") == _BUILD_MODULE


class RankSSLRegistry(Registry):
    """mmengine ``Registry`` that explains a failed build with the closest registered names.

    ``get`` follows mmengine: it returns ``None`` for an unknown name (OpenMMLab code
    probes registries this way) and ``key in registry`` answers False. A *build*
    (``registry.build(cfg)``, ``Runner.from_cfg``, any of mmengine's build functions)
    of an unknown type raises :class:`UnknownComponentError` (a ``KeyError``, what
    mmengine raises there) naming the registry, its scope and the closest registered
    names (``difflib``), including those of the parents (mmengine's root) and of the
    sibling scopes (``mmpretrain.ResNet`` ...).

    Dotted import paths (``rankssl.losses.GroCoLoss``, ``rankssl.losses.groco.GroCoLoss``,
    ``torch.nn.Linear``) resolve from any scope, which is what lazy-import configs
    (``read_base()``, ``LazyObject``) dump.

    Example:
        >>> from rankssl.registry import MODELS
        >>> MODELS.get("NoSuchLoss") is None
        True
        >>> MODELS.get("rankssl.losses.GroCoLoss").__name__
        'GroCoLoss'
    """

    def get(self, key: str) -> Optional[Any]:
        obj = super().get(key)
        if obj is not None or not isinstance(key, str):
            return obj
        via_parent, building = _lookup_context()
        if via_parent:
            # A parent stripped our scope from 'rankssl.losses.GroCoLoss': the full import path.
            key = f"{self.scope}.{key}"
            obj = get_object_from_string(key) if key.count(".") > 1 else None
        if obj is None and building:
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
        close = difflib.get_close_matches(real_key, names, n=5, cutoff=0.5)
        if real_key != key:
            close += [n for n in difflib.get_close_matches(key, names, n=5, cutoff=0.5) if n not in close]
        lower = [n for n in names if n.lower() == real_key.lower() or n.lower().endswith("." + real_key.lower())]
        close = lower + [n for n in close if n not in lower]
        hint = f" Closest registered names: {', '.join(close[:5])}." if close else " No similar name is registered."
        where = f"'{scope}' scope" if scope else f"'{self.scope}' scope or its parents (mmengine)"
        return (
            f"{key!r} is not a registered {self.name}: not found in the {self.scope}::{self.name} registry "
            f"(searched the {where}).{hint} Run `rankssl list` to see every component; a component of another "
            f"OpenMMLab package needs its scope prefix (e.g. 'mmpretrain.ResNet')."
        )
