"""Hydra's class-pair sampling (implementation in :mod:`rankssl.losses.pair_sampling`)."""

from rankssl.losses.pair_sampling import PAIRINGS, sample_pair_labels

__all__ = ["PAIRINGS", "sample_pair_labels"]
