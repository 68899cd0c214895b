"""Model wrapper for distributed training on CPUs (gloo)."""

from __future__ import annotations

from mmengine.model import MMDistributedDataParallel

__all__ = ["CPUDistributedDataParallel"]


class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper that also works for a model on the CPU.

    mmengine's Runner passes ``device_ids=[LOCAL_RANK]``, which torch's DDP rejects
    for a CPU module; this wrapper drops ``device_ids`` when the module has no CUDA
    parameters. ``rankssl train --launcher pytorch`` selects it on machines without GPU.
    """

    def __init__(self, module, **kwargs) -> None:
        on_cuda = any(p.is_cuda for p in module.parameters())
        if not on_cuda:
            kwargs.pop("device_ids", None)
            kwargs.pop("output_device", None)
        super().__init__(module=module, **kwargs)
