"""The fused CPU kernels' own helper threads: any thread count gives bitwise the result of
one thread (each row is computed by the same code whichever thread takes its block), and
more threads than cores or than blocks is harmless."""

import pytest
import torch

from rankssl.ops import fused, get_network
from rankssl.ops.fused import build

pytestmark = pytest.mark.skipif(
    build.disabled() or build._compiler() is None, reason="fused kernels disabled or no C++ compiler"
)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _big_enough(n: int, layers) -> int:
    """Rows whose work passes the threshold above which the kernels use several threads."""
    comparators = sum(layer.num_comparators for layer in layers)
    return fused._PARALLEL_WORK // comparators + 37  # not a multiple of the block size


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_groco_kernel_is_bitwise_equal_at_any_thread_count(threads, dtype):
    layers = get_network("odd_even", 12)
    scores = torch.randn(_big_enough(12, layers), 12, dtype=dtype, generator=torch.Generator().manual_seed(0))
    results = []
    for count in (1, 2, 7):
        threads(count)
        x = scores.clone().requires_grad_(True)
        loss = fused.group_ordering_mass_loss(x, 5, layers, "cauchy", 4.0, 0.25)
        assert loss is not None
        (grad,) = torch.autograd.grad(loss.sum(), x)
        results.append((loss, grad))
    for loss, grad in results[1:]:
        assert torch.equal(loss, results[0][0]) and torch.equal(grad, results[0][1])


def test_permutation_kernel_is_bitwise_equal_at_any_thread_count(threads):
    layers = get_network("bitonic", 16)
    rows = _big_enough(16, layers)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(rows, 16, dtype=torch.float64, generator=generator)
    v = torch.randn(16, 3, dtype=torch.float64, generator=generator)
    results = []
    for count in (1, 3):
        threads(count)
        xs, vs = x.clone().requires_grad_(True), v.clone().requires_grad_(True)
        out = fused.permutation_matmul(xs, vs, layers, "logistic", 2.0, 0.25)
        grads = torch.autograd.grad((out * out).sum(), (xs, vs))
        results.append((out, *grads))
    for got, want in zip(results[1], results[0]):
        assert torch.equal(got, want)
