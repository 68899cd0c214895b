"""rankssl.ops sorting networks against diffsort, autograd and hard sorting."""

import warnings

import diffsort
import pytest
import torch

from rankssl.ops import RELAXATIONS, DiffSortNetwork, get_network, soft_permutation_matmul, soft_sort

SIZES = list(range(2, 34)) + [64, 128]
REFERENCE_NETWORKS = ["odd_even", "bitonic"]


def _reference(network, n, distribution, steepness, dtype):
    sorter = diffsort.DiffSortNet(network, n, steepness=steepness, distribution=distribution)
    sorter.sorting_network = [[m.to(dtype) for m in layer] for layer in sorter.sorting_network]
    return sorter


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("distribution", sorted(RELAXATIONS))
@pytest.mark.parametrize("network", REFERENCE_NETWORKS)
def test_matches_diffsort(network, distribution, dtype):
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    # diffsort's NormalCDF backward holds sigma as a float32 tensor, so its gaussian
    # gradients are float32-accurate only; gradcheck below covers ours in float64.
    grad_tol = 1e-5 if distribution == "gaussian" else tol
    if distribution == "logistic_phi" and dtype == torch.float32:
        # d/dd of sigmoid(s d / |d|^lambda) is ill-conditioned at near-ties: float32
        # rounding of d (1e-7 relative) moves gradients by more than 1e-5 there. The
        # float64 run of this test holds both implementations to 1e-10.
        grad_tol = 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffsort's bitonic wiring warns for some sizes
        for n in SIZES:
            x = torch.randn(4, n, dtype=dtype, requires_grad=True)
            ref_values, ref_P = _reference(network, n, distribution, 2.0, dtype)(x)
            values, P = soft_sort(x, network, distribution, steepness=2.0)
            # Sorted values of order one accumulate float32 rounding over n layers; at
            # n = 128 diffsort's own error against float64 reaches 1e-5 (ours is smaller,
            # see test_float32_values_closer_to_float64_than_diffsort).
            torch.testing.assert_close(values, ref_values, atol=tol, rtol=tol)
            torch.testing.assert_close(P, ref_P, atol=tol, rtol=0)
            # Weights scaled so that the gradients are of order one.
            weights_v, weights_P = torch.randn_like(values) / n, torch.randn_like(P) / n
            (ref_grad,) = torch.autograd.grad((ref_values * weights_v).sum() + (ref_P * weights_P).sum(), x, retain_graph=True)
            (grad,) = torch.autograd.grad((values * weights_v).sum() + (P * weights_P).sum(), x)
            torch.testing.assert_close(grad, ref_grad, atol=grad_tol, rtol=grad_tol, msg=f"n={n}")
            v = torch.randn(n, 3, dtype=dtype)
            Pv = soft_permutation_matmul(x, v, network, distribution, steepness=2.0)
            torch.testing.assert_close(Pv, ref_P @ v, atol=tol * 10, rtol=0)  # sums of n terms
            weights_Pv = torch.randn_like(Pv) / n
            (ref_grad,) = torch.autograd.grad(((ref_P @ v) * weights_Pv).sum(), x)
            (grad,) = torch.autograd.grad((Pv * weights_Pv).sum(), x)
            torch.testing.assert_close(grad, ref_grad, atol=grad_tol, rtol=grad_tol, msg=f"n={n}")


def test_float32_values_closer_to_float64_than_diffsort():
    x = torch.randn(16, 128)
    exact, _ = soft_sort(x.double(), "odd_even", "logistic", 2.0, return_permutation=False)
    ours, _ = soft_sort(x, "odd_even", "logistic", 2.0, return_permutation=False)
    theirs, _ = _reference("odd_even", 128, "logistic", 2.0, torch.float32)(x)
    assert (ours.double() - exact).abs().max() <= (theirs.double() - exact).abs().max()


@pytest.mark.parametrize("distribution", sorted(RELAXATIONS))
@pytest.mark.parametrize("network", ["odd_even", "bitonic", "bitonic_mirrored"])
def test_gradcheck(network, distribution):
    for n in (3, 6):
        x = torch.randn(2, n, dtype=torch.float64, requires_grad=True)
        v = torch.randn(n, 2, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: soft_sort(t, network, distribution, 1.5), (x,))
        assert torch.autograd.gradcheck(
            lambda t, w: soft_permutation_matmul(t, w, network, distribution, 1.5), (x, v)
        )


