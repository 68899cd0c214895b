"""Register metrics and hooks (imported lazily through ``locations``)."""

from rankssl.mm.checkpoint_hook import AtomicCheckpointHook
from rankssl.mm.diagnostics import EffectiveRank, SpectrumHook
from rankssl.mm.hooks import CurvesHook, FlushDenormalHook
from rankssl.mm.metrics import KNNAccuracy, LinearProbeAccuracy
from rankssl.registry import HOOKS, METRICS
from rankssl.registry._catalog import register

register(METRICS, KNNAccuracy)
register(METRICS, LinearProbeAccuracy)
register(METRICS, EffectiveRank)  # collapse diagnostics for any algorithm
register(HOOKS, CurvesHook)
register(HOOKS, FlushDenormalHook)
register(HOOKS, SpectrumHook)
# Checkpoints written atomically, saved at validation and on SIGTERM/SIGINT, with RNG continuity.
register(HOOKS, AtomicCheckpointHook)
