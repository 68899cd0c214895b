"""The Triton kernels (rankssl.ops.fused.triton_network) against the pure-torch path.

CI has no GPU: ``RANKSSL_KERNELS=triton`` with ``TRITON_INTERPRET=1`` runs the Triton
kernels on CPU tensors through Triton's interpreter, on the code path a CUDA tensor
takes. The interpreter is slow, so the sizes are tiny.
"""

import importlib
import os
import sys
import warnings

os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are defined: before importing them

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from rankssl.losses import GroCoLoss, group_ordering_loss  # noqa: E402
from rankssl.ops import NETWORKS, RELAXATIONS, fused, get_network, soft_permutation_matmul, soft_sort  # noqa: E402
from rankssl.ops.average_precision import AP_ESTIMATORS, _sorting_ap, average_precision  # noqa: E402
from rankssl.ops.fused.ops import composed_group_ordering_loss  # noqa: E402
from rankssl.ops.permutation_matmul import composed_permutation_matmul, reference_permutation_matmul  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from launch_count import LaunchCounter  # noqa: E402


@pytest.fixture(autouse=True)
def triton_kernels(monkeypatch):
    """Every test here runs with RANKSSL_KERNELS=triton under the interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("RANKSSL_KERNELS", "triton")
    monkeypatch.delenv("RANKSSL_DISABLE_FUSED", raising=False)
    assert fused.triton_available()
    module = fused._triton_state["module"]
    if type(module._network_kernel).__name__ != "InterpretedFunction":  # imported without the interpreter
        fused._triton_state["module"] = importlib.reload(module)
    yield


def _weights(shape, seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("distribution", sorted(RELAXATIONS))
@pytest.mark.parametrize("network", NETWORKS)
def test_matches_torch_path_values_and_gradients(network, distribution):
    generator = torch.Generator().manual_seed(0)
    # n = 6 is not a power of two (padded wires); v shared by the rows, then one per row.
    for n, v_shape in ((6, (6, 2)), (5, (3, 5, 3))):
        x64 = torch.randn(3, n, dtype=torch.float64, generator=generator)
        v64 = torch.randn(v_shape, dtype=torch.float64, generator=generator)
        x, v = x64.float().requires_grad_(True), v64.float().requires_grad_(True)
        out = soft_permutation_matmul(x, v, network, distribution, 1.7)
        assert "rankssl_permutation_matmul" in type(out.grad_fn).__name__
        layers = get_network(network, n)
        x64.requires_grad_(True), v64.requires_grad_(True)
        exact = reference_permutation_matmul(x64, v64, layers, distribution, 1.7, 0.25)
        torch.testing.assert_close(out.double(), exact, atol=3e-6, rtol=1e-5)
        weights = _weights(out.shape)
        grads = torch.autograd.grad((out * weights.float()).sum(), (x, v))
        exact_grads = torch.autograd.grad((exact * weights).sum(), (x64, v64))
        for grad, exact_grad in zip(grads, exact_grads):
            # float32 arithmetic against float64: the steep pieces of `optimal` amplify rounding.
            torch.testing.assert_close(grad.double(), exact_grad, atol=3e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
def test_half_precision_is_computed_in_float32(network, dtype):
    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(2))
    v = torch.randn(7, 2, generator=torch.Generator().manual_seed(3))
    xh = x.to(dtype).requires_grad_(True)
    out = soft_permutation_matmul(xh, v.to(dtype), network, "cauchy", 2.0)
    assert out.dtype == dtype
    # Only the inputs and outputs are rounded: the result is the float32 one, rounded.
    x32 = xh.detach().float().requires_grad_(True)
    exact = reference_permutation_matmul(x32, v.to(dtype).float(), get_network(network, 7), "cauchy", 2.0, 0.25)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), exact, atol=2 * eps, rtol=2 * eps)
    weights = _weights(out.shape).float()
    (grad,) = torch.autograd.grad((out.float() * weights).sum(), xh)
    (exact_grad,) = torch.autograd.grad((exact * weights).sum(), x32)
    assert grad.dtype == dtype
    torch.testing.assert_close(grad.float(), exact_grad, atol=4 * eps, rtol=4 * eps)


@pytest.mark.parametrize("network,distribution", [
    ("odd_even", "cauchy"), ("bitonic", "logistic_phi"), ("bitonic_mirrored", "optimal"), ("odd_even", "gaussian"),
])
def test_groco_mode_matches_torch_path(network, distribution, monkeypatch):
    generator = torch.Generator().manual_seed(4)
    # Cosine-like scores in (-1, 1) at the paper's steepness: no saturated BCE terms (log 0).
    positives, negatives = torch.rand(5, 2, generator=generator) * 2 - 1, torch.rand(5, 4, generator=generator) * 2 - 1
    settings = dict(sorting_network=network, distribution=distribution, steepness=1.0)

    def loss_and_grads():
        pos, neg = positives.clone().requires_grad_(True), negatives.clone().requires_grad_(True)
        loss = group_ordering_loss(pos, neg, **settings)
        weights = torch.arange(1.0, 6.0, dtype=loss.dtype)
        return (loss, *torch.autograd.grad((loss * weights).sum(), (pos, neg)))

    with LaunchCounter() as counter:
        fast = loss_and_grads()
    assert counter.by_name["rankssl::group_ordering_mass_loss"] == 1
    monkeypatch.setenv("RANKSSL_KERNELS", "torch")
    reference = loss_and_grads()
    pos64, neg64 = positives.double().requires_grad_(True), negatives.double().requires_grad_(True)
    scores64 = torch.cat((neg64.sort(dim=1).values, pos64.sort(dim=1).values), dim=1)
    loss64 = composed_group_ordering_loss(scores64, 4, get_network(network, 6), distribution, 1.0, 0.25)
    exact = (loss64, *torch.autograd.grad((loss64 * torch.arange(1.0, 6.0, dtype=torch.float64)).sum(), (pos64, neg64)))
    for got, ref, exact_value in zip(fast, reference, exact):
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
        # At least about as close to the float64 computation as the torch path in float32
        # (logistic_phi's gradient at near-ties is ill-conditioned).
        error = (got.double() - exact_value.double()).abs().max().item()
        assert error <= 4 * (ref.double() - exact_value.double()).abs().max().item() + 2e-6


def test_kernel_selection(monkeypatch):
    f32 = torch.float32
    expected_cpu = "cpu" if fused.build.load() is not None else None
    for value, cpu, cuda in (
        ("auto", expected_cpu, "triton"), ("", expected_cpu, "triton"), ("torch", None, None),
        ("cpu", expected_cpu, None), ("triton", "triton", "triton"), (" Triton ", "triton", "triton"),
    ):
        monkeypatch.setenv("RANKSSL_KERNELS", value)
        assert fused.backend_for("cpu", f32) == cpu, value
        assert fused.backend_for("cuda", f32) == cuda, value
        # float64 has no Triton kernel: the torch path on the GPU.
        assert fused.backend_for("cuda", torch.float64) is None
    monkeypatch.setenv("RANKSSL_KERNELS", "triton")
    monkeypatch.setenv("RANKSSL_DISABLE_FUSED", "1")  # the older switch: an alias of torch
    assert fused.kernel_choice() == "torch" and fused.backend_for("cuda", f32) is None
    monkeypatch.delenv("RANKSSL_DISABLE_FUSED")
    monkeypatch.setenv("RANKSSL_KERNELS", "gpu")
    with pytest.raises(ValueError, match="RANKSSL_KERNELS must be one of auto, torch, cpu, triton, got 'gpu'"):
        soft_permutation_matmul(torch.randn(2, 3), torch.randn(3, 1))


def test_triton_on_cpu_without_interpreter_warns_and_takes_the_torch_path(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setitem(fused._triton_state, "warned", False)
    x, v = torch.randn(3, 4, requires_grad=True), torch.randn(4, 1)
    with pytest.warns(RuntimeWarning, match="TRITON_INTERPRET=1 is not set; rankssl uses the pure-torch path"):
        out = soft_permutation_matmul(x, v)
    assert "rankssl" not in type(out.grad_fn).__name__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        soft_permutation_matmul(x, v)


def test_groco_loss_launches_one_operator_per_pass():
    views = [torch.randn(12, 8, generator=torch.Generator().manual_seed(s)).requires_grad_(True) for s in (5, 6)]
    loss_fn = GroCoLoss(n_negatives=3)
    with LaunchCounter() as counter:
        loss_fn(*views).backward()
    assert counter.by_name["rankssl::group_ordering_mass_loss"] == 1
    assert not any("sort_network" in name for name in counter.by_name)


def test_double_backward_is_exact_on_the_triton_path():
    x = torch.randn(3, 5, dtype=torch.float32, generator=torch.Generator().manual_seed(7)).requires_grad_(True)
    v = torch.randn(5, 2, generator=torch.Generator().manual_seed(8))
    weights, direction = _weights((3, 5, 2)).float(), _weights((3, 5), seed=9).float()
    out = soft_permutation_matmul(x, v, "bitonic", "cauchy", 2.0)
    (grad,) = torch.autograd.grad((out * weights).sum(), x, create_graph=True)
    (hvp,) = torch.autograd.grad((grad * direction).sum(), x)
    # Against the torch path in float64, whose second derivatives are checked against
    # finite differences in test_fused.py.
    x64 = x.detach().double().requires_grad_(True)
    ref = soft_permutation_matmul(x64, v.double(), "bitonic", "cauchy", 2.0)  # float64: the torch path
    (grad64,) = torch.autograd.grad((ref * weights.double()).sum(), x64, create_graph=True)
    (hvp64,) = torch.autograd.grad((grad64 * direction.double()).sum(), x64)
    torch.testing.assert_close(hvp.double(), hvp64, atol=1e-4, rtol=1e-4)
    assert hvp64.abs().max() > 1e-2  # a real curvature, not zeros on both sides


@pytest.mark.slow
def test_compiled_groco_loss_keeps_the_op_and_equals_eager():
    # aot_eager: Dynamo and AOTAutograd (fake implementation, autograd formula) without
    # inductor's code generation; test_fused.py compiles with inductor on the C++ path.
    views = [torch.randn(8, 16, generator=torch.Generator().manual_seed(s)).requires_grad_(True) for s in (16, 17)]
    loss_fn = GroCoLoss(n_negatives=4)
    eager = loss_fn(*views)  # one eager call first, as a training loop does
    eager_grads = torch.autograd.grad(eager, views)
    compiled_fn = torch.compile(loss_fn, backend="aot_eager")
    compiled = compiled_fn(*views)
    compiled_grads = torch.autograd.grad(compiled, views)
    torch.testing.assert_close(compiled, eager, atol=1e-6, rtol=1e-6)
    for got, expected in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(got, expected, atol=1e-7, rtol=1e-5)
    with LaunchCounter() as counter:
        compiled_fn(*views).backward()
    assert counter.by_name["rankssl::group_ordering_mass_loss"] == 1


@pytest.mark.parametrize("distribution", sorted(RELAXATIONS))
@pytest.mark.parametrize("network", NETWORKS)
def test_transposed_product_matches_torch_path_values_and_gradients(network, distribution):
    generator = torch.Generator().manual_seed(20)
    for n, v_shape in ((6, (6, 2)), (5, (3, 5, 3))):
        x64 = torch.randn(3, n, dtype=torch.float64, generator=generator)
        v64 = torch.randn(v_shape, dtype=torch.float64, generator=generator)
        x, v = x64.float().requires_grad_(True), v64.float().requires_grad_(True)
        out = soft_permutation_matmul(x, v, network, distribution, 1.7, transpose=True)
        assert "rankssl_permutation_matmul" in type(out.grad_fn).__name__
        layers = get_network(network, n)
        x64.requires_grad_(True), v64.requires_grad_(True)
        exact = composed_permutation_matmul(x64, v64, layers, distribution, 1.7, 0.25, transpose=True)
        # The torch path is P^T @ v for the P that soft_sort forms.
        _, permutation = soft_sort(x64.detach(), network, distribution, 1.7)
        torch.testing.assert_close(exact.detach(), permutation.transpose(-1, -2) @ v64.detach())
        torch.testing.assert_close(out.double(), exact, atol=3e-6, rtol=1e-5)
        weights = _weights(out.shape)
        grads = torch.autograd.grad((out * weights.float()).sum(), (x, v))
        exact_grads = torch.autograd.grad((exact * weights).sum(), (x64, v64))
        for grad, exact_grad in zip(grads, exact_grads):
            torch.testing.assert_close(grad.double(), exact_grad, atol=3e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("network", ["odd_even", "bitonic_mirrored"])
def test_transposed_product_in_half_precision_is_computed_in_float32(network, dtype):
    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(21))
    v = torch.randn(4, 7, 2, generator=torch.Generator().manual_seed(22))
    xh, vh = x.to(dtype).requires_grad_(True), v.to(dtype).requires_grad_(True)
    out = soft_permutation_matmul(xh, vh, network, "optimal", 2.0, transpose=True)
    assert out.dtype == dtype
    x32, v32 = xh.detach().float().requires_grad_(True), vh.detach().float().requires_grad_(True)
    exact = composed_permutation_matmul(x32, v32, get_network(network, 7), "optimal", 2.0, 0.25, transpose=True)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), exact, atol=2 * eps, rtol=2 * eps)
    weights = _weights(out.shape).float()
    grads = torch.autograd.grad((out.float() * weights).sum(), (xh, vh))
    exact_grads = torch.autograd.grad((exact * weights).sum(), (x32, v32))
    for grad, exact_grad in zip(grads, exact_grads):
        assert grad.dtype == dtype
        torch.testing.assert_close(grad.float(), exact_grad, atol=4 * eps, rtol=4 * eps)


def _ap_problem(num_queries=6, num_items=12, dtype=torch.float32, seed=23):
    """Cosine scores of a few classes, each query's own column invalid."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.nn.functional.normalize(torch.randn(num_items, 8, generator=generator), dim=1)
    labels = torch.arange(num_items) % 3
    scores = (embeddings[:num_queries] @ embeddings.T).to(dtype)
    valid = torch.ones(num_queries, num_items, dtype=torch.bool)
    valid[torch.arange(num_queries), torch.arange(num_queries)] = False
    relevance = (labels[:num_queries, None] == labels[None, :]) & valid
    return scores, relevance, valid


