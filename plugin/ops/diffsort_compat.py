"""``diffsort.DiffSortNet``'s interface on rankssl's fast sorting networks.

Petersen, Borgelt, Kuehne, Deussen, "Differentiable Sorting Networks for Scalable
Sorting and Ranking Supervision", ICML 2021, and "Monotonic Differentiable Sorting
Networks", ICLR 2022. Code written against the reference package ``diffsort`` 0.2.0
switches with one import::

    from rankssl.ops import DiffSortNet   # was: from diffsort import DiffSortNet

and runs :func:`rankssl.ops.soft_sort` (O(n^2) per layer for ``P`` instead of the
reference's dense O(n^3) matrix products) with the same numbers.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from rankssl.ops.networks import get_network
from rankssl.ops.relaxations import RELAXATIONS, check_relaxation
from rankssl.ops.sorting import soft_sort
from rankssl.ops.validation import check_positive_int, check_tensor

__all__ = ["DiffSortNet", "DiffSortInputError", "UnsupportedSortingOption"]

#: The networks diffsort 0.2.0 offers, plus rankssl's ``bitonic_mirrored``.
DIFFSORT_NETWORKS = ("bitonic", "odd_even", "bitonic_mirrored")


class DiffSortInputError(ValueError, AssertionError):
    """Bad input where ``diffsort`` fails an ``assert``: catchable as either."""


class UnsupportedSortingOption(ValueError, NotImplementedError):
    """Unknown network or relaxation, where ``diffsort`` raises ``NotImplementedError``: catchable as either."""


class DiffSortNet(torch.nn.Module):
    """Sort each row of a (batch, size) matrix with a relaxed sorting network; ``diffsort``'s API.

    Same constructor, attributes and return values as ``diffsort.DiffSortNet`` (0.2.0),
    including the positional order ``(sorting_network_type, size, device, steepness,
    ...)`` and the deprecated ``interpolation_type``. ``steepness``, ``art_lambda``
    and ``distribution`` are read at every call, so changing them on the object after
    construction takes effect (a common annealing pattern).

    Errors: where diffsort fails an ``assert`` (input not 2-D, wrong row length,
    input on another device, conflicting ``interpolation_type``) this raises
    :class:`DiffSortInputError`, where it raises ``NotImplementedError`` (unknown
    network, unknown distribution at call time) :class:`UnsupportedSortingOption`;
    both are also ``ValueError``\\ s with a message naming the argument.

    What differs from diffsort:

    * ``sorting_network`` holds rankssl's comparator layers (index vectors), not
      diffsort's dense ``[split_a, split_b, combine_min, combine_max]`` matrices.
    * ``steepness`` must be positive and finite and ``size`` at least 2 (diffsort
      accepts steepness <= 0, which does not sort, and fails later for size 1).
    * ``sorting_network_type='bitonic_mirrored'`` is also offered: it sorts every
      ``size``, while diffsort's ``bitonic`` wiring (reproduced exactly here, numbers
      included) does not for some sizes that are not powers of two.

    Args:
        sorting_network_type: ``"bitonic"`` or ``"odd_even"`` (or ``"bitonic_mirrored"``).
        size: n, the number of values in each row.
        device: where the network lives; inputs must be on this device.
        steepness: inverse temperature of the relaxation.
        art_lambda: exponent of the ``logistic_phi`` relaxation.
        interpolation_type: deprecated alias of ``distribution`` (as in diffsort).
        distribution: ``cauchy`` (default), ``logistic``, ``logistic_phi``,
            ``gaussian``, ``reciprocal`` or ``optimal``.

    Forward:
        vectors: (batch, size) floating tensor.

    Returns:
        ``(sorted, P)``: the relaxed ascending values (batch, size) and the relaxed
        permutation matrices (batch, size, size), ``sorted = vectors @ P`` (``P[b, i, r]``:
        weight of input ``i`` at rank ``r``).

    Example:
        >>> import torch
        >>> from rankssl.ops import DiffSortNet
        >>> sorter = DiffSortNet("bitonic", 4, steepness=50.0)
        >>> values, P = sorter(torch.tensor([[3.0, 1.0, 4.0, 2.0]]))
        >>> P.argmax(dim=-1)  # rank of each input
        tensor([[2, 0, 3, 1]])
        >>> sorter.steepness = 5.0  # anneal: used from the next call on
    """

    def __init__(
        self,
        sorting_network_type: str,
        size: int,
        device: str = "cpu",
        steepness: float = 10.0,
        art_lambda: float = 0.25,
        interpolation_type: Optional[str] = None,
        distribution: str = "cauchy",
    ) -> None:
        super().__init__()
        if sorting_network_type not in DIFFSORT_NETWORKS:
            raise UnsupportedSortingOption(
                f"Sorting network `{sorting_network_type}` unknown: sorting_network_type must be one of "
                f"{', '.join(DIFFSORT_NETWORKS)}."
            )
        size = check_positive_int(size, "size", minimum=2)
        if interpolation_type is not None:
            if not (distribution is None or distribution == "cauchy" or distribution == interpolation_type):
                raise DiffSortInputError(
                    f"Two different distributions have been set (distribution={distribution!r} and "
                    f"interpolation_type={interpolation_type!r}); interpolation_type is a deprecated alias "
                    f"of distribution: set only distribution."
                )
            distribution = interpolation_type
        self.sorting_network_type = sorting_network_type
        self.size = size
        self.device = torch.empty(0, device=device).device
        self.sorting_network = get_network(sorting_network_type, size, self.device)
        self.steepness = steepness
        self.art_lambda = art_lambda
        self.distribution = distribution

    def forward(self, vectors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        check_tensor(vectors, "vectors", shape_hint=f"(batch, {self.size})")
        if vectors.dim() != 2 or vectors.shape[1] != self.size:
            raise DiffSortInputError(
                f"vectors must have shape (batch, {self.size}), got {tuple(vectors.shape)} "
                f"(rankssl.ops.soft_sort sorts the last dimension of any shape)."
            )
        if vectors.device != self.device:
            raise DiffSortInputError(
                f"The sorting network is on device {self.device} while vectors are on device "
                f"{vectors.device}; they need to be on the same device."
            )
        if self.distribution not in RELAXATIONS:
            raise UnsupportedSortingOption(
                f"distribution `{self.distribution}` unknown: expected one of {', '.join(RELAXATIONS)}."
            )
        check_relaxation(self.distribution, self.steepness, self.art_lambda)
        return soft_sort(vectors, self.sorting_network_type, self.distribution, self.steepness, self.art_lambda)

    def extra_repr(self) -> str:
        return (
            f"sorting_network_type={self.sorting_network_type!r}, size={self.size}, "
            f"steepness={self.steepness}, distribution={self.distribution!r}"
        )
