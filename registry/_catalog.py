"""What each registered component is for: kind, hosts it serves, where it comes from (for `rankssl list`)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from mmengine.registry import Registry

__all__ = ["register", "CATALOG"]

# (registry name, component name) -> hosts it serves / its origin
CATALOG: Dict[Tuple[str, str], str] = {}


def register(
    registry: Registry, obj: Callable[..., Any], name: Optional[str] = None, hosts: Sequence[str] = ("mmengine",)
) -> None:
    """Register ``obj`` (a class, or a function that builds one) in ``registry`` under ``name``
    (default: its ``__name__``) and note its hosts.

    Args:
        hosts: the frameworks this component serves, e.g. ``('lightly', 'pml', 'mmengine')``
            for a loss that exists as a lightly-style module, a pytorch-metric-learning
            loss and an mmengine component.
    """
    name = name or obj.__name__
    registry.register_module(name=name, module=obj, force=True)
    CATALOG[(registry.name, name)] = ", ".join(hosts)
