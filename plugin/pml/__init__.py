"""Layer 4: pytorch-metric-learning losses and wrappers built on the same cores."""

from rankssl.pml.groco import GroCoLoss
from rankssl.pml.wrappers import CrossBatchMemory, SelfSupervisedLoss
from rankssl.pml.hydra import HydraLoss

__all__ = ["CrossBatchMemory", "GroCoLoss", "SelfSupervisedLoss"]
__all__ += ["HydraLoss"]
