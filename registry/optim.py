"""Register optimizers (imported lazily through ``locations``)."""

from rankssl.mm.optimizers import LARS
from rankssl.registry import OPTIMIZERS
from rankssl.registry._catalog import register

register(OPTIMIZERS, LARS, hosts=("torch", "mmengine"))
