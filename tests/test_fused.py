"""The fused CPU kernels (rankssl.ops.fused) against the pure-torch reference path."""

import subprocess
import sys
import warnings

import pytest
import torch

from rankssl.losses import GroCoLoss, group_ordering_loss
from rankssl.ops import NETWORKS, RELAXATIONS, fused, get_network, soft_permutation_matmul
from rankssl.ops.fused import build
from rankssl.ops.average_precision import average_precision
from rankssl.ops.permutation_matmul import composed_permutation_matmul, reference_permutation_matmul

needs_kernels = pytest.mark.skipif(
    build.disabled() or build._compiler() is None, reason="fused kernels disabled or no C++ compiler"
)
TOLERANCE = {torch.float32: 2e-5, torch.float64: 1e-11}


def _both_paths(x, v, network, distribution, steepness=1.7):
    layers = get_network(network, x.shape[-1])
    fused_out = fused.permutation_matmul(x, v, layers, distribution, steepness, 0.25)
    assert fused_out is not None, "the fused path should apply to CPU tensors"
    return fused_out, reference_permutation_matmul(x, v, layers, distribution, steepness, 0.25)


@needs_kernels
def test_fused_path_is_available_and_the_default():
    assert fused.available()
    x, v = torch.randn(3, 6, requires_grad=True), torch.randn(6, 2)
    out = soft_permutation_matmul(x, v)
    assert out.grad_fn is not None and "rankssl_permutation_matmul" in type(out.grad_fn).__name__


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("distribution", sorted(RELAXATIONS))
@pytest.mark.parametrize("network", NETWORKS)
def test_matches_reference_values_and_gradients(network, distribution, dtype):
    tol = TOLERANCE[dtype]
    generator = torch.Generator().manual_seed(0)
    # 37 rows: one full block of 32 float32 (two of 16 float64) rows and a partial one.
    for n, shared_v in ((2, True), (5, False), (16, True), (33, False)):
        x = torch.randn(37, n, dtype=dtype, generator=generator).requires_grad_(True)
        shape = (n, 3) if shared_v else (37, n, 2)
        for v in (torch.randn(shape, dtype=dtype, generator=generator),):
            v.requires_grad_(True)
            out, ref = _both_paths(x, v, network, distribution)
            torch.testing.assert_close(out, ref, atol=tol, rtol=tol, msg=f"n={n}")
            weights = torch.randn(out.shape, dtype=dtype, generator=generator)
            grads = torch.autograd.grad((out * weights).sum(), (x, v))
            ref_grads = torch.autograd.grad((ref * weights).sum(), (x, v))
            if dtype == torch.float64:
                for grad, ref_grad, name in zip(grads, ref_grads, ("x", "v")):
                    torch.testing.assert_close(grad, ref_grad, atol=tol * n, rtol=tol, msg=f"{name} n={n}")
                continue
            # float32: some derivatives (logistic_phi's at near-ties) are ill-conditioned,
            # so both paths are held against float64 instead: the fused one must be about
            # as accurate as the reference.
            x64, v64 = x.detach().double().requires_grad_(True), v.detach().double().requires_grad_(True)
            exact = reference_permutation_matmul(x64, v64, get_network(network, n), distribution, 1.7, 0.25)
            exact_grads = torch.autograd.grad((exact * weights.double()).sum(), (x64, v64))
            for grad, ref_grad, exact_grad, name in zip(grads, ref_grads, exact_grads, ("x", "v")):
                error = (grad.double() - exact_grad).abs().max().item()
                ref_error = (ref_grad.double() - exact_grad).abs().max().item()
                assert error <= 4 * ref_error + 1e-5, f"{name} n={n}: {error} vs reference {ref_error}"


