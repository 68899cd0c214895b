"""Fused sorting-network kernels: the default path for ``P @ v`` and GroCo on the CPU.

:func:`rankssl.ops.soft_permutation_matmul` and GroCo's core call
:func:`permutation_matmul` and :func:`group_ordering_mass_loss` here first; each returns
``None`` when the fused path does not apply (a non-CPU tensor, kernels disabled with
``RANKSSL_DISABLE_FUSED=1`` or unavailable without a compiler), and the caller then takes
the pure-torch reference path of :mod:`rankssl.ops.permutation_matmul`, which the tests
hold equal to this one.

The CPU kernels (``kernels.cpp``, built on first use by :mod:`.build`) run all layers of
a network for a block of rows in one pass and keep nothing between forward and backward
but the inputs: the backward recomputes the sweeps in cache, which is cheaper than
storing them. float32 and float64 run natively; float16 and bfloat16 inputs are
computed in float32 and cast back.
"""

from __future__ import annotations

import ctypes
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch.autograd.function import once_differentiable

from rankssl.ops.fused import build
from rankssl.ops.networks import ComparatorLayer

__all__ = ["available", "permutation_matmul", "group_ordering_mass_loss"]

#: Relaxation names as the kernels number them.
KINDS = {"logistic": 0, "logistic_phi": 1, "gaussian": 2, "reciprocal": 3, "cauchy": 4, "optimal": 5}
_FORWARD, _BACKWARD, _GROCO = 0, 1, 2
_NATIVE = (torch.float32, torch.float64)
# Rows x comparators below which one thread is faster than waking a team (~0.5 ms of work).
_PARALLEL_WORK = 1 << 18
_SUPPORTED = _NATIVE + (torch.float16, torch.bfloat16)

Tables = Tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
_TABLES: Dict[int, Tuple[Sequence[ComparatorLayer], Tables]] = {}


def available() -> bool:
    """Whether the fused CPU kernels are enabled and built (builds them on first call)."""
    return build.load() is not None


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
    layers, distribution, steepness, art_lambda, mode, x, v=None, v_batched=False, m=1,
    grad_out=None, out=None, grad_x=None, grad_v=None, num_neg=0,
) -> None:
    library = build.load()
    num_layers, comparators, ptr, a, b, lo, hi = _tables(layers)
    function = library.rankssl_network_f64 if x.dtype == torch.float64 else library.rankssl_network_f32
    status = function(
        x.shape[-1], num_layers, comparators, ptr.data_ptr(), a.data_ptr(), b.data_ptr(), lo.data_ptr(),
        hi.data_ptr(), KINDS[distribution], float(steepness), float(art_lambda), mode,
        torch.get_num_threads() if x.shape[0] * comparators >= _PARALLEL_WORK else 1,
        x.data_ptr(), _pointer(v), int(v_batched), m, x.shape[0],
        _pointer(grad_out), _pointer(out), _pointer(grad_x), _pointer(grad_v), num_neg,
    )
    if status != 0:
        raise RuntimeError(f"fused sorting-network kernel failed with status {status}")


def _usable(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and t.dtype in _SUPPORTED for t in tensors) and available()


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in _NATIVE else torch.float32


class _FusedPermutationMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v, layers, distribution, steepness, art_lambda):
        dtype = _compute_dtype(x.dtype)
        n, m = x.shape[-1], v.shape[-1]
        rows = x.reshape(-1, n).to(dtype).contiguous()
        v_batched = v.dim() > 2
        vectors = (v.expand(*x.shape[:-1], n, m) if v_batched else v).to(dtype).contiguous()
        out = torch.empty(rows.shape[0], n, m, dtype=dtype)
        if rows.shape[0] and m:
            _run(layers, distribution, steepness, art_lambda, _FORWARD, rows, vectors, v_batched, m, out=out)
        ctx.save_for_backward(rows, vectors)
        ctx.layers, ctx.relaxation = layers, (distribution, steepness, art_lambda)
        ctx.x_shape, ctx.x_dtype, ctx.v_shape, ctx.v_dtype = x.shape, x.dtype, v.shape, v.dtype
        return out.view(*x.shape[:-1], n, m).to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        rows, vectors = ctx.saved_tensors
        n, m = rows.shape[-1], vectors.shape[-1]
        grad_out = grad_output.reshape(-1, n, m).to(rows.dtype).contiguous()
        grad_x = torch.zeros_like(rows)
        want_v = ctx.needs_input_grad[1]
        grad_v_rows = torch.zeros(rows.shape[0], n, m, dtype=rows.dtype) if want_v else None
        if rows.shape[0] and m:
            _run(
                ctx.layers, *ctx.relaxation, _BACKWARD, rows, vectors, vectors.dim() > 2, m,
                grad_out=grad_out, grad_x=grad_x, grad_v=grad_v_rows,
            )
        grad_v = None
        if want_v:
            grad_v = grad_v_rows.view(*ctx.x_shape[:-1], n, m)
            if len(ctx.v_shape) == 2:
                grad_v = grad_v.reshape(-1, n, m).sum(0)
            grad_v = grad_v.to(ctx.v_dtype)
        return grad_x.view(ctx.x_shape).to(ctx.x_dtype), grad_v, None, None, None, None


def permutation_matmul(
    x: torch.Tensor, v: torch.Tensor, layers: Sequence[ComparatorLayer], distribution: str, steepness: float,
    art_lambda: float,
) -> Optional[torch.Tensor]:
    """``P(x) @ v`` through the fused kernels, or ``None`` if they do not apply.

    Arguments as :func:`rankssl.ops.permutation_matmul.permutation_matmul` (validated).
    """
    if not _usable(x, v):
        return None
    return _FusedPermutationMatmul.apply(x, v, layers, distribution, steepness, art_lambda)


class _FusedGroupOrdering(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, num_neg, layers, distribution, steepness, art_lambda):
        rows = scores.contiguous()
        loss = torch.empty(rows.shape[0], dtype=rows.dtype)
        grad = torch.empty_like(rows)
        if rows.shape[0]:
            _run(layers, distribution, steepness, art_lambda, _GROCO, rows, out=loss, grad_x=grad, num_neg=num_neg)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * grad_output.unsqueeze(-1), None, None, None, None, None


def group_ordering_mass_loss(
    scores: torch.Tensor, num_neg: int, layers: Sequence[ComparatorLayer], distribution: str, steepness: float,
    art_lambda: float,
) -> Optional[torch.Tensor]:
    """GroCo's per-anchor loss from pre-ordered scores in one fused pass, or ``None``.

    Args:
        scores: (A, n) float32/float64, ``[negatives ascending, positives ascending]``.
        num_neg: K, the first K inputs are negatives.

    Returns:
        (A,) the mean over the n inputs of ``BCE(clamp(q, 0, 1), target)``, ``q`` the
        mass each input puts on the top ``n - K`` ranks. This equals the average of the
        positive-block and negative-block terms of the authors' loss, since ``P`` is
        doubly stochastic (the negative-block mass is ``1 - q``). The gradient is computed
        in the same pass and saved; the backward only scales it.
    """
    if scores.dtype not in _NATIVE or not _usable(scores):
        return None
    return _FusedGroupOrdering.apply(scores, num_neg, layers, distribution, steepness, art_lambda)
