from rankssl.models.backbones import SmallCNN, TorchvisionResNet  # noqa: E402
from rankssl.models.heads import GroCoProjectionHead, MLPHead  # noqa: E402
from rankssl.models.feature_filter import FeatureFilter, active_dimension_overlap, class_pair_gates  # noqa: E402
from rankssl.models.hydra_head import HydraProjectionHead  # noqa: E402
from rankssl.models.pair_sampling import sample_pair_labels  # noqa: E402
