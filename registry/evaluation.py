"""Register metrics and hooks (imported lazily through ``locations``)."""

from rankssl.mm.hooks import CurvesHook, FlushDenormalHook
from rankssl.mm.metrics import KNNAccuracy, LinearProbeAccuracy
from rankssl.registry import HOOKS, METRICS
from rankssl.registry._catalog import register

register(METRICS, KNNAccuracy)
register(METRICS, LinearProbeAccuracy)
register(HOOKS, CurvesHook)
register(HOOKS, FlushDenormalHook)

# Checkpoints written atomically, saved at validation and on SIGTERM/SIGINT, RNG continuity (issue 10).
from rankssl.mm.checkpoint_hook import AtomicCheckpointHook  # noqa: E402

register(HOOKS, AtomicCheckpointHook)

# Collapse diagnostics for any algorithm (issue 5).
from rankssl.mm.diagnostics import EffectiveRank, SpectrumHook  # noqa: E402

register(METRICS, EffectiveRank)
register(HOOKS, SpectrumHook)