@pytest.mark.parametrize("network", ["odd_even", "bitonic", "bitonic_mirrored"])
def test_permutation_is_doubly_stochastic(network):
    for n in (2, 5, 13, 32, 33):
        _, P = soft_sort(torch.randn(8, n, dtype=torch.float64) * 3, network, "cauchy", 1.0)
        assert (P >= -1e-12).all()
        torch.testing.assert_close(P.sum(-1), torch.ones(8, n, dtype=torch.float64))
        torch.testing.assert_close(P.sum(-2), torch.ones(8, n, dtype=torch.float64))


def _distinct_rows(rows, n):
    return torch.stack([torch.randperm(n) for _ in range(rows)]).double()


@pytest.mark.parametrize("network", ["odd_even", "bitonic_mirrored"])
def test_steep_network_is_a_hard_sort(network):
    for n in SIZES + [100]:
        x = _distinct_rows(20, n)
        values, P = soft_sort(x, network, "cauchy", steepness=1e8)
        ranks = x.argsort(-1).argsort(-1)
        assert torch.equal(P.argmax(-1), ranks), n
        torch.testing.assert_close(values, x.sort(-1).values, atol=1e-5, rtol=0)


def test_diffsort_bitonic_wiring_sorts_powers_of_two_and_warns_otherwise():
    for n in (2, 4, 8, 16, 32, 64, 128):
        x = _distinct_rows(20, n)
        _, P = soft_sort(x, "bitonic", "cauchy", steepness=1e8)
        assert torch.equal(P.argmax(-1), x.argsort(-1).argsort(-1))
    # n = 22: the reference's own wiring fails to sort, and ours (identical) warns.
    x = _distinct_rows(50, 22)
    _, ref_P = diffsort.DiffSortNet("bitonic", 22, steepness=1e8)(x.float())
    assert not torch.equal(ref_P.argmax(-1), x.argsort(-1).argsort(-1))
    from rankssl.ops import networks

    networks._build_cpu.cache_clear()
    networks._DEVICE_CACHE.clear()
    with pytest.warns(UserWarning, match="bitonic_mirrored"):
        soft_sort(x, "bitonic")


def test_layer_counts():
    assert len(get_network("odd_even", 13)) == 13
    for n in (8, 13, 16):  # N = 16: log2 N (log2 N + 1) / 2 = 10 layers
        assert len(get_network("bitonic_mirrored", n)) == (6 if n == 8 else 10)


def test_network_is_cached():
    assert get_network("odd_even", 11) is get_network("odd_even", 11)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    x = torch.randn(16, 13)
    values, P = soft_sort(x.to(dtype), steepness=1.0)
    assert values.dtype == dtype and P.dtype == dtype
    ref_values, ref_P = soft_sort(x, steepness=1.0)
    torch.testing.assert_close(P.float(), ref_P, atol=2e-2, rtol=0)
    Pv = soft_permutation_matmul(x.to(dtype), torch.ones(13, 1), steepness=1.0)
    assert torch.isfinite(Pv.float()).all()


def test_leading_batch_dimensions_and_per_row_vectors():
    x = torch.randn(2, 3, 7, dtype=torch.float64)
    values, P = soft_sort(x)
    flat_values, flat_P = soft_sort(x.reshape(6, 7))
    torch.testing.assert_close(values.reshape(6, 7), flat_values)
    torch.testing.assert_close(P.reshape(6, 7, 7), flat_P)
    v = torch.randn(2, 3, 7, 4, dtype=torch.float64)
    torch.testing.assert_close(soft_permutation_matmul(x, v), P @ v)


