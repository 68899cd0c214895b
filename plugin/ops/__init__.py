"""Layer 1: pure-torch operators (sorting networks, AP estimators, distributed gather).

Nothing here imports a host framework.
"""

from rankssl.ops.average_precision import (
    AP_ESTIMATORS,
    average_precision,
    check_ap_estimator,
    exact_average_precision,
)
from rankssl.ops.networks import NETWORKS, get_network
from rankssl.ops.relaxations import RELAXATIONS
from rankssl.ops.sorting import DiffSortNetwork, soft_permutation_matmul, soft_sort
from rankssl.ops.spectrum import effective_rank, singular_spectrum

__all__ = [
    "NETWORKS",
    "RELAXATIONS",
    "DiffSortNetwork",
    "get_network",
    "soft_permutation_matmul",
    "soft_sort",
]
__all__ += ["effective_rank", "singular_spectrum"]
__all__ += ["AP_ESTIMATORS", "average_precision", "check_ap_estimator", "exact_average_precision"]

from rankssl.ops.diffsort_compat import DiffSortNet  # noqa: E402  (diffsort's API, issue 14)

__all__ += ["DiffSortNet"]
