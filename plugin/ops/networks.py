"""Sorting-network structures: which wires each layer compares.

A sorting network is a fixed list of layers; every layer holds disjoint comparators.
A comparator reads wires ``a`` and ``b`` and writes the smaller value to one wire and
the larger to the other. Here each layer is stored as index vectors, so a relaxed
layer costs one gather and one scatter over the ``n`` wires instead of the dense
``n x n`` matrices of the reference implementation.

The networks follow Petersen et al., "Differentiable Sorting Networks for Scalable
Sorting and Ranking Supervision" (ICML 2021):

* ``odd_even``: odd-even transposition, ``n`` layers; sorts every ``n``.
* ``bitonic``: the wiring of the reference package ``diffsort`` 0.2.0, reproduced
  exactly. For ``n`` not a power of two it drops the top wires of the next power of two
  and leaves the other wire of a comparator that touched them alone. That is exact for
  ascending comparators but not for the descending ones of bitonic merges, so for some
  sizes (22, 38, 42-46, 54, ...) the network does not sort every input even at infinite
  steepness; :func:`get_network` warns for those sizes.
* ``bitonic_mirrored``: the same depth, with every comparator ascending (the first
  stage of each merge compares mirrored positions). Dropped wires then always act as
  ``+inf`` padding, so it sorts every ``n``. Prefer it to ``bitonic`` unless you need
  ``diffsort``'s numbers.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from rankssl.ops.validation import check_choice, check_positive_int

NETWORKS = ("odd_even", "bitonic", "bitonic_mirrored")


@dataclass(frozen=True)
class ComparatorLayer:
    """One layer of disjoint comparators over ``n`` wires.

    Attributes:
        num_comparators: k, the number of comparators in the layer.
        input_order: (n,) long. ``x[..., input_order]`` lists the ``a`` wires of the k
            comparators, then their ``b`` wires, then the wires the layer leaves alone.
        input_inverse: (n,) long, the inverse permutation of ``input_order``.
        output_order: (n,) long. The wires that receive the k soft minima, then the k
            soft maxima, then the untouched wires (same order as in ``input_order``).
        output_inverse: (n,) long, the inverse permutation of ``output_order``.
        adjacent_start: ``s`` when the layer compares (s, s+1), (s+2, s+3), ... up to the
            last full pair with the minimum on the lower wire (odd-even layers), which
            lets the layer use strided views instead of gathers; else ``None``.
    """

    num_comparators: int
    input_order: torch.Tensor
    input_inverse: torch.Tensor
    output_order: torch.Tensor
    output_inverse: torch.Tensor
    adjacent_start: Optional[int] = None

    def to(self, device: torch.device) -> ComparatorLayer:
        return ComparatorLayer(
            self.num_comparators,
            self.input_order.to(device),
            self.input_inverse.to(device),
            self.output_order.to(device),
            self.output_inverse.to(device),
            self.adjacent_start,
        )


Comparator = Tuple[int, int, int, int]  # (wire_a, wire_b, wire_receiving_min, wire_receiving_max)


def _make_layer(n: int, comparators: List[Comparator]) -> ComparatorLayer:
    touched = {w for a, b, _, _ in comparators for w in (a, b)}
    untouched = [w for w in range(n) if w not in touched]
    wire_a = [c[0] for c in comparators]
    wire_b = [c[1] for c in comparators]
    dest_min = [c[2] for c in comparators]
    dest_max = [c[3] for c in comparators]
    adjacent_start = None
    if comparators:
        start = comparators[0][0]
        expected = [(start + 2 * i, start + 2 * i + 1) * 2 for i in range((n - start) // 2)]
        if [tuple(c) for c in comparators] == expected:
            adjacent_start = start
    input_order = torch.tensor(wire_a + wire_b + untouched, dtype=torch.long)
    output_order = torch.tensor(dest_min + dest_max + untouched, dtype=torch.long)
    return ComparatorLayer(
        num_comparators=len(comparators),
        input_order=input_order,
        input_inverse=torch.argsort(input_order),
        output_order=output_order,
        output_inverse=torch.argsort(output_order),
        adjacent_start=adjacent_start,
    )


def odd_even_comparators(n: int) -> List[List[Comparator]]:
    """Odd-even transposition network: ``n`` layers, alternating pairs (0,1),(2,3),...
    and (1,2),(3,4),...; every comparator writes its minimum to the lower wire."""
    layers = []
    for layer in range(n):
        start = layer % 2
        layers.append([(i, i + 1, i, i + 1) for i in range(start, n - 1, 2)])
    return layers


def bitonic_comparators(n: int) -> List[List[Comparator]]:
    """Bitonic network on N = next power of two wires, ``log2 N (log2 N + 1) / 2``
    layers. The ``N - n`` top wires are dropped; a comparator touching a dropped wire
    is removed, as ``diffsort`` does."""
    num_blocks = math.ceil(math.log2(n))
    padded = 2**num_blocks
    offset = padded - n
    layers = []
    for block in range(num_blocks):
        for stage in range(block + 1):
            distance = 2 ** (block - stage)
            comparators = []
            for start in range(0, padded, 2 * distance):
                for i in range(start, start + distance):
                    a, b = i, i + distance
                    if a < offset or b < offset:
                        continue
                    descending = (i // 2 ** (block + 1)) % 2 == 1
                    low, high = (b, a) if descending else (a, b)
                    comparators.append((a - offset, b - offset, low - offset, high - offset))
            layers.append(comparators)
    return layers


def bitonic_mirrored_comparators(n: int) -> List[List[Comparator]]:
    """Bitonic network with ascending comparators only, valid for every ``n``.

    Each merge of blocks of size ``2s`` first compares position ``i`` with its mirror
    ``2s - 1 - i`` inside the block, then runs half-cleaners of distance ``s/2, s/4, ...``.
    Wires ``>= n`` of the padded network hold ``+inf`` conceptually; every comparator
    touching one leaves the real wire in place, so those comparators are removed.
    """
    num_blocks = math.ceil(math.log2(n))
    padded = 2**num_blocks
    layers = []
    for block in range(num_blocks):
        size = 2 ** (block + 1)
        mirrored = []
        for start in range(0, padded, size):
            for i in range(start, start + size // 2):
                j = 2 * start + size - 1 - i
                if j < n:
                    mirrored.append((i, j, i, j))
        layers.append(mirrored)
        distance = size // 4
        while distance >= 1:
            comparators = []
            for start in range(0, padded, 2 * distance):
                for i in range(start, start + distance):
                    if i + distance < n:
                        comparators.append((i, i + distance, i, i + distance))
            layers.append(comparators)
            distance //= 2
    return layers


def network_depth(network: str, n: int) -> int:
    """Layers of ``network`` for ``n`` wires, at most (layers left without a comparator
    are dropped when the network is built), computed without building it: ``n`` for
    odd-even, ``k (k + 1) / 2`` with ``k = ceil(log2 n)`` for both bitonic networks."""
    check_network(network)
    check_positive_int(n, "n (values to sort)", minimum=2)
    if network == "odd_even":
        return n
    blocks = math.ceil(math.log2(n))
    return blocks * (blocks + 1) // 2


def _sorts_hard(layers: List[List[Comparator]], n: int, trials: int = 64) -> bool:
    """Whether the unrelaxed network sorts ``trials`` random permutations (seeded)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.stack([torch.randperm(n, generator=generator) for _ in range(trials)])
    for comparators in layers:
        y = x.clone()
        for a, b, low, high in comparators:
            y[:, low] = torch.minimum(x[:, a], x[:, b])
            y[:, high] = torch.maximum(x[:, a], x[:, b])
        x = y
    return bool((x == torch.arange(n)).all())


