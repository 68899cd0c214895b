"""One relaxed comparator layer, applied along the last dimension of a tensor.

Shared by the forward sweeps of :mod:`rankssl.ops.sorting` and the hand-written
backward of :mod:`rankssl.ops.permutation_matmul`.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from rankssl.ops.networks import ComparatorLayer
from rankssl.ops.relaxations import swap_probability

Join = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def split_pairs(layer: ComparatorLayer, t: torch.Tensor, transposed: bool):
    """Read the two inputs of every comparator from the last dimension of ``t``.

    Forward (``transposed=False``) reads the ``a`` and ``b`` wires; the transposed mixing
    reads the wires that received the minimum and the maximum. Returns ``(first,
    second, join)`` where ``join(low, high)`` writes the two outputs back into place.
    """
    if layer.adjacent_start is not None:
        # Odd-even layers compare wires (s, s+1), (s+2, s+3), ... and keep the minimum on
        # the lower wire in both directions: strided views, no gather.
        start, k = layer.adjacent_start, layer.num_comparators
        pairs = t[..., start : start + 2 * k].unflatten(-1, (k, 2))
        head, tail = t[..., :start], t[..., start + 2 * k :]

        def join_adjacent(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
            core = torch.stack((low, high), dim=-1).flatten(-2)
            if head.shape[-1] == 0 and tail.shape[-1] == 0:
                return core
            return torch.cat((head, core, tail), dim=-1)

        return pairs[..., 0], pairs[..., 1], join_adjacent

    k = layer.num_comparators
    read, write = (layer.output_order, layer.input_inverse) if transposed else (layer.input_order, layer.output_inverse)
    z = t.index_select(-1, read)
    rest = z[..., 2 * k :]

    def join_gathered(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return torch.cat((low, high, rest), dim=-1).index_select(-1, write)

    return z[..., :k], z[..., k : 2 * k], join_gathered


def mix(layer: ComparatorLayer, t: torch.Tensor, alpha: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """One relaxed layer on the last dimension of ``t``.

    Forward: ``min' = alpha a + (1 - alpha) b`` to the minimum's wire, ``max' = (1 -
    alpha) a + alpha b`` to the maximum's. Transposed (left-multiplying by the layer's
    mixing matrix ``M``, with ``X_new = X @ M``): ``a' = alpha w_min + (1 - alpha) w_max``
    and ``b' = (1 - alpha) w_min + alpha w_max``. Both are the same two lerps.
    """
    first, second, join = split_pairs(layer, t, transposed)
    return join(torch.lerp(second, first, alpha), torch.lerp(first, second, alpha))


def comparator_step(
    layer: ComparatorLayer,
    x: torch.Tensor,
    distribution: str,
    steepness: float,
    art_lambda: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Apply one relaxed layer to values ``x`` (..., n); return new values and alpha (..., k)."""
    a, b, join = split_pairs(layer, x, transposed=False)
    alpha = swap_probability(a, b, distribution, steepness, art_lambda)
    return join(torch.lerp(b, a, alpha), torch.lerp(a, b, alpha)), alpha


def mix_no_grad(
    layer: ComparatorLayer,
    t: torch.Tensor,
    alpha: torch.Tensor,
    transposed: bool = False,
    shift: Optional[torch.Tensor] = None,
    pairs: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
) -> torch.Tensor:
    """:func:`mix` for code that runs without autograd: the two lerps write straight
    into a preallocated output instead of being stacked and concatenated, which saves
    two copies per layer (the bulk of a layer's time on small tensors).

    ``shift`` (..., k), if given, is subtracted from the first output of every
    comparator and added to the second. ``pairs``: the ``(first, second)`` that
    :func:`split_pairs` already returned for ``t``, to skip splitting it again.
    """
    first, second = pairs if pairs is not None else split_pairs(layer, t, transposed)[:2]
    out = torch.empty_like(t)
    k = layer.num_comparators
    if layer.adjacent_start is not None:
        start = layer.adjacent_start
        out_pairs = out[..., start : start + 2 * k].unflatten(-1, (k, 2))
        low, high = out_pairs[..., 0], out_pairs[..., 1]
        torch.lerp(second, first, alpha, out=low)
        torch.lerp(first, second, alpha, out=high)
        if shift is not None:
            low.sub_(shift)
            high.add_(shift)
        if start:
            out[..., :start] = t[..., :start]
        if start + 2 * k < t.shape[-1]:
            out[..., start + 2 * k :] = t[..., start + 2 * k :]
        return out
    read, write = (layer.output_order, layer.input_inverse) if transposed else (layer.input_order, layer.output_inverse)
    low, high = out[..., :k], out[..., k : 2 * k]
    torch.lerp(second, first, alpha, out=low)
    torch.lerp(first, second, alpha, out=high)
    if shift is not None:
        low.sub_(shift)
        high.add_(shift)
    out[..., 2 * k :] = t.index_select(-1, read[2 * k :])
    return out.index_select(-1, write)
