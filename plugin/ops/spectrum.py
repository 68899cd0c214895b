"""Dimensional-collapse diagnostics: singular spectrum and effective rank of embeddings.

Effective rank (Roy & Vetterli, "The effective rank: a measure of effective
dimensionality", EUSIPCO 2007): with singular values s_1..s_n of the (centred)
embedding matrix and p_k = s_k / sum(s), erank = exp(-sum_k p_k log p_k). It lies in
[1, min(N, D)], equals r for r equal non-zero singular values, and falls as the
embeddings collapse onto fewer directions (Jing et al., ICLR 2022, use the spectrum for
the same purpose). Pure torch.
"""

from __future__ import annotations

import torch

from rankssl.ops.validation import check_finite, check_tensor

__all__ = ["effective_rank", "singular_spectrum"]


def singular_spectrum(embeddings: torch.Tensor, center: bool = True, normalize: bool = False) -> torch.Tensor:
    """Singular values, descending, of an (N, D) embedding matrix.

    Args:
        embeddings: (N, D) floating tensor, N >= 2.
        center: subtract the mean embedding first (the spectrum of the covariance).
        normalize: L2-normalise each row first (the geometry a cosine loss sees).

    Returns:
        (min(N, D),) float64 singular values in descending order.

    Example:
        >>> import torch
        >>> from rankssl.ops import singular_spectrum
        >>> singular_spectrum(torch.randn(100, 8)).shape
        torch.Size([8])
    """
    check_tensor(embeddings, "embeddings", dims=(2,), shape_hint="(num_samples, dim)")
    if embeddings.shape[0] < 2:
        raise ValueError(f"The spectrum needs at least 2 embeddings, got {embeddings.shape[0]}.")
    check_finite([("embeddings", embeddings)])
    x = embeddings.detach().double()
    if normalize:
        x = torch.nn.functional.normalize(x, dim=1)
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    return torch.linalg.svdvals(x)


def effective_rank(values: torch.Tensor, from_singular_values: bool = False, eps: float = 1e-12) -> float:
    """exp(entropy of the normalised singular values).

    Args:
        values: an (N, D) embedding matrix (centred internally, see
            :func:`singular_spectrum`) or, with ``from_singular_values=True``, a 1-D
            tensor of non-negative singular values.
        eps: singular values are treated as zero below ``eps * max``.

    Returns:
        The effective rank as a Python float; 0.0 when every singular value is 0
        (all embeddings identical: complete collapse).

    Example:
        >>> import torch
        >>> from rankssl.ops import effective_rank
        >>> round(effective_rank(torch.ones(4), from_singular_values=True), 6)
        4.0
    """
    if from_singular_values:
        s = torch.as_tensor(values).detach().double()
        if s.dim() != 1:
            raise ValueError(f"singular values must be a 1-D tensor, got shape {tuple(s.shape)}.")
        if bool((s < 0).any()) or not bool(torch.isfinite(s).all()):
            raise ValueError("singular values must be finite and non-negative.")
    else:
        s = singular_spectrum(values)
    if s.numel() == 0 or float(s.max()) <= 0:
        return 0.0
    s = s[s > eps * s.max()]
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))
