"""Fused sorting-network kernels: one kernel per network pass for ``P @ v``, ``P^T @ v`` and GroCo.

:func:`rankssl.ops.soft_permutation_matmul` (GroCo's masses, and with ``transpose`` the
``sorting`` AP estimator's carried relevance) and GroCo's core call
:func:`permutation_matmul` and :func:`group_ordering_mass_loss` here first; each returns
``None`` when no fused kernel applies, and the caller then takes the pure-torch
reference path of :mod:`rankssl.ops.permutation_matmul`, which the tests hold equal to
both kernels.

Which kernels run is set by the environment variable ``RANKSSL_KERNELS`` (read at
every call):

* ``auto`` (default): the C++ kernels (``kernels.cpp``, OpenMP, built on first use by
  :mod:`.build`) for CPU tensors, the Triton kernels (:mod:`.triton_network`) for CUDA
  tensors, the torch path where neither applies (no compiler, no Triton, float64 on
  the GPU, a hand-made network);
* ``torch``: always the pure-torch path (``RANKSSL_DISABLE_FUSED=1`` is an alias);
* ``cpu``: the C++ kernels where the tensors are on the CPU, else the torch path;
* ``triton``: the Triton kernels, for CUDA tensors and, with ``TRITON_INTERPRET=1`` set
  before Triton is imported, for CPU tensors through Triton's interpreter: the code
  path a CUDA tensor takes, run on the CPU (this is how CI tests it). Where Triton
  cannot run, the torch path, with a warning.

Both kernels run all layers of a network for a block of rows in one pass and keep
nothing between forward and backward but the inputs; arithmetic is float32 for
float16, bfloat16 and float32 inputs (float64 too on the CPU). Each kernel is a
registered operator (``torch.ops.rankssl.permutation_matmul``,
``torch.ops.rankssl.permutation_matmul_backward``,
``torch.ops.rankssl.group_ordering_mass_loss``, see :mod:`.ops`), so ``torch.compile``
keeps it as one opaque node, ``torch.func.grad`` differentiates through it, and second
derivatives (``create_graph=True``) are computed exactly by recomputing the network
with autograd-recorded torch operations.

Example:
    >>> import os, torch
    >>> from rankssl.ops import soft_permutation_matmul
    >>> x, v = torch.randn(4, 6), torch.randn(6, 2)
    >>> os.environ["RANKSSL_KERNELS"] = "torch"
    >>> reference = soft_permutation_matmul(x, v)
    >>> os.environ["RANKSSL_KERNELS"] = "auto"
    >>> torch.allclose(soft_permutation_matmul(x, v), reference, atol=1e-5)
    True
"""

from __future__ import annotations

import os
import warnings
from typing import Dict, Optional, Sequence, Tuple, cast

import torch

from rankssl.ops.fused import build
from rankssl.ops.networks import ComparatorLayer, Network

__all__ = [
    "KERNEL_CHOICES",
    "available",
    "kernel_choice",
    "backend_for",
    "triton_available",
    "permutation_matmul",
    "group_ordering_mass_loss",
]

#: Values of ``RANKSSL_KERNELS``.
KERNEL_CHOICES = ("auto", "torch", "cpu", "triton")
#: Relaxation names as the kernels number them.
KINDS = {"logistic": 0, "logistic_phi": 1, "gaussian": 2, "reciprocal": 3, "cauchy": 4, "optimal": 5}
_FORWARD, _BACKWARD, _GROCO, _T_FORWARD, _T_BACKWARD = 0, 1, 2, 3, 4
_NATIVE = (torch.float32, torch.float64)
# Rows x comparators below which one thread is faster than waking a team (~0.5 ms of work).
_PARALLEL_WORK = 1 << 18
_SUPPORTED = _NATIVE + (torch.float16, torch.bfloat16)
_TRITON_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)

Tables = Tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
_TABLES: Dict[int, Tuple[Sequence[ComparatorLayer], Tables]] = {}
_triton_state: Dict[str, object] = {}


def kernel_choice() -> str:
    """The value of ``RANKSSL_KERNELS`` (``auto`` if unset; ``torch`` if
    ``RANKSSL_DISABLE_FUSED=1``); ``ValueError`` for anything else."""
    if build.disabled():
        return "torch"
    choice = os.environ.get("RANKSSL_KERNELS", "").strip().lower() or "auto"
    if choice not in KERNEL_CHOICES:
        raise ValueError(
            f"RANKSSL_KERNELS must be one of {', '.join(KERNEL_CHOICES)}, got {os.environ['RANKSSL_KERNELS']!r}."
        )
    return choice