def test_module_matches_function():
    x = torch.randn(5, 9)
    sorter = DiffSortNetwork("bitonic_mirrored", 9, steepness=3.0, distribution="logistic")
    values, P = sorter(x)
    ref_values, ref_P = soft_sort(x, "bitonic_mirrored", "logistic", 3.0)
    torch.testing.assert_close(P, ref_P)
    with pytest.raises(ValueError, match="rows of 9 values"):
        sorter(torch.randn(5, 8))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: soft_sort(torch.arange(6).view(2, 3)), TypeError, "floating-point"),
        (lambda: soft_sort(torch.randn(4, 1)), ValueError, "n >= 2"),
        (lambda: soft_sort(torch.randn(4, 3), network="merge"), ValueError, "Unknown sorting network"),
        (lambda: soft_sort(torch.randn(4, 3), distribution="tanh"), ValueError, "Unknown relaxation"),
        (lambda: soft_sort(torch.randn(4, 3), steepness=0.0), ValueError, "steepness"),
        (lambda: soft_sort(torch.randn(4, 3), steepness=-1.0), ValueError, "steepness"),
        (lambda: soft_permutation_matmul(torch.randn(4, 3), torch.ones(4, 1)), ValueError, "v must have shape"),
        (lambda: soft_sort([1.0, 2.0]), TypeError, "torch.Tensor"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = torch.randn(32, 13)
    values, P = soft_sort(x.cuda())
    ref_values, ref_P = soft_sort(x)
    torch.testing.assert_close(P.cpu(), ref_P, atol=1e-5, rtol=0)


def test_permutation_memory_estimate_and_refusal_names_the_cheaper_options():
    from rankssl.ops.sorting import permutation_memory

    x = torch.randn(2, 4)
    assert permutation_memory(x, 4) == 3 * 2 * 16 * 4  # a few matrices at a time
    assert permutation_memory(x.requires_grad_(True), 4) == (2 * 4 + 3) * 2 * 16 * 4  # two per layer kept
    with torch.no_grad():
        assert permutation_memory(x, 4) == 3 * 2 * 16 * 4
    big = torch.randn(1, 64, dtype=torch.float64, requires_grad=True).expand(400000, 64)
    with pytest.raises(ValueError) as error:
        soft_sort(big)  # about 1 TB for P with autograd: refused before any work
    message = str(error.value)
    for words in ("(400000, 64)", "odd_even network, 64 layers", "GiB", "one kept per layer for autograd",
                  "return_permutation=False", "soft_permutation_matmul", "'bitonic_mirrored' (21 layers instead of 64)"):
        assert words in message, words
    values, none = soft_sort(big[:3], return_permutation=False)
    assert none is None and values.shape == (3, 64)


@pytest.mark.parametrize("network", ["odd_even", "bitonic", "bitonic_mirrored"])
def test_network_depth_bounds_the_built_network_without_building_it(network):
    from rankssl.ops.networks import get_network, network_depth

    for n in (2, 3, 5, 8, 13, 64, 100, 257):
        built = len(get_network(network, n))
        assert built <= network_depth(network, n) <= built + 1, (network, n)
    assert network_depth("bitonic_mirrored", 4096) == 78 and network_depth("odd_even", 4096) == 4096


def test_soft_sort_refuses_hours_of_cpu_work_up_front(monkeypatch):
    import time

    from rankssl.ops import sorting

    start = time.perf_counter()
    with pytest.raises(ValueError) as error:
        soft_sort(torch.randn(1, 4096))  # 192 MiB of matrices, but 2^36 entry updates: over an hour
    assert time.perf_counter() - start < 5.0  # refused before the network is built or any matrix made
    message = str(error.value)
    for words in ("(1, 4096)", "odd_even network, 4096 layers", "6.87e+10 matrix-entry updates",
                  "MAX_CPU_PERMUTATION_WORK", "return_permutation=False", "soft_permutation_matmul",
                  "(78 layers instead of 4096)"):
        assert words in message, words
    values, none = soft_sort(torch.randn(1, 4096), network="bitonic_mirrored", return_permutation=False)
    assert none is None and values.shape == (1, 4096)
    # The limit is a module attribute a user can raise; the check reads it per call.
    small = torch.randn(2, 16)
    monkeypatch.setattr(sorting, "MAX_CPU_PERMUTATION_WORK", 2 * 16 * 16 * 16 - 1)
    with pytest.raises(ValueError, match="matrix-entry updates"):
        soft_sort(small)
    monkeypatch.setattr(sorting, "MAX_CPU_PERMUTATION_WORK", 2 * 16 * 16 * 16)
    assert soft_sort(small)[1].shape == (2, 16, 16)
