"""``P @ v`` through a relaxed sorting network with a hand-written backward pass.

The forward pass runs the network on the values without autograd, keeping per layer
only the comparator probabilities ``alpha`` and differences ``d = b - a`` (B, k) and the
running product ``w_t`` (B, m, n). The backward pass walks the layers twice:

1. first to last, through the product ``w_{t-1} = M_t(alpha_t) w_t``: it yields the
   gradient of every ``alpha_t`` and of ``v``;
2. last to first, through the value sweep ``x_t = layer_t(x_{t-1})``: each ``alpha_t``
   depends on ``d_t`` via the relaxation's derivative (see
   :data:`rankssl.ops.relaxations.RELAXATION_DERIVATIVES`), which gives the gradient
   of the input values.

Compared with recording every elementary op for autograd this halves the work on the
CPU, where a layer over a few thousand numbers costs its per-op overhead.

Second derivatives (``create_graph=True``: Hessian-vector products, gradient
penalties) are exact on every path: a backward pass that must itself be
differentiable recomputes ``P @ v`` with plain autograd-recorded torch operations
(:func:`composed_permutation_matmul`) and differentiates that, at the cost of one more
network pass.
"""

from __future__ import annotations

from typing import List, Sequence

import torch

from rankssl.ops import fused
from rankssl.ops.layers import comparator_step, mix, mix_no_grad, split_pairs
from rankssl.ops.networks import ComparatorLayer
from rankssl.ops.relaxations import RELAXATION_DERIVATIVES, RELAXATIONS


def _reduce_to_shape(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to ``shape``."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    return grad


class _PermutationMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v, layers: Sequence[ComparatorLayer], distribution, steepness, art_lambda):
        compute_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        relax = RELAXATIONS[distribution]
        alphas: List[torch.Tensor] = []
        diffs: List[torch.Tensor] = []
        values = x
        for layer in layers:
            a, b, _ = split_pairs(layer, values, transposed=False)
            d = (b - a).to(compute_dtype)
            alpha = relax(d, steepness, art_lambda).to(x.dtype)
            values = mix_no_grad(layer, values, alpha, pairs=(a, b))
            alphas.append(alpha)
            diffs.append(d)
        # w^T (..., m, n): wires on the last dimension.
        w = v.to(x.dtype).expand(*x.shape[:-1], *v.shape[-2:]).transpose(-1, -2)
        products = []
        for layer, alpha in zip(reversed(layers), reversed(alphas), strict=True):
            products.append(w)
            w = mix_no_grad(layer, w, alpha.unsqueeze(-2), transposed=True)
        products.reverse()  # products[t] is the w that layer t multiplied
        ctx.layers, ctx.distribution = layers, distribution
        ctx.steepness, ctx.art_lambda = steepness, art_lambda
        ctx.v_shape, ctx.v_dtype = v.shape, v.dtype
        ctx.save_for_backward(x, v, *alphas, *diffs, *products)
        return w.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad_output):
        layers = ctx.layers
        num_layers = len(layers)
        x, v, *saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the backward must be differentiable
            return (
                *composed_permutation_matmul_vjp(
                    grad_output,
                    x,
                    v,
                    layers,
                    ctx.distribution,
                    ctx.steepness,
                    ctx.art_lambda,
                    ctx.needs_input_grad[:2],
                ),
                None,
                None,
                None,
                None,
            )
        alphas, diffs, products = saved[:num_layers], saved[num_layers : 2 * num_layers], saved[2 * num_layers :]
        derivative = RELAXATION_DERIVATIVES[ctx.distribution]

        # 1. Through w_{t-1} = M_t w_t, first layer to last.
        g = grad_output.transpose(-1, -2)  # (..., m, n)
        alpha_grads = []
        for layer, alpha, w in zip(layers, alphas, products, strict=True):
            g_a, g_b, _ = split_pairs(layer, g, transposed=False)
            w_min, w_max, _ = split_pairs(layer, w, transposed=True)
            alpha_grads.append(((g_a - g_b) * (w_min - w_max)).sum(-2))
            g = mix_no_grad(layer, g, alpha.unsqueeze(-2), pairs=(g_a, g_b))
        grad_v = None
        if ctx.needs_input_grad[1]:
            grad_v = _reduce_to_shape(g.transpose(-1, -2), ctx.v_shape).to(ctx.v_dtype)

        # 2. Through the value sweep, last layer to first.
        grad_x = None
        if ctx.needs_input_grad[0]:
            gx = grad_output.new_zeros(grad_output.shape[:-1])
            for layer, alpha, d, g_alpha in zip(
                reversed(layers), reversed(alphas), reversed(diffs), reversed(alpha_grads), strict=True
            ):
                g_min, g_max, _ = split_pairs(layer, gx, transposed=True)
                # x_min = b + alpha (a - b), x_max = a + alpha (b - a), with d = b - a.
                g_alpha = g_alpha - (g_min - g_max) * d.to(g_alpha.dtype)
                g_d = (g_alpha.to(d.dtype) * derivative(d, alpha.to(d.dtype), ctx.steepness, ctx.art_lambda)).to(
                    gx.dtype
                )
                gx = mix_no_grad(layer, gx, alpha, transposed=True, shift=g_d, pairs=(g_min, g_max))
            grad_x = gx
        return grad_x, grad_v, None, None, None, None


