"""The launch and sync counter that the GPU-path targets are measured with."""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from launch_count import LaunchCounter, count  # noqa: E402


def test_counts_forward_and_backward_ops_but_not_views():
    x = torch.randn(4, 3, requires_grad=True)
    with LaunchCounter() as counter:
        x.view(12)
    assert counter.launches == 0
    with LaunchCounter() as counter:
        x.exp().sum().backward()
    # exp, sum forward; the backward's expand is a view, its mul (grad * exp) launches.
    assert counter.by_name["aten::exp"] == 1 and counter.by_name["aten::sum"] == 1
    assert counter.launches >= 3 and counter.syncs == 0


def test_counts_host_syncs():
    x = torch.randn(16)
    with LaunchCounter() as counter:
        x.sum().item()
        bool((x > 0).any())
        x[x > 0]
        torch.unique(x)
        torch.nonzero(x)
    assert counter.syncs == 5, counter.syncs_by_name  # item, bool, mask index, unique, nonzero
    assert counter.syncs_by_name["_local_scalar_dense"] == 2


def test_count_skips_warmup_calls():
    calls = []
    figures = count(lambda: calls.append(torch.ones(2).add(1)), warmup=2)
    assert len(calls) == 3 and figures == {"launches": 2, "syncs": 0}  # ones (fill) and add
