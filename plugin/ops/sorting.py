"""Differentiable sorting networks.

Petersen, Borgelt, Kuehne, Deussen, "Differentiable Sorting Networks for Scalable
Sorting and Ranking Supervision", ICML 2021; and "Monotonic Differentiable Sorting
Networks", ICLR 2022.

Every comparator of a sorting network is relaxed (see :mod:`rankssl.ops.relaxations`),
which makes the sorted values and the permutation matrix ``P`` differentiable. ``P``
follows ``diffsort``'s orientation: ``P[..., r, c]`` is the weight with which input
``r`` lands at ascending rank ``c``, so ``sorted = x @ P``.

Two entry points:

* :func:`soft_sort` returns the relaxed sorted values and, on request, ``P``. One layer
  costs O(B n) for the values and O(B n^2) for ``P`` (the reference builds dense
  matrices and pays O(B n^3) per layer).
* :func:`soft_permutation_matmul` returns ``P @ v`` for given vectors ``v`` without
  forming ``P``: the layers' transposed mixing is applied to ``v`` from the last layer
  to the first, O(B n m) per layer for ``m`` vectors, with a hand-written backward
  (:mod:`rankssl.ops.permutation_matmul`). A loss that needs only the mass each input
  puts on a block of ranks (GroCo) needs only this.
"""

from __future__ import annotations

import os
from typing import Literal, Optional, Tuple, overload

import torch

from rankssl.ops.layers import comparator_step, mix
from rankssl.ops.networks import check_network, get_network, network_depth
from rankssl.ops.permutation_matmul import permutation_matmul
from rankssl.ops.relaxations import check_relaxation
from rankssl.ops.validation import check_finite, check_flag, check_positive_int, check_tensor

__all__ = ["soft_sort", "soft_permutation_matmul", "DiffSortNetwork"]


def _check_values(x: torch.Tensor, name: str = "x") -> None:
    check_tensor(x, name, shape_hint="(..., n)")
    if x.dim() < 1 or x.shape[-1] < 2:
        raise ValueError(f"{name} (values to sort) must have shape (..., n) with n >= 2, got shape {tuple(x.shape)}.")
    check_finite([(name, x)])


def _validated_layers(x, network, distribution, steepness, art_lambda):
    _check_values(x)
    check_network(network)
    check_relaxation(distribution, steepness, art_lambda)
    return get_network(network, x.shape[-1], x.device)


_GIB = 1 << 30


