"""Relaxed comparators: the probability ``alpha`` that a comparator keeps its order.

For a comparator on values ``(a, b)``, ``alpha = f(b - a)`` is the weight the relaxed
minimum gives to ``a``: ``min' = alpha * a + (1 - alpha) * b`` and
``max' = (1 - alpha) * a + alpha * b``. With ``alpha`` a hard step the comparator is
exact. The relaxations are those of Petersen et al., ICML 2021 (``logistic``,
``logistic_phi``) and ICLR 2022, "Monotonic Differentiable Sorting Networks"
(``cauchy``, ``reciprocal``, ``gaussian``, ``optimal``); ``cauchy`` is monotonic and
the one GroCo uses.
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import torch

from rankssl.ops.validation import check_choice, check_float

_SQRT_HALF = math.sqrt(0.5)


def _logistic(d: torch.Tensor, steepness: float, art_lambda: float) -> torch.Tensor:
    return torch.sigmoid(d * steepness)


def _logistic_phi(d: torch.Tensor, steepness: float, art_lambda: float) -> torch.Tensor:
    # The ART trick: divide by |d|^lambda so that close values get a steeper comparator.
    return torch.sigmoid(d * steepness / (d.abs() + 1e-10).pow(art_lambda))


def _gaussian(d: torch.Tensor, steepness: float, art_lambda: float) -> torch.Tensor:
    # Normal CDF with standard deviation 1 / steepness.
    return 0.5 + 0.5 * torch.erf(d * (steepness * _SQRT_HALF))


def _reciprocal(d: torch.Tensor, steepness: float, art_lambda: float) -> torch.Tensor:
    v = steepness * d
    return 0.5 * (v / (2 + v.abs()) + 1)


def _cauchy(d: torch.Tensor, steepness: float, art_lambda: float) -> torch.Tensor:
    return torch.atan(steepness * d) / math.pi + 0.5


def _optimal(d: torch.Tensor, steepness: float, art_lambda: float) -> torch.Tensor:
    # The piecewise "optimal" monotonic sigmoid of the ICLR 2022 paper.
    v = steepness * d
    outside = (v > 0.25).to(v.dtype) - (v < -0.25).to(v.dtype)
    return v.clamp(-0.25, 0.25) + 0.5 + outside * (0.25 - 1 / 16 / (v.abs() + 1e-10))


RELAXATIONS: Dict[str, Callable[[torch.Tensor, float, float], torch.Tensor]] = {
    "logistic": _logistic,
    "logistic_phi": _logistic_phi,
    "gaussian": _gaussian,
    "reciprocal": _reciprocal,
    "cauchy": _cauchy,
    "optimal": _optimal,
}


def _d_logistic(d, alpha, steepness, art_lambda):
    return alpha * (1 - alpha) * steepness


def _d_logistic_phi(d, alpha, steepness, art_lambda):
    scale = d.abs() + 1e-10
    # d/dd [s d scale^-lambda] = s scale^-lambda (1 - lambda |d| / scale)
    inner = steepness * scale.pow(-art_lambda) * (1 - art_lambda * d.abs() / scale)
    return alpha * (1 - alpha) * inner


def _d_gaussian(d, alpha, steepness, art_lambda):
    return steepness / math.sqrt(2 * math.pi) * torch.exp(-0.5 * (steepness * d) ** 2)


def _d_reciprocal(d, alpha, steepness, art_lambda):
    return steepness / (2 + (steepness * d).abs()) ** 2


def _d_cauchy(d, alpha, steepness, art_lambda):
    return steepness / (math.pi * (1 + (steepness * d) ** 2))


def _d_optimal(d, alpha, steepness, art_lambda):
    v = (steepness * d).abs()
    return steepness * torch.where(v <= 0.25, torch.ones_like(v), 1 / (16 * (v + 1e-10) ** 2))


#: d alpha / d (b - a) for each relaxation, given (d, alpha, steepness, art_lambda).
RELAXATION_DERIVATIVES: Dict[str, Callable[..., torch.Tensor]] = {
    "logistic": _d_logistic,
    "logistic_phi": _d_logistic_phi,
    "gaussian": _d_gaussian,
    "reciprocal": _d_reciprocal,
    "cauchy": _d_cauchy,
    "optimal": _d_optimal,
}


def check_relaxation(distribution: str, steepness: float, art_lambda: float) -> None:
    """Raise a ``ValueError`` for an unknown relaxation, a steepness that is not a positive
    finite number or a negative ``art_lambda``."""
    check_choice(distribution, "distribution", RELAXATIONS, "relaxation")
    check_float(steepness, "steepness", 0.0)
    check_float(art_lambda, "art_lambda", 0.0, inclusive=True)


def swap_probability(
    a: torch.Tensor, b: torch.Tensor, distribution: str, steepness: float, art_lambda: float
) -> torch.Tensor:
    """``alpha = f(b - a)`` for comparators on ``(a, b)``, any matching shapes.

    Half-precision inputs are promoted to float32 for the relaxation, then ``alpha``
    is cast back to the input dtype.
    """
    d = b - a
    compute_dtype = torch.float32 if d.dtype in (torch.float16, torch.bfloat16) else d.dtype
    alpha = RELAXATIONS[distribution](d.to(compute_dtype), steepness, art_lambda)
    return alpha.to(d.dtype)
