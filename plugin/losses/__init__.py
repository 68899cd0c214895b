"""Layer 2: the objectives as lightly-style ``nn.Module`` losses (pure torch)."""

from rankssl.losses.groco import GroCoLoss, group_ordering_loss

__all__ = ["GroCoLoss", "group_ordering_loss"]