def _available_memory(device: torch.device) -> Optional[int]:
    """Bytes free for new tensors on ``device``, or ``None`` where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return None


def permutation_memory(x: torch.Tensor, num_layers: int) -> int:
    """Bytes :func:`soft_sort` needs to build ``P`` for ``x`` (..., n) through ``num_layers``
    layers: a few (..., n, n) matrices at a time, and, where autograd records the sort
    (``x`` requires grad), about two of them per layer kept for the backward pass."""
    matrix = x[..., :1].numel() * x.shape[-1] ** 2 * x.element_size()
    recorded = torch.is_grad_enabled() and x.requires_grad
    return matrix * (2 * num_layers + 3 if recorded else 3)


#: Matrix-entry updates (rows x n^2 x layers) above which :func:`soft_sort` refuses to
#: build ``P`` on the CPU: 2^34 of them already take minutes there, and the defaults at
#: ``n = 4096`` (4096 odd-even layers) would take hours without running out of memory.
#: Raise it (``rankssl.ops.sorting.MAX_CPU_PERMUTATION_WORK = ...``) to accept such a run.
MAX_CPU_PERMUTATION_WORK = 1 << 34


def permutation_work(x: torch.Tensor, num_layers: int) -> int:
    """Matrix-entry updates :func:`soft_sort` makes to build ``P`` for ``x`` (..., n):
    every layer mixes the columns of one (n, n) matrix per row of ``x``."""
    return x[..., :1].numel() * x.shape[-1] ** 2 * num_layers


def _cheaper_options(network: str, n: int, num_layers: int) -> str:
    bitonic = (
        f", or network='bitonic' / 'bitonic_mirrored' ({network_depth('bitonic_mirrored', n)} layers "
        f"instead of {num_layers})"
        if network == "odd_even"
        else ""
    )
    return (
        "Cheaper: return_permutation=False (the sorted values only, O(n) per layer), "
        f"rankssl.ops.soft_permutation_matmul(x, v) for P @ v without forming P{bitonic}."
    )


def _check_permutation_cost(x: torch.Tensor, network: str) -> None:
    """Refuse, before any work, a ``P`` that does not fit in memory or, on the CPU,
    would take hours (:data:`MAX_CPU_PERMUTATION_WORK`)."""
    n = x.shape[-1]
    num_layers = network_depth(network, n)
    shape = f"x of shape {tuple(x.shape)} ({network} network, {num_layers} layers)"
    need = permutation_memory(x, num_layers)
    # Small: no need to ask the device (on a GPU that would be a host sync).
    free = _available_memory(x.device) if need >= _GIB else None
    if free is not None and need > free:
        raise ValueError(
            f"soft_sort with return_permutation=True on {shape} needs about {need / _GIB:.1f} GiB to build the "
            f"relaxed permutation matrices {tuple(x.shape) + (n,)}"
            + (", one kept per layer for autograd" if x.requires_grad else "")
            + f", more than the {free / _GIB:.1f} GiB available on {x.device}. "
            + _cheaper_options(network, n, num_layers)
        )
    work = permutation_work(x, num_layers)
    if x.device.type == "cpu" and work > MAX_CPU_PERMUTATION_WORK:
        raise ValueError(
            f"soft_sort with return_permutation=True on {shape} makes about {work:.2e} matrix-entry "
            f"updates to build the relaxed permutation matrices {tuple(x.shape) + (n,)}: far too slow on the "
            "CPU (2^34 take minutes; n = 4096 with the defaults, 2^36, over an hour) "
            f"(the limit, rankssl.ops.sorting.MAX_CPU_PERMUTATION_WORK, is {MAX_CPU_PERMUTATION_WORK:.2e}). "
            + _cheaper_options(network, n, num_layers)
        )


# The overloads tell a type checker that P is a tensor unless return_permutation is False.
@overload
def soft_sort(
    x: torch.Tensor,
    network: str = ...,
    distribution: str = ...,
    steepness: float = ...,
    art_lambda: float = ...,
    return_permutation: Literal[True] = ...,
) -> Tuple[torch.Tensor, torch.Tensor]: ...
@overload
def soft_sort(
    x: torch.Tensor,
    network: str = ...,
    distribution: str = ...,
    steepness: float = ...,
    art_lambda: float = ...,
    *,
    return_permutation: Literal[False],
) -> Tuple[torch.Tensor, None]: ...
@overload
def soft_sort(
    x: torch.Tensor,
    network: str = ...,
    distribution: str = ...,
    steepness: float = ...,
    art_lambda: float = ...,
    return_permutation: bool = ...,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]: ...


def soft_sort(
    x: torch.Tensor,
    network: str = "odd_even",
    distribution: str = "cauchy",
    steepness: float = 1.0,
    art_lambda: float = 0.25,
    return_permutation: bool = True,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Sort ``x`` ascending along its last dimension with a relaxed sorting network.

    Args:
        x: (..., n) floating tensor, n >= 2. float16/bfloat16 compute the comparator
            probabilities in float32.
        network: ``"odd_even"`` (n layers), ``"bitonic"`` (diffsort's wiring) or
            ``"bitonic_mirrored"`` (sorts every n); both bitonic networks have
            log2 N (log2 N + 1) / 2 layers for N the next power of two. See
            :mod:`rankssl.ops.networks`.
        distribution: relaxation, one of ``logistic``, ``logistic_phi``, ``gaussian``,
            ``reciprocal``, ``cauchy``, ``optimal``.
        steepness: inverse temperature of the relaxation, > 0.
        art_lambda: exponent of ``logistic_phi``.
        return_permutation: also build the relaxed permutation matrix. Its memory is
            estimated first (:func:`permutation_memory`, :func:`permutation_work`): a
            ``ValueError`` with the estimate and the cheaper options refuses a call that
            needs more memory than the device has free (e.g. ``n = 4096`` with gradients:
            64 MiB per matrix, about two per layer, 4096 odd-even layers) or, on the CPU,
            more than :data:`MAX_CPU_PERMUTATION_WORK` matrix-entry updates (the same
            ``n = 4096`` without gradients: 2^36, hours).

    Returns:
        ``(sorted, P)``: sorted values (..., n) and ``P`` (..., n, n) with
        ``sorted = x @ P`` (rows: inputs, columns: ascending ranks), or ``None`` for
        ``P`` when ``return_permutation`` is false.

    Example:
        >>> x = torch.tensor([[3.0, 1.0, 2.0]])
        >>> values, P = soft_sort(x, steepness=100.0)
        >>> P.argmax(dim=-1)  # the rank of each input
        tensor([[2, 0, 1]])
    """
    _check_values(x)
    check_network(network)
    check_relaxation(distribution, steepness, art_lambda)
    if return_permutation:
        _check_permutation_cost(x, network)  # before the network is built: n = 4096 odd-even is slow to build
    layers = get_network(network, x.shape[-1], x.device)
    n = x.shape[-1]
    X = None
    if return_permutation:
        X = torch.eye(n, dtype=x.dtype, device=x.device).expand(*x.shape[:-1], n, n)
    for layer in layers:
        x, alpha = comparator_step(layer, x, distribution, steepness, art_lambda)
        if X is not None:
            X = mix(layer, X, alpha.unsqueeze(-2))
    return x, X