def available() -> bool:
    """Whether the fused CPU kernels are enabled and built (builds them on first call)."""
    return kernel_choice() != "torch" and build.load() is not None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on")


def triton_available() -> bool:
    """Whether the Triton kernels can be imported (Triton installed); imports them."""
    if "module" not in _triton_state:
        try:
            from rankssl.ops.fused import triton_network
        except Exception as error:  # ImportError, or a Triton that fails to initialise
            _triton_state["module"], _triton_state["error"] = None, error
        else:
            _triton_state["module"] = triton_network
    return _triton_state["module"] is not None


def _warn_triton_unusable(reason: str) -> None:
    if not _triton_state.get("warned"):
        _triton_state["warned"] = True
        warnings.warn(
            f"RANKSSL_KERNELS=triton but {reason}; rankssl uses the pure-torch path.", RuntimeWarning, stacklevel=4
        )


def backend_for(device_type: str, dtype: torch.dtype) -> Optional[str]:
    """The kernels that run for tensors of this device type and dtype under the
    current ``RANKSSL_KERNELS``: ``"cpu"``, ``"triton"`` or ``None`` (the torch path)."""
    choice = kernel_choice()
    if choice == "torch":
        return None
    if choice in ("auto", "cpu") and device_type == "cpu":
        return "cpu" if dtype in _SUPPORTED and build.load() is not None else None
    if choice == "cpu":
        return None
    if choice == "auto" and device_type != "cuda":
        return None
    if dtype not in _TRITON_SUPPORTED:
        return None  # float64 and others: the torch path (float32 kernels only)
    if choice == "triton" and device_type == "cpu" and not _interpreting():
        _warn_triton_unusable("the tensors are on the CPU and TRITON_INTERPRET=1 is not set")
        return None
    if device_type not in ("cuda", "cpu"):
        return None
    if not triton_available():
        if choice == "triton":
            _warn_triton_unusable(f"Triton cannot be imported ({_triton_state.get('error')})")
        return None
    return "triton"


def _name(layers: Sequence[ComparatorLayer]) -> str:
    """The name of a network :func:`_backend` accepted (only a :class:`Network` has one)."""
    return cast(Network, layers).name


def _backend(x: torch.Tensor, network) -> Optional[str]:
    if getattr(network, "name", None) is None:
        return None  # a hand-made tuple of layers: only the torch path knows it
    if not torch.compiler.is_compiling() and torch._C._functorch.is_functorch_wrapped_tensor(x):
        return None  # torch.func transforms: the torch path records ops they can transform
    # Every network get_network builds writes a comparator's outputs to its input wires,
    # the form the Triton kernels take: no further check (which Dynamo would trace).
    return backend_for(x.device.type, x.dtype)


def _triton_network():
    triton_available()
    return _triton_state["module"]


# ---------------------------------------------------------------- C++ kernels (CPU)


def _tables(layers: Sequence[ComparatorLayer]) -> Tables:
    """The network as flat int32 comparator arrays (a, b, min wire, max wire), cached."""
    entry = _TABLES.get(id(layers))
    if entry is not None and entry[0] is layers:
        return entry[1]
    a, b, lo, hi, counts = [], [], [], [], [0]
    for layer in layers:
        k = layer.num_comparators
        inputs, outputs = layer.input_order.cpu(), layer.output_order.cpu()
        a.append(inputs[:k])
        b.append(inputs[k : 2 * k])
        lo.append(outputs[:k])
        hi.append(outputs[k : 2 * k])
        counts.append(counts[-1] + k)
    as_int = lambda parts: torch.cat(parts).to(torch.int32).contiguous()  # noqa: E731
    tables = (
        len(layers),
        counts[-1],
        torch.tensor(counts, dtype=torch.int32),
        as_int(a),
        as_int(b),
        as_int(lo),
        as_int(hi),
    )
    _TABLES[id(layers)] = (layers, tables)  # holding `layers` keeps its id unique
    return tables


