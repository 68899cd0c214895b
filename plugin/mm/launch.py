"""Open the process group of a CPU (gloo) run with the recipe's timeout.

mmengine's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and fails without a
GPU, so ``rankssl train --launcher pytorch`` opens the gloo group itself. It honours
``env_cfg.dist_cfg.timeout`` (seconds, as in mmengine) and otherwise waits
:data:`DEFAULT_CPU_TIMEOUT_S` for a peer, not torch's 30 minutes: a frozen or dead
process then ends the others with a timeout error instead of blocking them for half
an hour.
"""

from __future__ import annotations

import datetime
from typing import Optional

__all__ = ["DEFAULT_CPU_TIMEOUT_S", "dist_timeout", "init_cpu_process_group"]

DEFAULT_CPU_TIMEOUT_S = 300


def dist_timeout(cfg) -> float:
    """Seconds from ``cfg.env_cfg.dist_cfg.timeout``, else :data:`DEFAULT_CPU_TIMEOUT_S`."""
    dist_cfg = (cfg.get("env_cfg") or {}).get("dist_cfg") or {}
    timeout = dist_cfg.get("timeout", None)
    if timeout is None:
        return float(DEFAULT_CPU_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"env_cfg.dist_cfg.timeout must be a positive number of seconds, got {timeout!r}.")
    return float(timeout)


def init_cpu_process_group(cfg, timeout_s: Optional[float] = None) -> float:
    """Open the gloo group from torchrun's environment (if not open yet); return the timeout used.

    Example (under ``torchrun``)::

        init_cpu_process_group(Config(dict(env_cfg=dict(dist_cfg=dict(timeout=60)))))
    """
    import torch.distributed as dist

    seconds = dist_timeout(cfg) if timeout_s is None else float(timeout_s)
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=seconds))
    cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
    return seconds
