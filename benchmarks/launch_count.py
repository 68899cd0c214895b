"""Count the kernel launches and host syncs a function issues, below autograd.

A :class:`LaunchCounter` is a ``TorchDispatchMode``: it sees every aten operator that
runs inside it, the backward pass's too, after autograd has decomposed the call. On a
CUDA tensor almost every such operator is one kernel launch; operators that only
rewrite a tensor's metadata (views, ``detach``, ``expand``) launch nothing and are not
counted. A custom operator (``torch.library``; rankssl's fused kernels) counts as one
launch whatever it runs inside.

Host syncs are the operators that make the host wait for the device: reading a value
(``.item()``, ``bool(t)``, ``int(t)``: ``aten._local_scalar_dense``), and operators
whose output size depends on the values (``nonzero``, ``unique``, ``masked_select``,
boolean-mask indexing, ``repeat_interleave`` without ``output_size``).

The counts are taken on the CPU, on the code path a CUDA tensor takes where the caller
arranges it (``RANKSSL_KERNELS=triton`` with ``TRITON_INTERPRET=1``); they are a count
of operators, not a timing.

Example:
    >>> import torch
    >>> x = torch.randn(8, 4, requires_grad=True)
    >>> with LaunchCounter() as counter:
    ...     (x.exp().sum() * 2).backward()
    >>> counter.syncs
    0
    >>> counter.launches > 0
    True
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Dict, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["LaunchCounter", "count"]

aten = torch.ops.aten

# Operators that only produce a new view or alias of their input's storage.
_METADATA_ONLY = {
    "view", "_unsafe_view", "reshape", "alias", "detach", "t", "transpose", "permute", "expand",
    "as_strided", "unsqueeze", "squeeze", "slice", "select", "split", "split_with_sizes", "unbind",
    "narrow", "diagonal", "view_as", "expand_as", "unfold", "lift_fresh", "_reshape_alias",
    "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "is_same_size", "dim", "size",
    "stride", "numel", "_to_copy_noop", "empty_like_noop",
}
# Operators whose result the host must wait for.
_SYNCING = {"_local_scalar_dense", "nonzero", "unique", "_unique", "_unique2", "unique_dim",
            "unique_consecutive", "masked_select", "is_nonzero", "equal", "allclose", "item"}


def _base_name(func: Any) -> Tuple[str, str]:
    """(namespace, operator name without overload) of an OpOverload."""
    namespace = getattr(func, "namespace", "aten")
    name = func.__name__.split(".")[0]
    return namespace, name


def _is_sync(name: str, args: tuple, kwargs: dict) -> bool:
    if name in _SYNCING:
        return True
    if name == "index" and len(args) > 1:
        # x[mask] with a boolean mask needs the mask's count on the host.
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
    if name == "repeat_interleave":
        return "output_size" not in kwargs and not (len(args) > 3 and args[3] is not None)
    return False


class LaunchCounter(TorchDispatchMode):
    """Count launches and host syncs of everything run inside ``with LaunchCounter() as c:``.

    Attributes:
        launches: operators that launch work on the device (metadata-only ops excluded).
        syncs: operators that wait for the device.
        by_name: launches and syncs per operator name, to see what a count is made of.
    """

    def __init__(self) -> None:
        super().__init__()
        self.launches = 0
        self.syncs = 0
        self.by_name: Counter = Counter()
        self.syncs_by_name: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        namespace, name = _base_name(func)
        if namespace != "aten" or name not in _METADATA_ONLY:
            self.launches += 1
            self.by_name[f"{namespace}::{name}"] += 1
        if namespace == "aten" and _is_sync(name, args, kwargs):
            self.syncs += 1
            self.syncs_by_name[name] += 1
        return func(*args, **kwargs)


def count(step: Callable[[], Any], warmup: int = 1) -> Dict[str, int]:
    """Launches and syncs of one call of ``step`` (after ``warmup`` uncounted calls).

    ``step`` runs the forward and backward pass; the warm-up lets lazily built state
    (sorting-network tables, compiled kernels) exist before counting.
    """
    for _ in range(warmup):
        step()
    with LaunchCounter() as counter:
        step()
    return {"launches": counter.launches, "syncs": counter.syncs}
