"""Layer 4: pytorch-metric-learning losses and wrappers built on the same cores."""

from rankssl.pml.groco import GroCoLoss
from rankssl.pml.wrappers import CrossBatchMemory, SelfSupervisedLoss

__all__ = ["CrossBatchMemory", "GroCoLoss", "SelfSupervisedLoss"]
