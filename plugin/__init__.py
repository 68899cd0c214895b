"""rankssl: ranking- and sorting-based self-supervised objectives.

GroCo (Shvetsova et al., ICCV 2023), S2R2 (Varamesh et al., 2020) and Hydra (Wu et al.,
2024) as lightly-style losses (``rankssl.losses``), pytorch-metric-learning losses
(``rankssl.pml``) and mmengine components (``rankssl.mm``, ``rankssl.registry``).

``import rankssl`` is cheap (torch loads with the losses); host frameworks load with their own
subpackage.
"""

__version__ = "0.1.0"

__all__ = ["GroCoLoss", "HydraLoss", "S2R2Loss", "__version__"]

_LOSSES = {"GroCoLoss", "HydraLoss", "S2R2Loss"}
_SUBPACKAGES = {"ops", "losses", "models", "pml", "mm", "cli", "registry", "recipes"}


def __getattr__(name: str):
    # Lazy: `rankssl --help` and `rankssl recipes` answer without importing torch.
    import importlib

    if name in _LOSSES:
        return getattr(importlib.import_module("rankssl.losses"), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"rankssl.{name}")
    raise AttributeError(f"module 'rankssl' has no attribute {name!r}")
