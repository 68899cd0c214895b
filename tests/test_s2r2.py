"""S2R2Loss (lightly-style): reference loop, training signal, bad input, 2-process gather."""

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from dist_utils import run_distributed
from rankssl import S2R2Loss
from rankssl.losses import ranking_ap_loss


def _reference_exact_loss(views):
    """1 - mean exact AP, one sklearn call per (view, image) query."""
    num_views, batch_size = len(views), views[0].shape[0]
    z = F.normalize(torch.cat(views).detach(), dim=1)
    image = torch.arange(batch_size).repeat(num_views)
    aps = []
    for q in range(z.shape[0]):
        others = torch.arange(z.shape[0]) != q
        scores = (z[others] @ z[q]).numpy()
        aps.append(average_precision_score((image[others] == image[q]).numpy(), scores))
    return 1 - float(sum(aps) / len(aps))


@pytest.mark.parametrize(
    "estimator, settings, tolerance",
    [
        ("binned", dict(num_bins=4000), 2e-3),
        ("sigmoid", dict(temperature=1e-4), 2e-3),
        ("sorting", dict(steepness=3000.0), 1e-2),
    ],
)
def test_loss_tends_to_one_minus_exact_mean_ap(estimator, settings, tolerance):
    views = [torch.randn(6, 5) for _ in range(4)]
    loss = S2R2Loss(estimator, **settings)(views)
    assert abs(float(loss) - _reference_exact_loss(views)) < tolerance


def test_matches_functional_core_with_explicit_masks():
    views = [torch.randn(5, 8) for _ in range(3)]
    z = torch.cat(views)
    image = torch.arange(5).repeat(3)
    not_self = ~torch.eye(15, dtype=torch.bool)
    relevance = (image[:, None] == image[None, :]) & not_self
    expected = ranking_ap_loss(z, z, relevance, not_self, "sigmoid", temperature=0.05).mean()
    torch.testing.assert_close(S2R2Loss("sigmoid", temperature=0.05)(views), expected)


def test_positional_and_list_calls_agree():
    views = [torch.randn(8, 4) for _ in range(3)]
    loss_fn = S2R2Loss()
    torch.testing.assert_close(loss_fn(*views), loss_fn(views))
    torch.testing.assert_close(loss_fn(*views), loss_fn(tuple(views)))


def test_aligned_views_score_lower_than_random_ones():
    base = torch.randn(16, 32)
    aligned = [base + 0.05 * torch.randn_like(base) for _ in range(4)]
    random = [torch.randn_like(base) for _ in range(4)]
    # The sorting relaxation (Cauchy, steepness 100) blurs near-ties among the aligned views.
    for estimator, aligned_below in (("binned", 0.05), ("sigmoid", 0.05), ("sorting", 0.2)):
        loss_fn = S2R2Loss(estimator)
        assert loss_fn(aligned) < aligned_below < 0.5 < loss_fn(random)


def test_training_makes_views_retrieve_each_other():
    torch.manual_seed(1)
    images = torch.randn(24, 10)
    encoder = torch.nn.Linear(10, 8)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=0.05)
    loss_fn = S2R2Loss()

    def views():
        return [encoder(images + 0.8 * torch.randn_like(images)) for _ in range(4)]

    with torch.no_grad():
        before = float(loss_fn(views()))
    for _ in range(25):
        optimizer.zero_grad()
        loss = loss_fn(views())
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(loss_fn(views()))
    assert after < before - 0.1


def test_half_precision_views_compute_in_float32():
    views = [torch.randn(6, 8) for _ in range(3)]
    full = S2R2Loss()(views)
    half = S2R2Loss()([v.bfloat16() for v in views])
    assert half.dtype == torch.float32
    assert abs(float(full) - float(half)) < 0.05


def test_gradients_finite_for_identical_views():
    views = [torch.ones(4, 6, requires_grad=True) for _ in range(3)]
    for estimator in ("binned", "sigmoid", "sorting", "fastap"):
        loss = S2R2Loss(estimator)(views)
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(v.grad).all() for v in views)