def under_functorch(*tensors: torch.Tensor) -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jacrev, ...) wraps any of ``tensors``."""
    if torch.compiler.is_compiling():
        return False
    return any(torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)


def composed_permutation_matmul(x, v, layers, distribution, steepness, art_lambda, transpose=False) -> torch.Tensor:
    """``P(x) @ v`` (or ``P(x)^T @ v`` with ``transpose``) recorded op by op by autograd:
    slow, but differentiable any number of times. The backward passes of the fast paths
    use it when ``create_graph=True``; for ``transpose`` it is also the torch path.

    ``P^T @ v`` carries the rows of ``v^T`` (..., m, n) forward through the layers with
    the values, each layer mixing them as it mixes the values: ``out[..., c, :]`` is
    what lands at ascending rank ``c`` when input ``r`` brings ``v[..., r, :]``.
    """
    alphas = []
    values = x
    w = v.to(x.dtype).expand(*x.shape[:-1], *v.shape[-2:]).transpose(-1, -2)
    for layer in layers:
        values, alpha = comparator_step(layer, values, distribution, steepness, art_lambda)
        if transpose:
            w = mix(layer, w, alpha.unsqueeze(-2))
        else:
            alphas.append(alpha)
    if not transpose:  # P @ v: the layers' mixes applied from the last layer to the first
        for layer, alpha in zip(reversed(layers), reversed(alphas), strict=True):
            w = mix(layer, w, alpha.unsqueeze(-2), transposed=True)
    return w.transpose(-1, -2)


def composed_permutation_matmul_vjp(
    grad_output, x, v, layers, distribution, steepness, art_lambda, needs=(True, True), transpose=False
):
    """``(grad_x, grad_v)`` of ``P(x) @ v`` (``P(x)^T @ v`` with ``transpose``) for
    ``grad_output``, itself differentiable (``None`` where ``needs`` says the gradient
    is not wanted)."""
    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_(True) for t in (x, v)]
        out = composed_permutation_matmul(inputs[0], inputs[1], layers, distribution, steepness, art_lambda, transpose)
        grads = torch.autograd.grad(out, inputs, grad_output, create_graph=True, allow_unused=True)
    return tuple(
        (torch.zeros_like(t) if g is None else g) if need else None
        for g, t, need in zip(grads, (x, v), needs, strict=True)
    )


def reference_permutation_matmul(x, v, layers, distribution, steepness, art_lambda) -> torch.Tensor:
    """The pure-torch path of :func:`permutation_matmul`, whatever the fused kernels' state."""
    return _PermutationMatmul.apply(x, v, layers, distribution, steepness, art_lambda)


def permutation_matmul(x, v, layers, distribution, steepness, art_lambda, transpose=False) -> torch.Tensor:
    """``P(x) @ v``, or ``P(x)^T @ v`` with ``transpose``, for already-validated
    arguments; see :func:`rankssl.ops.soft_permutation_matmul`.

    Takes the fused kernels of :mod:`rankssl.ops.fused` where they apply, else the
    pure-torch path: the hand-written backward above for ``P @ v``, the layers recorded
    op by op (:func:`composed_permutation_matmul`) for ``P^T @ v``.
    """
    if under_functorch(x, v):
        # torch.func transforms need autograd.Functions with setup_context; the recorded
        # ops serve them (and vmap) at the cost of speed.
        return composed_permutation_matmul(x, v, layers, distribution, steepness, art_lambda, transpose)
    out = fused.permutation_matmul(x, v, layers, distribution, steepness, art_lambda, transpose)
    if out is None:
        if transpose:
            out = composed_permutation_matmul(x, v, layers, distribution, steepness, art_lambda, transpose=True)
        else:
            out = reference_permutation_matmul(x, v, layers, distribution, steepness, art_lambda)
    return out
