"""Singular spectrum and effective rank against NumPy."""

import numpy as np
import pytest
import torch

from rankssl.ops import effective_rank, singular_spectrum


def test_spectrum_matches_numpy():
    x = torch.randn(50, 6)
    expected = np.linalg.svd(x.numpy().astype(np.float64) - x.numpy().astype(np.float64).mean(0), compute_uv=False)
    np.testing.assert_allclose(singular_spectrum(x).numpy(), expected, rtol=1e-10)
    raw = np.linalg.svd(x.numpy().astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(singular_spectrum(x, center=False).numpy(), raw, rtol=1e-10)
    unit = x / x.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(singular_spectrum(x, normalize=True).numpy(), singular_spectrum(unit).numpy(), rtol=1e-6)


def test_effective_rank_known_values():
    assert effective_rank(torch.ones(5), from_singular_values=True) == pytest.approx(5.0)
    assert effective_rank(torch.tensor([3.0, 3.0, 0.0]), from_singular_values=True) == pytest.approx(2.0)
    s = np.array([4.0, 2.0, 1.0, 1.0])
    p = s / s.sum()
    assert effective_rank(torch.tensor(s), from_singular_values=True) == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert effective_rank(torch.zeros(3), from_singular_values=True) == 0.0


def test_effective_rank_detects_collapse():
    torch.manual_seed(0)
    full = torch.randn(400, 16)
    collapsed = torch.randn(400, 2) @ torch.randn(2, 16)
    assert effective_rank(full) > 13.0
    assert 1.0 <= effective_rank(collapsed) <= 2.0 + 1e-6
    # Invariant to rotation and scale, as a spectrum measure should be.
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    assert effective_rank(3 * full @ q) == pytest.approx(effective_rank(full), rel=1e-6)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: singular_spectrum(torch.randn(5)), ValueError, "num_samples, dim"),
        (lambda: singular_spectrum(torch.ones(3, 2, dtype=torch.long)), TypeError, "floating"),
        (lambda: singular_spectrum(torch.randn(1, 4)), ValueError, "at least 2"),
        (lambda: singular_spectrum(torch.tensor([[0.0, float("nan")], [1.0, 2.0]])), ValueError, "NaN"),
        (lambda: effective_rank(torch.tensor([1.0, -1.0]), from_singular_values=True), ValueError, "non-negative"),
        (lambda: effective_rank(torch.ones(2, 2), from_singular_values=True), ValueError, "1-D"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