def soft_permutation_matmul(
    x: torch.Tensor,
    v: torch.Tensor,
    network: str = "odd_even",
    distribution: str = "cauchy",
    steepness: float = 1.0,
    art_lambda: float = 0.25,
    transpose: bool = False,
) -> torch.Tensor:
    """``P @ v`` (or ``P^T @ v``) for the relaxed permutation ``P`` of ``x``, without forming ``P``.

    Args:
        x: (..., n) floating tensor of values to sort (see :func:`soft_sort`).
        v: (n, m) vectors over ranks shared by every row of ``x``, or (..., n, m)
            with the leading dimensions of ``x``. A column of ones on a block of ranks
            gives the mass each input puts on that block.
        network, distribution, steepness, art_lambda: as for :func:`soft_sort`.
        transpose: return ``P^T @ v`` instead: ``v`` is indexed by input, and row ``c``
            of the result is what lands at ascending rank ``c`` (the soft ranking of
            ``v``'s rows; the ``sorting`` AP estimator carries relevance so).

    Returns:
        (..., n, m) tensor equal to ``soft_sort(x)[1] @ v`` (``transpose``:
        ``soft_sort(x)[1].transpose(-1, -2) @ v``).

    Example:
        >>> x = torch.tensor([[0.1, 0.9, 0.5]])
        >>> top_block = torch.tensor([[0.0], [1.0], [1.0]])  # ranks 1 and 2
        >>> mass = soft_permutation_matmul(x, top_block, steepness=100.0)
        >>> mass.squeeze(-1).round()
        tensor([[0., 1., 1.]])
    """
    layers = _validated_layers(x, network, distribution, steepness, art_lambda)
    check_flag(transpose, "transpose")
    n = x.shape[-1]
    expected = f"(n, m) or {tuple(x.shape[:-1]) + ('n', 'm')} with n={n}"
    check_tensor(v, "v", shape_hint=expected, floating=False)
    if v.dim() < 2 or v.shape[-2] != n or (v.dim() > 2 and v.shape[:-2] != x.shape[:-1]):
        raise ValueError(
            f"v must have shape {expected} (the leading dimensions of x {tuple(x.shape)}), got {tuple(v.shape)}."
        )
    if v.is_complex() or v.dtype == torch.bool:
        raise TypeError(f"v must be a real-valued tensor, got dtype {v.dtype}.")
    check_finite([("v", v)])
    return permutation_matmul(x, v, layers, distribution, steepness, art_lambda, transpose)


class DiffSortNetwork(torch.nn.Module):
    """Module form of :func:`soft_sort` with rankssl's argument names and order.

    Not a drop-in for ``diffsort.DiffSortNet``: the constructor here is ``(network, size,
    steepness, distribution, art_lambda)``, diffsort's is ``(sorting_network_type, size,
    device, steepness, art_lambda, ...)``. The drop-in is
    :class:`rankssl.ops.DiffSortNet` (``from rankssl.ops import DiffSortNet``), which
    takes diffsort's arguments and returns its values.

    Args:
        network: ``"odd_even"``, ``"bitonic"`` or ``"bitonic_mirrored"``.
        size: number of values per row, checked at call time.
        steepness, distribution, art_lambda: see :func:`soft_sort`.

    Example:
        >>> sorter = DiffSortNetwork("bitonic", size=4, steepness=10.0)
        >>> values, P = sorter(torch.randn(8, 4))
        >>> P.shape
        torch.Size([8, 4, 4])
    """

    def __init__(
        self,
        network: str,
        size: int,
        steepness: float = 10.0,
        distribution: str = "cauchy",
        art_lambda: float = 0.25,
    ) -> None:
        super().__init__()
        check_network(network)
        check_relaxation(distribution, steepness, art_lambda)
        size = check_positive_int(size, "size", minimum=2)
        self.network, self.size = network, size
        self.steepness, self.distribution, self.art_lambda = steepness, distribution, art_lambda

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        _check_values(x)
        if x.shape[-1] != self.size:
            raise ValueError(f"Expected rows of {self.size} values, got shape {tuple(x.shape)}.")
        return soft_sort(x, self.network, self.distribution, self.steepness, self.art_lambda)

    def extra_repr(self) -> str:
        return (
            f"network={self.network!r}, size={self.size}, steepness={self.steepness}, "
            f"distribution={self.distribution!r}"
        )
