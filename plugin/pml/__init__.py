"""Layer 4: pytorch-metric-learning losses and wrappers built on the same cores."""

from rankssl.pml.groco import GroCoLoss
from rankssl.pml.hydra import HydraLoss
from rankssl.pml.s2r2 import S2R2Loss
from rankssl.pml.wrappers import CrossBatchMemory, SelfSupervisedLoss

__all__ = ["CrossBatchMemory", "GroCoLoss", "HydraLoss", "S2R2Loss", "SelfSupervisedLoss"]
