"""rankssl: ranking- and sorting-based self-supervised objectives.

GroCo (Shvetsova et al., ICCV 2023), S2R2 (Varamesh et al., 2020) and Hydra (Wu et al.,
2024) as lightly-style losses (``rankssl.losses``), pytorch-metric-learning losses
(``rankssl.pml``) and mmengine components (``rankssl.mm``, ``rankssl.registry``).

``import rankssl`` loads torch only; host frameworks load with their own subpackage.
"""

__version__ = "0.1.0"

from rankssl.losses import GroCoLoss  # noqa: E402
from rankssl.losses import HydraLoss  # noqa: E402
from rankssl.losses import S2R2Loss  # noqa: E402

__all__ = ["GroCoLoss", "__version__"]
__all__ += ["HydraLoss"]
__all__ += ["S2R2Loss"]
