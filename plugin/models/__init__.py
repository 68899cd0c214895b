"""Layer 3: plain torch model components (backbones, projection heads, Hydra's feature filter).

No host framework is imported here; ``rankssl.mm`` registers these modules for mmengine.
"""

from rankssl.models.backbones import SmallCNN, TorchvisionResNet
from rankssl.models.feature_filter import FeatureFilter, active_dimension_overlap, class_pair_gates
from rankssl.models.heads import GroCoProjectionHead, MLPHead
from rankssl.models.hydra_head import HydraProjectionHead
from rankssl.models.pair_sampling import sample_pair_labels

__all__ = [
    "FeatureFilter",
    "GroCoProjectionHead",
    "HydraProjectionHead",
    "MLPHead",
    "SmallCNN",
    "TorchvisionResNet",
    "active_dimension_overlap",
    "class_pair_gates",
    "sample_pair_labels",
]
