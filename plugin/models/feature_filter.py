"""Hydra's class-pair feature filter as a model component.

The implementation lives in :mod:`rankssl.losses.feature_filter` because
:class:`rankssl.losses.HydraLoss` owns one and layer 2 may not import layer 3; this
module gives it its place among the models (``rankssl.models.FeatureFilter``).
"""

from rankssl.losses.feature_filter import GATE_MODES, FeatureFilter, check_class_labels

__all__ = ["GATE_MODES", "FeatureFilter", "check_class_labels"]
