"""Layer 2: the objectives as lightly-style ``nn.Module`` losses (pure torch)."""

from rankssl.losses.groco import GroCoLoss, group_ordering_loss
from rankssl.losses.hydra import HydraLoss, hydra_pair_loss
from rankssl.losses.s2r2 import S2R2Loss, ranking_ap_loss

__all__ = ["GroCoLoss", "HydraLoss", "S2R2Loss", "group_ordering_loss", "hydra_pair_loss", "ranking_ap_loss"]
