"""Build nested components (backbones, necks, losses, datasets) from config dicts.

Algorithms and dataset wrappers of this layer receive their parts as config dicts.
They are built through mmengine's root registries inside the ``rankssl`` default
scope, so an unprefixed ``type`` resolves among rankssl's components first and then
mmengine's own, and a prefixed one (``'mmpretrain.ResNet'``) in that package's scope.
mmengine imports ``rankssl.registry`` on its own when it meets the scope, so this
layer never imports the registry (layer 6) itself.
"""

from __future__ import annotations

from typing import Any, Optional, Union, overload

from torch import nn

SCOPE = "rankssl"


def build_from_config(cfg: Union[dict, Any], kind: str = "MODELS", default_args: Optional[dict] = None) -> Any:
    """Build ``cfg`` (a dict with ``type``) from mmengine's ``kind`` registry in the rankssl scope.

    Objects that are already built (anything but a dict) are returned unchanged.
    """
    if not isinstance(cfg, dict):
        return cfg
    if "type" not in cfg:
        raise ValueError(f"A component config needs a 'type' key, got {dict(cfg)!r}.")
    import mmengine.registry as mm_registry
    from mmengine.registry import DefaultScope

    registry = getattr(mm_registry, kind)
    with DefaultScope.overwrite_default_scope(SCOPE):
        try:
            return registry.build(cfg, default_args=default_args)
        except (TypeError, ValueError) as exc:
            # Name the component, so that a wrong parameter deep in a recipe is easy to find.
            if f"{cfg['type']}" in str(exc) or str(exc).startswith("Building "):
                raise
            raise type(exc)(f"Building {cfg['type']!r} ({SCOPE} scope, {registry.name} registry): {exc}") from exc


@overload
def build_module(cfg: Union[dict, nn.Module]) -> nn.Module: ...
@overload
def build_module(cfg: None) -> None: ...
@overload
def build_module(cfg: Union[dict, nn.Module, None]) -> Optional[nn.Module]: ...


def build_module(cfg: Union[dict, nn.Module, None]) -> Optional[nn.Module]:
    """Build an ``nn.Module`` from the models registry; ``None`` stays ``None``."""
    if cfg is None:
        return None
    module = build_from_config(cfg, "MODELS")
    if not isinstance(module, nn.Module):
        raise TypeError(f"Config {cfg!r} built a {type(module).__name__}, expected a torch nn.Module.")
    return module
