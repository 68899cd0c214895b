"""Register metrics and hooks (imported lazily through ``locations``)."""

from rankssl.mm.hooks import CurvesHook
from rankssl.mm.metrics import KNNAccuracy, LinearProbeAccuracy
from rankssl.registry import HOOKS, METRICS
from rankssl.registry._catalog import register

register(METRICS, KNNAccuracy)
register(METRICS, LinearProbeAccuracy)
register(HOOKS, CurvesHook)
