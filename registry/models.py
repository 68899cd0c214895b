"""Register models: losses, backbones, heads, algorithms, data preprocessors, model wrappers.

Imported lazily by mmengine (``locations``) the first time the models registry is used.
A new method adds its lines here (docs/mmengine.md, "Writing a recipe or a new method").
"""

from lightly.loss import NTXentLoss

from rankssl.losses import GroCoLoss, HydraLoss, S2R2Loss
from rankssl.mm.algorithms import GroCo, SelfSupervisedAlgorithm, SimCLR
from rankssl.mm.data_preprocessor import MultiViewDataPreprocessor
from rankssl.mm.hydra import Hydra
from rankssl.mm.labelled import LabelledViews
from rankssl.mm.mmpretrain_head import MultiViewSelfSupervisor, RankSSLHead
from rankssl.mm.s2r2 import S2R2
from rankssl.mm.wrappers import CPUDistributedDataParallel
from rankssl.models import FeatureFilter, HydraProjectionHead
from rankssl.models.backbones import SmallCNN, TorchvisionResNet
from rankssl.models.heads import GroCoProjectionHead, MLPHead
from rankssl.registry import MODEL_WRAPPERS, MODELS
from rankssl.registry._catalog import register

# Losses: the same objective serves lightly-style code, pytorch-metric-learning and mmengine.
for _loss in (GroCoLoss, HydraLoss, S2R2Loss):
    register(MODELS, _loss, hosts=("lightly", "pml", "mmengine"))
register(MODELS, NTXentLoss, hosts=("mmengine", "from lightly"))
# Plain torch modules (rankssl.models): backbones, projection heads, Hydra's feature filter.
for _module in (SmallCNN, TorchvisionResNet, MLPHead, GroCoProjectionHead, FeatureFilter, HydraProjectionHead):
    register(MODELS, _module, hosts=("torch", "mmengine"))
# mmengine algorithms and their data preprocessor; LabelledViews runs a pml loss with labels over all views
# (the label-based reference, pml's SupConLoss).
for _algorithm in (SelfSupervisedAlgorithm, GroCo, SimCLR, Hydra, S2R2, LabelledViews, MultiViewDataPreprocessor):
    register(MODELS, _algorithm)
register(MODEL_WRAPPERS, CPUDistributedDataParallel)

# mmpretrain: a head handing embeddings to a rankssl loss inside mmpretrain's self-supervisors, and a
# many-view self-supervisor (a builder function: mmpretrain is imported only when a config uses it).
register(MODELS, RankSSLHead, hosts=("mmengine", "mmpretrain"))
register(MODELS, MultiViewSelfSupervisor, hosts=("mmpretrain",))
