"""Layer 2: the objectives as lightly-style ``nn.Module`` losses (pure torch)."""

from rankssl.losses.groco import GroCoLoss, group_ordering_loss
from rankssl.losses.hydra import HydraLoss, hydra_pair_loss

__all__ = ["GroCoLoss", "group_ordering_loss"]
__all__ += ["HydraLoss", "hydra_pair_loss"]