@functools.cache
def _build_cpu(network: str, n: int) -> Tuple[ComparatorLayer, ...]:
    builders = {
        "odd_even": odd_even_comparators,
        "bitonic": bitonic_comparators,
        "bitonic_mirrored": bitonic_mirrored_comparators,
    }
    spec = builders[network](n)
    if network == "bitonic" and not _sorts_hard(spec, n):
        warnings.warn(
            f"diffsort's bitonic wiring does not sort every input of size n={n} (a size "
            "that is not a power of two); use network='bitonic_mirrored' or 'odd_even' "
            "unless you need diffsort's exact numbers.",
            stacklevel=4,
        )
    return tuple(_make_layer(n, comparators) for comparators in spec if comparators)


class Network(tuple):
    """The layers of a network (a tuple of :class:`ComparatorLayer`) with its ``name``
    and ``size``, so that code holding the layers can name the network (the fused
    kernels are registered operators, which take the name, not the layers)."""

    name: str
    size: int

    def __new__(cls, layers, name: str, size: int) -> Network:
        network = super().__new__(cls, layers)
        network.name, network.size = name, size
        return network

    def __reduce__(self):
        return (Network, (tuple(self), self.name, self.size))


_DEVICE_CACHE: Dict[Tuple[str, int, torch.device], Network] = {}


def check_network(network: str, name: str = "sorting_network") -> None:
    check_choice(network, name, NETWORKS, "sorting network")


def get_network(network: str, n: int, device: torch.device | str = "cpu") -> Network:
    """Return the layers of ``network`` for ``n`` wires on ``device``, built once and cached.

    Args:
        network: ``"odd_even"``, ``"bitonic"`` or ``"bitonic_mirrored"``.
        n: number of values to sort, at least 2.
        device: where the index tensors live.

    Returns:
        A :class:`Network`: the tuple of layers, with ``.name`` and ``.size``.
    """
    check_network(network)
    check_positive_int(n, "n (values to sort)", minimum=2)
    device = torch.device(device)
    key = (network, n, device)
    layers = _DEVICE_CACHE.get(key)
    if layers is None:
        layers = Network((layer.to(device) for layer in _build_cpu(network, n)), network, n)
        _DEVICE_CACHE[key] = layers
    return layers
