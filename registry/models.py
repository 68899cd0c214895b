"""Register models: losses, backbones, heads, algorithms, data preprocessors, model wrappers.

Imported lazily by mmengine (``locations``) the first time the models registry is used.
A new method adds its lines here (see the README section on mmengine).
"""

from lightly.loss import NTXentLoss

from rankssl.losses import GroCoLoss
from rankssl.mm.algorithms import GroCo, SelfSupervisedAlgorithm, SimCLR
from rankssl.mm.data_preprocessor import MultiViewDataPreprocessor
from rankssl.mm.wrappers import CPUDistributedDataParallel
from rankssl.models.backbones import SmallCNN, TorchvisionResNet
from rankssl.models.heads import GroCoProjectionHead, MLPHead
from rankssl.registry import MODEL_WRAPPERS, MODELS
from rankssl.registry._catalog import register

# Losses: the same objective serves lightly-style code, pytorch-metric-learning and mmengine.
register(MODELS, GroCoLoss, hosts=("lightly", "pml", "mmengine"))
register(MODELS, NTXentLoss, hosts=("mmengine", "from lightly"))
# Plain torch modules (rankssl.models).
for _cls in (SmallCNN, TorchvisionResNet, MLPHead, GroCoProjectionHead):
    register(MODELS, _cls, hosts=("torch", "mmengine"))
# mmengine algorithms and their data preprocessor.
for _cls in (SelfSupervisedAlgorithm, GroCo, SimCLR, MultiViewDataPreprocessor):
    register(MODELS, _cls)
register(MODEL_WRAPPERS, CPUDistributedDataParallel)

# Hydra (issue 5): loss with its feature filter, the LayerNorm head and the algorithm.
from rankssl.losses import HydraLoss  # noqa: E402
from rankssl.mm.hydra import Hydra  # noqa: E402
from rankssl.models import FeatureFilter, HydraProjectionHead  # noqa: E402

register(MODELS, HydraLoss, hosts=("lightly", "pml", "mmengine"))
register(MODELS, FeatureFilter, hosts=("torch", "mmengine"))
register(MODELS, HydraProjectionHead, hosts=("torch", "mmengine"))
register(MODELS, Hydra)

# S2R2 (issue 4): the AP loss and the many-view algorithm.
from rankssl.losses import S2R2Loss  # noqa: E402
from rankssl.mm.s2r2 import S2R2  # noqa: E402

register(MODELS, S2R2Loss, hosts=("lightly", "pml", "mmengine"))
register(MODELS, S2R2)

# A pml loss with labels over all views (issue 9): the label-based reference (pml's SupConLoss).
from rankssl.mm.labelled import LabelledViews  # noqa: E402

register(MODELS, LabelledViews)

# mmpretrain: a head handing embeddings to a rankssl loss inside mmpretrain's self-supervisors, and a
# many-view self-supervisor (a builder function: mmpretrain is imported only when a config uses it).
from rankssl.mm.mmpretrain_head import MultiViewSelfSupervisor, RankSSLHead  # noqa: E402

register(MODELS, RankSSLHead, hosts=("mmengine", "mmpretrain"))
register(MODELS, MultiViewSelfSupervisor, hosts=("mmpretrain",))