def test_chunk_size_does_not_change_the_loss():
    views = [torch.randn(8, 8, requires_grad=True) for _ in range(3)]
    small = S2R2Loss("sigmoid", chunk_size=5)(views)
    grads_small = torch.autograd.grad(small, views)
    large = S2R2Loss("sigmoid", chunk_size=1000)(views)
    grads_large = torch.autograd.grad(large, views)
    torch.testing.assert_close(small, large)
    for a, b in zip(grads_small, grads_large):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: S2R2Loss()(torch.randn(4, 3)), ValueError, "at least 2 views"),
        (lambda: S2R2Loss()([torch.randn(4, 3)]), ValueError, "at least 2 views"),
        (lambda: S2R2Loss()(torch.randn(1, 3), torch.randn(1, 3)), ValueError, "batch of 1"),
        (lambda: S2R2Loss()(torch.randn(4, 3), torch.randn(5, 3)), ValueError, "same shape"),
        (lambda: S2R2Loss()(torch.randn(4, 3), torch.randn(4, 3, 1)), ValueError, "batch_size, dim"),
        (lambda: S2R2Loss()(torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long)), TypeError, "floating"),
        (lambda: S2R2Loss("nope"), ValueError, "Unknown AP estimator"),
        (lambda: S2R2Loss(similarity="l2"), ValueError, "Unknown similarity"),
        (lambda: S2R2Loss("sigmoid", temperature=0), ValueError, "temperature"),
        (lambda: S2R2Loss(num_bins=0), ValueError, "num_bins"),
        (lambda: S2R2Loss(chunk_size=0), ValueError, "chunk_size"),
        (
            lambda: ranking_ap_loss(torch.randn(3, 4), torch.randn(5, 4), torch.zeros(3, 5, dtype=torch.bool)),
            ValueError,
            "no relevant",
        ),
        (
            lambda: ranking_ap_loss(torch.randn(3, 4), torch.randn(5, 6), torch.ones(3, 5, dtype=torch.bool)),
            ValueError,
            "dim",
        ),
        (
            lambda: ranking_ap_loss(torch.randn(3, 4), torch.randn(5, 4), torch.ones(3, 4, dtype=torch.bool)),
            ValueError,
            "shape of scores",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _distributed_s2r2(rank, world_size, views, estimators):
    results = []
    for estimator in estimators:
        local = [v[rank * 4 : (rank + 1) * 4].clone().requires_grad_(True) for v in views]
        loss = S2R2Loss(estimator, gather_distributed=True)(local)
        loss.backward()
        results.append((loss.detach(), [v.grad for v in local]))
    return results


@pytest.mark.slow
@pytest.mark.dist
def test_gather_distributed_matches_single_process():
    views = [torch.randn(8, 6) for _ in range(3)]
    estimators = ["binned", "sigmoid"]
    per_rank = run_distributed(_distributed_s2r2, 2, views, estimators)
    for index, estimator in enumerate(estimators):
        results = [r[index] for r in per_rank]
        full = [v.clone().requires_grad_(True) for v in views]
        expected = S2R2Loss(estimator)(full)
        expected.backward()
        # Each process averages over its own queries against the whole database; the mean
        # of the processes' losses is the single-process loss, and each process's gradient
        # is that of the sum of all processes' losses: world_size times the global one.
        torch.testing.assert_close(sum(r[0] for r in results) / 2, expected.detach(), atol=1e-6, rtol=0)
        for rank, (_, grads) in enumerate(results):
            for grad, full_view in zip(grads, full):
                torch.testing.assert_close(
                    grad / 2, full_view.grad[rank * 4 : (rank + 1) * 4], atol=1e-6, rtol=1e-5
                )


@pytest.mark.slow
def test_ap_benchmark_quick():
    """benchmarks/bench_ap.py at toy size, so that it cannot rot."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, os.path.join(root, "benchmarks", "bench_ap.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 36 |" in result.stdout and "| binned |" in result.stdout