@needs_kernels
def test_large_bitonic_network_and_leading_dimensions():
    x = torch.randn(2, 3, 130, dtype=torch.float64, requires_grad=True)
    v = torch.randn(130, 1, dtype=torch.float64)
    out, ref = _both_paths(x, v, "bitonic_mirrored", "cauchy", steepness=3.0)
    assert out.shape == (2, 3, 130, 1)
    torch.testing.assert_close(out, ref, atol=1e-11, rtol=0)
    (grad,) = torch.autograd.grad(out.sum(), x)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(grad, ref_grad, atol=1e-10, rtol=0)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computes_in_float32(dtype):
    x = torch.randn(16, 13)
    v = torch.randn(13, 2)
    half = soft_permutation_matmul(x.to(dtype).requires_grad_(True), v.to(dtype))
    assert half.dtype == dtype
    exact = soft_permutation_matmul(x.double(), v.double())
    reference_half = reference_permutation_matmul(x.to(dtype), v.to(dtype), get_network("odd_even", 13), "cauchy", 1.0, 0.25)
    # The fused path only rounds inputs and outputs to half precision, so it is at least
    # as close to the float64 result as the reference path, which mixes in half precision.
    fused_error = (half.double() - exact).abs().max()
    assert fused_error <= (reference_half.double() - exact).abs().max() + 1e-3
    assert fused_error < 5e-2