def _ap_and_gradient(scores, relevance, valid, in_float64=False, **settings):
    leaf = scores.clone().requires_grad_(True)
    if in_float64:  # average_precision computes in float32: the estimator's core in float64
        settings = dict(AP_ESTIMATORS["sorting"], **settings)
        ap = _sorting_ap(leaf.double(), relevance, valid, **settings)
    else:
        ap = average_precision(leaf, relevance, valid, estimator="sorting", **settings)
    weights = torch.linspace(0.5, 1.5, ap.shape[0], dtype=ap.dtype)
    (grad,) = torch.autograd.grad((ap * weights).sum(), leaf)
    return ap, grad


@pytest.mark.parametrize("distribution", sorted(RELAXATIONS))
@pytest.mark.parametrize("network", NETWORKS)
def test_sorting_ap_runs_one_operator_and_equals_the_layer_by_layer_path(network, distribution, monkeypatch):
    scores, relevance, valid = _ap_problem()
    settings = dict(sorting_network=network, distribution=distribution, steepness=20.0)
    with LaunchCounter() as counter:
        fast = _ap_and_gradient(scores, relevance, valid, **settings)
    # One network pass forward (not recomputed by checkpointing) and one backward.
    assert counter.by_name["rankssl::permutation_matmul"] == 1
    assert counter.by_name["rankssl::permutation_matmul_backward"] == 1
    monkeypatch.setenv("RANKSSL_KERNELS", "torch")
    reference = _ap_and_gradient(scores, relevance, valid, **settings)
    for got, expected in zip(fast, reference):
        torch.testing.assert_close(got, expected, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_sorting_ap_at_its_defaults_is_as_accurate_as_the_torch_path(dtype, monkeypatch):
    # The default steepness (1e4) amplifies float32 rounding in both paths: each is held
    # against the float64 computation, the fused one at least about as close as torch's.
    scores, relevance, valid = _ap_problem(num_queries=8, num_items=40, dtype=dtype)
    fast = _ap_and_gradient(scores, relevance, valid)
    assert fast[1].dtype == dtype
    monkeypatch.setenv("RANKSSL_KERNELS", "torch")
    reference = _ap_and_gradient(scores, relevance, valid)
    exact = _ap_and_gradient(scores, relevance, valid, in_float64=True)
    for got, expected, exact_value in zip(fast, reference, exact):
        error = (got.double() - exact_value).abs().max().item()
        assert error <= 4 * (expected.double() - exact_value).abs().max().item() + 1e-5