def _pointer(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def _run(
    layers,
    distribution,
    steepness,
    art_lambda,
    mode,
    x,
    v=None,
    v_batched=False,
    m=1,
    grad_out=None,
    out=None,
    grad_x=None,
    grad_v=None,
    num_neg=0,
) -> None:
    library = build.load()
    assert library is not None, "the CPU kernels are only called after _backend found them loaded"
    num_layers, comparators, ptr, a, b, lo, hi = _tables(layers)
    function = library.rankssl_network_f64 if x.dtype == torch.float64 else library.rankssl_network_f32
    status = function(
        x.shape[-1],
        num_layers,
        comparators,
        ptr.data_ptr(),
        a.data_ptr(),
        b.data_ptr(),
        lo.data_ptr(),
        hi.data_ptr(),
        KINDS[distribution],
        float(steepness),
        float(art_lambda),
        mode,
        torch.get_num_threads() if x.shape[0] * comparators >= _PARALLEL_WORK else 1,
        x.data_ptr(),
        _pointer(v),
        int(v_batched),
        m,
        x.shape[0],
        _pointer(grad_out),
        _pointer(out),
        _pointer(grad_x),
        _pointer(grad_v),
        num_neg,
    )
    if status != 0:
        raise RuntimeError(f"fused sorting-network kernel failed with status {status}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in _NATIVE else torch.float32


def _rows_and_vectors(x: torch.Tensor, v: torch.Tensor, dtype: torch.dtype):
    n = x.shape[-1]
    rows = x.reshape(-1, n).to(dtype).contiguous()
    if v.dim() > 2:
        vectors = v.expand(*x.shape[:-1], n, v.shape[-1]).reshape(-1, n, v.shape[-1])
    else:
        vectors = v
    return rows, vectors.to(dtype).contiguous()


def cpu_permutation_matmul(x, v, layers, distribution, steepness, art_lambda, transpose=False) -> torch.Tensor:
    """``P(x) @ v`` (``P(x)^T @ v`` with ``transpose``), (..., n, m), with the C++ kernels (CPU tensors)."""
    dtype = _compute_dtype(x.dtype)
    n, m = x.shape[-1], v.shape[-1]
    rows, vectors = _rows_and_vectors(x, v, dtype)
    out = torch.empty(rows.shape[0], n, m, dtype=dtype)
    if rows.shape[0] and m:
        mode = _T_FORWARD if transpose else _FORWARD
        _run(layers, distribution, steepness, art_lambda, mode, rows, vectors, v.dim() > 2, m, out=out)
    return out.view(*x.shape[:-1], n, m).to(x.dtype)


def cpu_permutation_matmul_backward(
    grad_output, x, v, layers, distribution, steepness, art_lambda, need_v, transpose=False
):
    """``(grad_x, grad_v or None)`` of ``P(x) @ v`` (``P(x)^T @ v``) with the C++ kernels."""
    dtype = _compute_dtype(x.dtype)
    n, m = x.shape[-1], v.shape[-1]
    rows, vectors = _rows_and_vectors(x, v, dtype)
    grad_out = grad_output.reshape(-1, n, m).to(dtype).contiguous()
    grad_x = torch.zeros_like(rows)
    grad_v_rows = torch.zeros(rows.shape[0], n, m, dtype=dtype) if need_v else None
    if rows.shape[0] and m:
        _run(
            layers,
            distribution,
            steepness,
            art_lambda,
            _T_BACKWARD if transpose else _BACKWARD,
            rows,
            vectors,
            v.dim() > 2,
            m,
            grad_out=grad_out,
            grad_x=grad_x,
            grad_v=grad_v_rows,
        )
    return grad_x.view(x.shape).to(x.dtype), _sum_grad_v(grad_v_rows, x, v)


def _sum_grad_v(grad_v_rows, x, v):
    if grad_v_rows is None:
        return None
    n, m = x.shape[-1], v.shape[-1]
    if v.dim() == 2:
        return grad_v_rows.reshape(-1, n, m).sum(0).to(v.dtype)
    return grad_v_rows.view(*x.shape[:-1], n, m).to(v.dtype)


def cpu_group_ordering(scores, num_neg, layers, distribution, steepness, art_lambda):
    """GroCo's ``(loss (A,), grad (A, n))`` with the C++ kernels."""
    dtype = _compute_dtype(scores.dtype)
    rows = scores.to(dtype).contiguous()
    loss = torch.empty(rows.shape[0], dtype=dtype)
    grad = torch.empty_like(rows)
    if rows.shape[0]:
        _run(layers, distribution, steepness, art_lambda, _GROCO, rows, out=loss, grad_x=grad, num_neg=num_neg)
    return loss.to(scores.dtype), grad.to(scores.dtype)


# ---------------------------------------------------------------- Triton kernels


def triton_permutation_matmul(x, v, layers, distribution, steepness, art_lambda, transpose=False) -> torch.Tensor:
    """``P(x) @ v`` (``P(x)^T @ v`` with ``transpose``), (..., n, m), with the Triton kernels."""
    n, m = x.shape[-1], v.shape[-1]
    rows, vectors = x.reshape(-1, n).contiguous(), _batched_vectors(x, v)
    out = _triton_network().permutation_matmul(rows, vectors, layers, distribution, steepness, art_lambda, transpose)
    return out.view(*x.shape[:-1], n, m)


def _batched_vectors(x, v):
    if v.dim() == 2:
        return v.contiguous()
    n, m = x.shape[-1], v.shape[-1]
    return v.expand(*x.shape[:-1], n, m).reshape(-1, n, m).contiguous()


def triton_permutation_matmul_backward(
    grad_output, x, v, layers, distribution, steepness, art_lambda, need_v, transpose=False
):
    """``(grad_x, grad_v or None)`` of ``P(x) @ v`` (``P(x)^T @ v``) with the Triton kernels."""
    n, m = x.shape[-1], v.shape[-1]
    rows, vectors = x.reshape(-1, n).contiguous(), _batched_vectors(x, v)
    grad_out = grad_output.reshape(-1, n, m).contiguous()
    grad_x, grad_v_rows = _triton_network().permutation_matmul_backward(
        grad_out, rows, vectors, layers, distribution, steepness, art_lambda, transpose
    )
    return grad_x.view(x.shape), _sum_grad_v(grad_v_rows if need_v else None, x, v)


def triton_group_ordering(scores, num_neg, layers, distribution, steepness, art_lambda):
    """GroCo's ``(loss (A,), grad (A, n))`` with the Triton kernels."""
    return _triton_network().group_ordering_mass_loss(
        scores.contiguous(), num_neg, layers, distribution, steepness, art_lambda
    )


# ---------------------------------------------------------------- entry points


def permutation_matmul(
    x: torch.Tensor,
    v: torch.Tensor,
    layers: Sequence[ComparatorLayer],
    distribution: str,
    steepness: float,
    art_lambda: float,
    transpose: bool = False,
) -> Optional[torch.Tensor]:
    """``P(x) @ v`` (``P(x)^T @ v`` with ``transpose``) through the fused kernels, or
    ``None`` if none applies.

    Arguments as :func:`rankssl.ops.permutation_matmul.permutation_matmul` (validated);
    ``layers`` as returned by :func:`rankssl.ops.get_network` (it carries the network's
    name). ``v`` is cast to ``x``'s dtype first.
    """
    backend = _backend(x, layers)
    if backend is None or (backend == "cpu" and v.device.type != "cpu"):
        return None
    if v.dtype != x.dtype:
        v = v.to(x.dtype)
    return ops.permutation_matmul(
        x, v, _name(layers), distribution, float(steepness), float(art_lambda), backend, bool(transpose)
    )


def group_ordering_mass_loss(
    scores: torch.Tensor,
    num_neg: int,
    layers: Sequence[ComparatorLayer],
    distribution: str,
    steepness: float,
    art_lambda: float,
) -> Optional[torch.Tensor]:
    """GroCo's per-anchor loss from pre-ordered scores in one fused pass, or ``None``.

    Args:
        scores: (A, n) float32/float64 (float16/bfloat16 are computed in float32),
            ``[negatives ascending, positives ascending]``.
        num_neg: K, the first K inputs are negatives.
        layers: the network, as returned by :func:`rankssl.ops.get_network`.

    Returns:
        (A,) the mean over the n inputs of ``BCE(clamp(q, 0, 1), target)``, ``q`` the
        mass each input puts on the top ``n - K`` ranks. This equals the average of the
        positive-block and negative-block terms of the authors' loss, since ``P`` is
        doubly stochastic (the negative-block mass is ``1 - q``). The gradient is computed
        in the same pass and saved; the backward only scales it.
    """
    backend = _backend(scores, layers)
    if backend is None:
        return None
    loss, _ = ops.group_ordering_mass_loss(
        scores, int(num_neg), _name(layers), distribution, float(steepness), float(art_lambda), backend
    )
    return loss


from rankssl.ops.fused import ops  # noqa: E402  (registers the operators; needs the functions above)
