"""The losses on a CUDA device equal the CPU path (the fused C++ kernels where they apply).

CUDA tensors take the Triton kernels (``RANKSSL_KERNELS=auto``), CPU tensors the fused C++
kernels, so each case below compares two implementations as well as two devices. Skipped without a CUDA device; run on
a lent GPU (benchmarks/RESULTS.md, section "Speed on the GPU, and the GPU code path").
"""

from __future__ import annotations

import copy
from typing import Callable, List

import pytest
import torch

from rankssl.losses import GroCoLoss, HydraLoss, S2R2Loss
from rankssl.ops import soft_sort

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

BATCH, DIM, CLASSES = 64, 32, 10


def _views(num_views: int, seed: int = 0) -> List[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(BATCH, DIM, generator=generator) for _ in range(num_views)]


def _loss_and_grads(loss_fn: torch.nn.Module, views: List[torch.Tensor], device: str, **kwargs):
    """Loss and the gradient of each view, computed on ``device``, returned on the CPU."""
    loss_fn = copy.deepcopy(loss_fn).to(device)
    leaves = [v.detach().clone().to(device).requires_grad_() for v in views]  # fresh leaves on each device
    loss = loss_fn(leaves, **{k: v.to(device) for k, v in kwargs.items()})
    loss.backward()
    return loss.detach().cpu(), [leaf.grad.cpu() for leaf in leaves]


def _assert_same(gpu_loss, gpu_grads, cpu_loss, cpu_grads) -> None:
    torch.testing.assert_close(gpu_loss, cpu_loss, atol=1e-5, rtol=1e-4)
    for cpu_grad, gpu_grad in zip(cpu_grads, gpu_grads):
        torch.testing.assert_close(gpu_grad, cpu_grad, atol=1e-6, rtol=1e-3)


LOSSES: List[Callable[[], torch.nn.Module]] = [
    lambda: GroCoLoss(n_negatives=10, steepness=4.0),
    lambda: GroCoLoss(n_negatives=8, steepness=16.0, sorting_network="bitonic"),
    lambda: GroCoLoss(n_negatives=10, steepness=4.0, n_positive_views=2),
    lambda: S2R2Loss(estimator="binned", num_bins=20),
    lambda: S2R2Loss(estimator="sigmoid", temperature=0.05),
    lambda: S2R2Loss(estimator="sorting", steepness=10.0),
]


@pytest.mark.parametrize("make_loss", LOSSES, ids=["groco", "groco-bitonic", "groco-multicrop",
                                                   "s2r2-binned", "s2r2-sigmoid", "s2r2-sorting"])
@pytest.mark.parametrize("num_views", [2, 4])
def test_label_free_losses_match_cpu(make_loss, num_views):
    views = _views(num_views)
    loss_fn = make_loss()
    cpu_loss, cpu_grads = _loss_and_grads(loss_fn, views, "cpu")
    gpu_loss, gpu_grads = _loss_and_grads(loss_fn, views, "cuda")
    assert torch.isfinite(cpu_loss)
    _assert_same(gpu_loss, gpu_grads, cpu_loss, cpu_grads)


def test_hydra_matches_cpu():
    torch.manual_seed(0)
    loss_fn = HydraLoss(num_classes=CLASSES, dim=DIM, embed_dim=16, hidden_dim=32)
    views = _views(2)
    labels = torch.arange(BATCH) % CLASSES
    pair_labels = (labels + 3) % CLASSES  # fixed pairs: the two devices draw differently
    cpu_loss, cpu_grads = _loss_and_grads(loss_fn, views, "cpu", labels=labels, pair_labels=pair_labels)
    gpu_loss, gpu_grads = _loss_and_grads(loss_fn, views, "cuda", labels=labels, pair_labels=pair_labels)
    _assert_same(gpu_loss, gpu_grads, cpu_loss, cpu_grads)


@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
def test_soft_sort_backward_matches_cpu(network):
    x = torch.randn(32, 16, dtype=torch.float64)
    weights = torch.randn(32, 16, 16, dtype=torch.float64)

    def grad_on(device: str) -> torch.Tensor:
        leaf = x.detach().clone().to(device).requires_grad_()
        _, P = soft_sort(leaf, network=network, steepness=8.0)
        (P * weights.to(device)).sum().backward()
        return leaf.grad.cpu()

    torch.testing.assert_close(grad_on("cuda"), grad_on("cpu"), atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("network", ["odd_even", "bitonic", "bitonic_mirrored"])
def test_triton_kernels_on_cuda_match_the_torch_path(network, dtype, monkeypatch):
    from rankssl.ops import fused, soft_permutation_matmul

    assert fused.backend_for("cuda", dtype) == "triton"
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(300, 23, generator=generator)
    v = torch.randn(23, 3, generator=generator)
    weights = torch.randn(300, 23, 3, generator=generator)

    def run(device):
        leaf = x.to(device, dtype).requires_grad_()
        out = soft_permutation_matmul(leaf, v.to(device, dtype), network, "cauchy", 2.0)
        (out.float() * weights.to(device)).sum().backward()
        return out.float().cpu(), leaf.grad.float().cpu()

    fast = run("cuda")
    monkeypatch.setenv("RANKSSL_KERNELS", "torch")
    reference = run("cuda")
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for got, expected in zip(fast, reference):
        torch.testing.assert_close(got, expected, atol=tol, rtol=tol)
