"""The fused kernels as registered operators (``torch.library.custom_op``, namespace ``rankssl``).

Registered so that ``torch.compile`` keeps each kernel as one opaque node (a fake
implementation gives its output shapes), ``torch.func`` transforms differentiate
through it, and a dispatch-level launch counter sees one operator per network pass:

* ``rankssl::permutation_matmul(x, v, network, distribution, steepness, art_lambda,
  backend, transpose) -> P(x) @ v``, or ``P(x)^T @ v`` if ``transpose`` (the rows of
  ``v^T`` carried forward through the layers with the values);
* ``rankssl::permutation_matmul_backward(grad, x, v, ..., need_v, transpose) -> (grad_x, grad_v)``;
* ``rankssl::group_ordering_mass_loss(scores, num_neg, network, ...) -> (loss, grad)``.

``network`` is a name of :data:`rankssl.ops.NETWORKS` (the operator looks its layers
up), ``backend`` is ``"cpu"`` (C++ kernels) or ``"triton"``. The autograd formulas call
the backward operator; when the backward pass must itself be differentiable
(``create_graph=True``, ``torch.func`` transforms) they recompute the network with
autograd-recorded torch operations instead, so second derivatives are exact.
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rankssl.ops import fused
from rankssl.ops import permutation_matmul as _reference  # the torch path (a circular import: used at call time)
from rankssl.ops.networks import get_network

__all__ = ["permutation_matmul", "permutation_matmul_backward", "group_ordering_mass_loss"]


def _layers(network: str, x: Tensor):
    return get_network(network, x.shape[-1], x.device)


@torch.library.custom_op("rankssl::permutation_matmul", mutates_args=())
def permutation_matmul(
    x: Tensor,
    v: Tensor,
    network: str,
    distribution: str,
    steepness: float,
    art_lambda: float,
    backend: str,
    transpose: bool,
) -> Tensor:
    """``P(x) @ v``, or ``P(x)^T @ v`` if ``transpose``: x (..., n), v (n, m) or
    (..., n, m) of x's dtype; returns (..., n, m)."""
    run = fused.cpu_permutation_matmul if backend == "cpu" else fused.triton_permutation_matmul
    return run(x, v, _layers(network, x), distribution, steepness, art_lambda, transpose)


@permutation_matmul.register_fake
def _(x, v, network, distribution, steepness, art_lambda, backend, transpose):
    return x.new_empty(*x.shape, v.shape[-1])


@torch.library.custom_op("rankssl::permutation_matmul_backward", mutates_args=())
def permutation_matmul_backward(
    grad: Tensor,
    x: Tensor,
    v: Tensor,
    network: str,
    distribution: str,
    steepness: float,
    art_lambda: float,
    backend: str,
    need_v: bool,
    transpose: bool,
) -> Tuple[Tensor, Tensor]:
    """``(grad_x, grad_v)`` of :func:`permutation_matmul`; ``grad_v`` is empty (0,)
    unless ``need_v``."""
    run = fused.cpu_permutation_matmul_backward if backend == "cpu" else fused.triton_permutation_matmul_backward
    grad_x, grad_v = run(grad, x, v, _layers(network, x), distribution, steepness, art_lambda, need_v, transpose)
    return grad_x, (grad_v if need_v else v.new_empty(0))


@permutation_matmul_backward.register_fake
def _(grad, x, v, network, distribution, steepness, art_lambda, backend, need_v, transpose):
    return torch.empty_like(x), (torch.empty_like(v) if need_v else v.new_empty(0))


def _setup_permutation_matmul(ctx, inputs, output):
    x, v, network, distribution, steepness, art_lambda, backend, transpose = inputs
    ctx.save_for_backward(x, v)
    ctx.settings = (network, distribution, steepness, art_lambda, backend, transpose)


def _backward_permutation_matmul(ctx, grad):
    x, v = ctx.saved_tensors
    network, distribution, steepness, art_lambda, backend, transpose = ctx.settings
    need_x, need_v = ctx.needs_input_grad[:2]
    if torch.is_grad_enabled():  # create_graph=True: the backward must be differentiable
        grad_x, grad_v = _reference.composed_permutation_matmul_vjp(
            grad, x, v, _layers(network, x), distribution, steepness, art_lambda, (need_x, need_v), transpose
        )
    else:
        grad_x, grad_v = permutation_matmul_backward(
            grad, x, v, network, distribution, steepness, art_lambda, backend, need_v, transpose
        )
    return (grad_x if need_x else None), (grad_v if need_v else None), None, None, None, None, None, None


permutation_matmul.register_autograd(_backward_permutation_matmul, setup_context=_setup_permutation_matmul)


@torch.library.custom_op("rankssl::group_ordering_mass_loss", mutates_args=())
def group_ordering_mass_loss(
    scores: Tensor,
    num_neg: int,
    network: str,
    distribution: str,
    steepness: float,
    art_lambda: float,
    backend: str,
) -> Tuple[Tensor, Tensor]:
    """GroCo's ``(loss (A,), gradient (A, n))`` from (A, n) pre-ordered scores; see
    :func:`rankssl.ops.fused.group_ordering_mass_loss`."""
    run = fused.cpu_group_ordering if backend == "cpu" else fused.triton_group_ordering
    return run(scores, num_neg, _layers(network, scores), distribution, steepness, art_lambda)


@group_ordering_mass_loss.register_fake
def _(scores, num_neg, network, distribution, steepness, art_lambda, backend):
    return scores.new_empty(scores.shape[0]), torch.empty_like(scores)


def composed_group_ordering_loss(scores, num_neg, layers, distribution, steepness, art_lambda) -> Tensor:
    """:func:`group_ordering_mass_loss`'s loss recorded op by op (differentiable twice)."""
    n = scores.shape[-1]
    top = torch.zeros(n, 1, dtype=scores.dtype, device=scores.device)
    top[num_neg:] = 1.0
    q = _reference.composed_permutation_matmul(scores, top, layers, distribution, steepness, art_lambda)[..., 0]
    return F.binary_cross_entropy(q.clamp(0.0, 1.0), top[:, 0].expand_as(q), reduction="none").mean(-1)


def _setup_group_ordering(ctx, inputs, output):
    scores, num_neg, network, distribution, steepness, art_lambda, _ = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(scores, output[1])
    ctx.settings = (num_neg, network, distribution, steepness, art_lambda)


def _backward_group_ordering(ctx, grad_loss, _grad_of_gradient):
    scores, gradient = ctx.saved_tensors
    if not torch.is_grad_enabled():
        return gradient * grad_loss.unsqueeze(-1), None, None, None, None, None, None
    # create_graph=True: differentiate the loss recorded op by op instead.
    num_neg, network, distribution, steepness, art_lambda = ctx.settings
    with torch.enable_grad():
        leaf = scores if scores.requires_grad else scores.detach().requires_grad_(True)
        loss = composed_group_ordering_loss(
            leaf.float(), num_neg, _layers(network, scores), distribution, steepness, art_lambda
        )
        (grad_scores,) = torch.autograd.grad(loss, leaf, grad_loss.to(loss.dtype), create_graph=True)
    return grad_scores.to(scores.dtype), None, None, None, None, None, None


group_ordering_mass_loss.register_autograd(_backward_group_ordering, setup_context=_setup_group_ordering)
