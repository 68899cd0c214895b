"""Layer 1: pure-torch operators (sorting networks, AP estimators, distributed gather).

Nothing here imports a host framework.
"""

from rankssl.ops.average_precision import (
    AP_ESTIMATORS,
    average_precision,
    check_ap_estimator,
    exact_average_precision,
)
from rankssl.ops.diffsort_compat import DiffSortNet
from rankssl.ops.networks import NETWORKS, get_network
from rankssl.ops.relaxations import RELAXATIONS
from rankssl.ops.sorting import DiffSortNetwork, soft_permutation_matmul, soft_sort
from rankssl.ops.spectrum import effective_rank, singular_spectrum

__all__ = [
    "AP_ESTIMATORS",
    "NETWORKS",
    "RELAXATIONS",
    "DiffSortNet",
    "DiffSortNetwork",
    "average_precision",
    "check_ap_estimator",
    "effective_rank",
    "exact_average_precision",
    "get_network",
    "singular_spectrum",
    "soft_permutation_matmul",
    "soft_sort",
]
