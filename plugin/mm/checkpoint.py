"""Make mmengine checkpoints loadable under torch's ``weights_only=True`` default.

Since torch 2.6 ``torch.load`` refuses any class it does not know, and mmengine's
checkpoints hold a message hub with ``HistoryBuffer`` objects and NumPy scalars, so a
plain ``Runner(..., resume=True)`` stops with ``UnpicklingError``. Instead of turning
``weights_only`` off (which would let a checkpoint run code), we allow-list exactly the
plain-data types those checkpoints contain. Loading stays safe: these classes are
rebuilt from their state, no arbitrary callable is ever invoked.
"""

from __future__ import annotations

from typing import List

import pickle

import numpy as np
import torch

_DONE = False


def mmengine_checkpoint_types() -> List[object]:
    """The non-tensor types found in mmengine 0.10 checkpoints (message hub, meta)."""
    from mmengine.logging.history_buffer import HistoryBuffer

    types: List[object] = [HistoryBuffer, np.ndarray, np.dtype]
    core = getattr(np, "_core", None) or np.core
    types.append(core.multiarray.scalar)
    types.append(core.multiarray._reconstruct)
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType", "UInt8DType"):
        dtype_cls = getattr(getattr(np, "dtypes", None), name, None)
        if dtype_cls is not None:
            types.append(dtype_cls)
    return types


def _history_buffer_attribute(obj: object, name: str) -> object:
    """Stands in for ``getattr`` while unpickling: only a ``HistoryBuffer``'s statistics methods.

    mmengine pickles each ``HistoryBuffer`` with its statistics functions, which pickle
    writes as ``getattr(HistoryBuffer, 'mean')``. Allow-listing the real ``getattr``
    would let a checkpoint reach any attribute of any allowed object; this stand-in
    answers only that call.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed = {"min", "max", "current", "mean"} | set(HistoryBuffer._statistics_methods)
    if isinstance(obj, type) and issubclass(obj, HistoryBuffer) and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f"Checkpoint asks for attribute {name!r} of {obj!r}; refused.")


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint types for ``torch.load(weights_only=True)``; idempotent."""
    global _DONE
    if _DONE or not hasattr(torch.serialization, "add_safe_globals"):
        return
    torch.serialization.add_safe_globals(
        mmengine_checkpoint_types() + [(_history_buffer_attribute, "builtins.getattr")]
    )
    _DONE = True