@needs_kernels
def test_disabled_by_environment_falls_back_to_the_equal_torch_path(monkeypatch):
    x = torch.randn(7, 9, dtype=torch.float64, requires_grad=True)
    v = torch.randn(9, 2, dtype=torch.float64)
    fused_out = soft_permutation_matmul(x, v, "bitonic", "cauchy", 2.0)
    (fused_grad,) = torch.autograd.grad(fused_out.sum(), x)
    monkeypatch.setenv("RANKSSL_DISABLE_FUSED", "1")
    assert not fused.available()
    assert fused.permutation_matmul(x, v, get_network("bitonic", 9), "cauchy", 2.0, 0.25) is None
    torch_out = soft_permutation_matmul(x, v, "bitonic", "cauchy", 2.0)
    assert "rankssl" not in type(torch_out.grad_fn).__name__
    (torch_grad,) = torch.autograd.grad(torch_out.sum(), x)
    torch.testing.assert_close(fused_out, torch_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(fused_grad, torch_grad, atol=1e-11, rtol=0)


def test_missing_compiler_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.delenv("RANKSSL_DISABLE_FUSED", raising=False)
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    monkeypatch.setenv("RANKSSL_CACHE_DIR", str(tmp_path / "cache"))
    build.reset()
    try:
        x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
        v = torch.randn(6, 1, dtype=torch.float64)
        with pytest.warns(RuntimeWarning, match="pure-torch path"):
            out = soft_permutation_matmul(x, v)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the second call must not warn again
            again = soft_permutation_matmul(x, v)
        ref = reference_permutation_matmul(x, v, get_network("odd_even", 6), "cauchy", 1.0, 0.25)
        torch.testing.assert_close(out, ref, atol=0, rtol=0)
        torch.testing.assert_close(again, ref, atol=0, rtol=0)
        assert not list((tmp_path / "cache").glob("*.so"))
    finally:
        build.reset()


def _groco_both_paths(monkeypatch, positives, negatives, **kwargs):
    pos = positives.clone().requires_grad_(True)
    neg = negatives.clone().requires_grad_(True)
    loss = group_ordering_loss(pos, neg, **kwargs)
    grads = torch.autograd.grad(loss.sum(), (pos, neg))
    with monkeypatch.context() as patch:
        patch.setenv("RANKSSL_DISABLE_FUSED", "1")
        ref_pos = positives.clone().requires_grad_(True)
        ref_neg = negatives.clone().requires_grad_(True)
        ref = group_ordering_loss(ref_pos, ref_neg, **kwargs)
        ref_grads = torch.autograd.grad(ref.sum(), (ref_pos, ref_neg))
    return loss, grads, ref, ref_grads


@needs_kernels
@pytest.mark.parametrize("distribution", sorted(RELAXATIONS))
@pytest.mark.parametrize("network", NETWORKS)
def test_groco_fused_loss_matches_torch_path(monkeypatch, network, distribution):
    generator = torch.Generator().manual_seed(1)
    # Scores spread over about 1 / steepness keep masses away from 0 and 1, where float32
    # masses lose their relative accuracy in both paths (log q is ill-conditioned there);
    # the last case is steep on purpose, so that the clamp and the log floor are exercised.
    for num_pos, num_neg, steepness, spread in ((1, 10, 1.0, 1.0), (3, 5, 4.0, 0.25), (1, 62, 1.0, 1.0), (2, 2, 50.0, 0.1)):
        positives = (torch.rand(21, num_pos, generator=generator) * 2 - 1) * spread
        negatives = (torch.rand(21, num_neg, generator=generator) * 2 - 1) * spread
        loss, grads, ref, ref_grads = _groco_both_paths(
            monkeypatch, positives, negatives, sorting_network=network, distribution=distribution,
            steepness=steepness,
        )
        assert loss.shape == (21,)
        if steepness == 50.0:
            if distribution == "gaussian":
                continue  # its tails underflow: masses are 0 in one path and 1e-9 in the other
            # Saturated masses: a mass of 1e-30 in one path is 0 in the other (log floored
            # at -100), and BCE's gradient (q - t) / max(q (1 - q), 1e-12) multiplies
            # float32 rounding noise of q by up to 1e12 in both paths: the paths agree to
            # float32's conditioning there (the float64 test below holds them to 1e-12).
            torch.testing.assert_close(loss, ref, atol=5e-2, rtol=1e-2)
            assert torch.isfinite(loss).all() and all(torch.isfinite(grad).all() for grad in grads)
            continue
        torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
        for grad, ref_grad in zip(grads, ref_grads):
            torch.testing.assert_close(grad, ref_grad, atol=2e-5, rtol=1e-4)


@needs_kernels
@pytest.mark.parametrize("network", NETWORKS)
def test_groco_fused_kernel_in_float64_matches_a_rederivation(network):
    generator = torch.Generator().manual_seed(3)
    num_neg, num_pos = 9, 3
    scores = torch.cat(
        (torch.randn(17, num_neg, dtype=torch.float64, generator=generator).sort(1).values,
         torch.randn(17, num_pos, dtype=torch.float64, generator=generator).sort(1).values), 1,
    ).requires_grad_(True)
    layers = get_network(network, num_neg + num_pos)
    loss = fused.group_ordering_mass_loss(scores, num_neg, layers, "cauchy", 3.0, 0.25)
    (grad,) = torch.autograd.grad(loss.sum(), scores)
    # The authors' objective: BCE of both block masses of P, averaged.
    blocks = torch.zeros(num_neg + num_pos, 2, dtype=torch.float64)
    blocks[num_neg:, 0] = 1.0
    blocks[:num_neg, 1] = 1.0
    mass = reference_permutation_matmul(scores, blocks, layers, "cauchy", 3.0, 0.25).clamp(0, 1)
    target = (torch.arange(num_neg + num_pos) >= num_neg).double().expand(17, -1)
    bce = torch.nn.functional.binary_cross_entropy
    ref = ((bce(mass[..., 0], target, reduction="none") + bce(mass[..., 1], 1 - target, reduction="none")) / 2).mean(1)
    (ref_grad,) = torch.autograd.grad(ref.sum(), scores)
    torch.testing.assert_close(loss, ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(grad, ref_grad, atol=1e-11, rtol=1e-10)


@needs_kernels
def test_groco_fused_loss_at_large_k_matches_torch_path(monkeypatch):
    generator = torch.Generator().manual_seed(2)
    positives = torch.rand(6, 1, generator=generator)
    negatives = torch.rand(6, 255, generator=generator)
    loss, grads, ref, ref_grads = _groco_both_paths(monkeypatch, positives, negatives, sorting_network="bitonic")
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-4)


def test_import_compiles_nothing():
    code = (
        "import sys\n"
        "sys.modules['triton'] = None  # Triton missing: rankssl must not need it\n"
        "import rankssl, rankssl.losses, rankssl.ops\n"
        "from rankssl.ops.fused import build\n"
        "assert not build._tried and build._library is None\n"
        "import torch\n"
        "x = torch.randn(3, 4, requires_grad=True)\n"
        "rankssl.ops.soft_permutation_matmul(x, torch.ones(4, 1)).sum().backward()\n"
        "assert 'rankssl.ops.fused.triton_network' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _kernels(monkeypatch, choice):
    if choice == "cpu" and (build.disabled() or build._compiler() is None):
        pytest.skip("no C++ compiler for the fused kernels")
    monkeypatch.delenv("RANKSSL_DISABLE_FUSED", raising=False)
    monkeypatch.setenv("RANKSSL_KERNELS", choice)


def _hvp_and_finite_difference(function, x, direction, eps=1e-5):
    """The Hessian-vector product of ``function`` at ``x`` by double backward, and by
    central differences of its first-order gradient."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(function(x), x, create_graph=True)
    (hvp,) = torch.autograd.grad((grad * direction).sum(), x)
    gradients = []
    for sign in (1, -1):
        shifted = (x.detach() + sign * eps * direction).requires_grad_(True)
        gradients.append(torch.autograd.grad(function(shifted), shifted)[0])
    return hvp, (gradients[0] - gradients[1]) / (2 * eps)


@pytest.mark.parametrize("choice", ["cpu", "torch"])
@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
def test_double_backward_of_permutation_matmul_matches_finite_differences(monkeypatch, choice, network):
    _kernels(monkeypatch, choice)
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(4, 6, dtype=torch.float64, generator=generator)
    v = torch.randn(6, 2, dtype=torch.float64, generator=generator)
    weights = torch.randn(4, 6, 2, dtype=torch.float64, generator=generator)
    direction = torch.randn(4, 6, dtype=torch.float64, generator=generator)
    out = soft_permutation_matmul(x.requires_grad_(True), v, network, "cauchy", 2.0)
    assert ("rankssl" in type(out.grad_fn).__name__) == (choice == "cpu")

    def function(t):
        return (soft_permutation_matmul(t, v, network, "cauchy", 2.0) * weights).sum()

    hvp, finite = _hvp_and_finite_difference(function, x, direction)
    assert finite.abs().max() > 1e-2  # real curvature
    torch.testing.assert_close(hvp, finite, atol=1e-7, rtol=1e-6)
    # Mixed second derivatives: the gradient of v, differentiated with respect to x.
    probe = torch.randn(6, 2, dtype=torch.float64, generator=generator)

    def grad_v_probe(t, create_graph=False):
        vv = v.clone().requires_grad_(True)
        (grad_v,) = torch.autograd.grad(
            (soft_permutation_matmul(t, vv, network, "cauchy", 2.0) * weights).sum(), vv, create_graph=create_graph
        )
        return (grad_v * probe).sum()

    xx = x.detach().requires_grad_(True)
    (mixed,) = torch.autograd.grad(grad_v_probe(xx, create_graph=True), xx)
    eps = 1e-5
    finite = (grad_v_probe(x.detach() + eps * direction) - grad_v_probe(x.detach() - eps * direction)) / (2 * eps)
    assert abs(float(finite)) > 1e-3
    torch.testing.assert_close((mixed * direction).sum(), finite, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("choice", ["cpu", "torch"])
def test_double_backward_of_groco_matches_finite_differences(monkeypatch, choice):
    _kernels(monkeypatch, choice)
    generator = torch.Generator().manual_seed(12)
    num_neg = 4
    scores = torch.cat((torch.rand(5, num_neg, generator=generator).sort(1).values * 2 - 1,
                        torch.rand(5, 2, generator=generator).sort(1).values * 2 - 1), 1).double()
    direction = torch.randn(scores.shape, dtype=torch.float64, generator=generator)
    layers = get_network("odd_even", 6)
    weights = torch.arange(1.0, 6.0, dtype=torch.float64)

    def function(t):
        loss = fused.group_ordering_mass_loss(t, num_neg, layers, "cauchy", 1.0, 0.25)
        if choice == "torch":
            assert loss is None
            loss = fused.ops.composed_group_ordering_loss(t, num_neg, layers, "cauchy", 1.0, 0.25)
        return (loss * weights).sum()

    hvp, finite = _hvp_and_finite_difference(function, scores, direction)
    assert finite.abs().max() > 1e-2
    torch.testing.assert_close(hvp, finite, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("choice", ["cpu", "torch"])
def test_groco_loss_hessian_vector_product_is_exact(monkeypatch, choice):
    # Through the public loss (float32): against the float64 loss recorded op by op,
    # whose second derivatives the test above holds to finite differences.
    _kernels(monkeypatch, choice)
    generator = torch.Generator().manual_seed(13)
    positives, negatives = torch.rand(4, 2, generator=generator), torch.rand(4, 5, generator=generator)
    direction = torch.randn(4, 2, generator=generator)

    def hvp(function, pos):
        pos = pos.requires_grad_(True)
        (grad,) = torch.autograd.grad(function(pos), pos, create_graph=True)
        return torch.autograd.grad((grad * direction.to(pos.dtype)).sum(), pos)[0]

    got = hvp(lambda p: group_ordering_loss(p, negatives, steepness=2.0).sum(), positives.clone())
    layers = get_network("odd_even", 7)

    def exact_loss(p):
        scores = torch.cat((negatives.double().sort(1).values, p.sort(1).values), 1)
        return fused.ops.composed_group_ordering_loss(scores, 5, layers, "cauchy", 2.0, 0.25).sum()

    expected = hvp(exact_loss, positives.double())
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(got.double(), expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("choice", ["cpu", "torch"])
def test_func_grad_over_groco(monkeypatch, choice):
    _kernels(monkeypatch, choice)
    generator = torch.Generator().manual_seed(14)
    positives, negatives = torch.rand(3, 2, generator=generator), torch.rand(3, 4, generator=generator)
    got = torch.func.grad(lambda p: group_ordering_loss(p, negatives).sum())(positives)
    pos = positives.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(group_ordering_loss(pos, negatives).sum(), pos)
    torch.testing.assert_close(got, expected, atol=1e-7, rtol=1e-6)
    views = [torch.randn(6, 8, generator=generator) for _ in range(2)]
    loss_fn = GroCoLoss(n_negatives=3)
    got = torch.func.grad(lambda a: loss_fn(a, views[1]))(views[0])
    first = views[0].clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(loss_fn(first, views[1]), first)
    torch.testing.assert_close(got, expected, atol=1e-7, rtol=1e-6)


@pytest.mark.slow
def test_compiled_groco_loss_equals_eager_after_an_eager_call():
    generator = torch.Generator().manual_seed(15)
    views = [torch.randn(8, 16, generator=generator).requires_grad_(True) for _ in range(2)]
    loss_fn = GroCoLoss(n_negatives=4)
    eager = loss_fn(*views)  # the eager call first: it once made Dynamo fail in ops.fused
    eager_grads = torch.autograd.grad(eager, views)
    compiled = torch.compile(loss_fn)(*views)
    compiled_grads = torch.autograd.grad(compiled, views)
    torch.testing.assert_close(compiled, eager, atol=1e-6, rtol=1e-6)
    for got, expected in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(got, expected, atol=1e-7, rtol=1e-5)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("distribution", sorted(RELAXATIONS))
@pytest.mark.parametrize("network", NETWORKS)
def test_transposed_product_matches_the_layer_by_layer_path(network, distribution, dtype):
    tol = TOLERANCE[dtype]
    generator = torch.Generator().manual_seed(30)
    for n, shared_v in ((2, True), (5, False), (33, False)):
        x = torch.randn(37, n, dtype=dtype, generator=generator).requires_grad_(True)
        v = torch.randn((n, 3) if shared_v else (37, n, 2), dtype=dtype, generator=generator).requires_grad_(True)
        layers = get_network(network, n)
        out = fused.permutation_matmul(x, v, layers, distribution, 1.7, 0.25, transpose=True)
        assert out is not None and "rankssl_permutation_matmul" in type(out.grad_fn).__name__
        ref = composed_permutation_matmul(x, v, layers, distribution, 1.7, 0.25, transpose=True)
        torch.testing.assert_close(out, ref, atol=tol, rtol=tol, msg=f"n={n}")
        weights = torch.randn(out.shape, dtype=dtype, generator=generator)
        grads = torch.autograd.grad((out * weights).sum(), (x, v))
        ref_grads = torch.autograd.grad((ref * weights).sum(), (x, v))
        if dtype == torch.float64:
            for grad, ref_grad, name in zip(grads, ref_grads, ("x", "v")):
                torch.testing.assert_close(grad, ref_grad, atol=tol * n, rtol=tol, msg=f"{name} n={n}")
            continue
        # float32: held against float64, at least about as accurate as the torch path.
        x64, v64 = x.detach().double().requires_grad_(True), v.detach().double().requires_grad_(True)
        exact = composed_permutation_matmul(x64, v64, layers, distribution, 1.7, 0.25, transpose=True)
        exact_grads = torch.autograd.grad((exact * weights.double()).sum(), (x64, v64))
        for grad, ref_grad, exact_grad, name in zip(grads, ref_grads, exact_grads, ("x", "v")):
            error = (grad.double() - exact_grad).abs().max().item()
            ref_error = (ref_grad.double() - exact_grad).abs().max().item()
            assert error <= 4 * ref_error + 1e-5, f"{name} n={n}: {error} vs reference {ref_error}"


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_transposed_product_in_half_precision_computes_in_float32(dtype):
    x = torch.randn(16, 13, generator=torch.Generator().manual_seed(31))
    v = torch.rand(16, 13, 2, generator=torch.Generator().manual_seed(32))
    xh, vh = x.to(dtype).requires_grad_(True), v.to(dtype).requires_grad_(True)
    out = soft_permutation_matmul(xh, vh, "bitonic_mirrored", "optimal", 3.0, transpose=True)
    assert out.dtype == dtype and "rankssl_permutation_matmul" in type(out.grad_fn).__name__
    x32, v32 = xh.detach().float().requires_grad_(True), vh.detach().float().requires_grad_(True)
    layers = get_network("bitonic_mirrored", 13)
    exact = composed_permutation_matmul(x32, v32, layers, "optimal", 3.0, 0.25, transpose=True)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), exact, atol=2 * eps, rtol=2 * eps)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(33))
    grads = torch.autograd.grad((out.float() * weights).sum(), (xh, vh))
    exact_grads = torch.autograd.grad((exact * weights).sum(), (x32, v32))
    for grad, exact_grad in zip(grads, exact_grads):
        assert grad.dtype == dtype
        torch.testing.assert_close(grad.float(), exact_grad, atol=4 * eps, rtol=4 * eps)


@pytest.mark.parametrize("choice", ["cpu", "torch"])
def test_double_backward_of_the_transposed_product_matches_finite_differences(monkeypatch, choice):
    _kernels(monkeypatch, choice)
    generator = torch.Generator().manual_seed(34)
    x = torch.randn(4, 6, dtype=torch.float64, generator=generator)
    v = torch.randn(4, 6, 2, dtype=torch.float64, generator=generator)
    weights = torch.randn(4, 6, 2, dtype=torch.float64, generator=generator)
    direction = torch.randn(4, 6, dtype=torch.float64, generator=generator)
    out = soft_permutation_matmul(x.requires_grad_(True), v, "bitonic", "cauchy", 2.0, transpose=True)
    assert ("rankssl" in type(out.grad_fn).__name__) == (choice == "cpu")

    def function(t):
        return (soft_permutation_matmul(t, v, "bitonic", "cauchy", 2.0, transpose=True) * weights).sum()

    hvp, finite = _hvp_and_finite_difference(function, x, direction)
    assert finite.abs().max() > 1e-2
    torch.testing.assert_close(hvp, finite, atol=1e-7, rtol=1e-6)


@needs_kernels
@pytest.mark.parametrize("network", NETWORKS)
def test_sorting_ap_on_the_cpu_kernels_equals_the_layer_by_layer_path(monkeypatch, network):
    generator = torch.Generator().manual_seed(35)
    embeddings = torch.nn.functional.normalize(torch.randn(40, 8, generator=generator), dim=1)
    labels = torch.arange(40) % 4
    scores = embeddings[:10] @ embeddings.T
    valid = torch.ones(10, 40, dtype=torch.bool)
    valid[torch.arange(10), torch.arange(10)] = False
    relevance = (labels[:10, None] == labels[None, :]) & valid
    settings = dict(sorting_network=network, distribution="optimal", steepness=50.0)

    def ap_and_gradient():
        leaf = scores.clone().requires_grad_(True)
        ap = average_precision(leaf, relevance, valid, estimator="sorting", **settings)
        return (ap, *torch.autograd.grad((ap * torch.linspace(0.5, 1.5, 10)).sum(), leaf))

    fast = ap_and_gradient()
    monkeypatch.setenv("RANKSSL_KERNELS", "torch")
    reference = ap_and_gradient()
    for got, expected in zip(fast, reference):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
