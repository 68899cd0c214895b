"""Every GroCo and S2R2 loss (lightly-style and pml) works under torch.compile: eager == compiled.

The fused sorting-network kernels are torch.library custom ops, which Dynamo keeps as one
opaque op each (Hydra's losses have their own test in test_hydra_gpu_path.py)."""

import warnings

import pytest
import torch

from rankssl import pml
from rankssl.losses import GroCoLoss, S2R2Loss

CASES = [
    ("GroCoLoss", lambda: GroCoLoss(4), "views"),
    ("S2R2Loss binned", lambda: S2R2Loss(), "views"),
    ("S2R2Loss fastap", lambda: S2R2Loss(estimator="fastap"), "views"),
    ("S2R2Loss sigmoid", lambda: S2R2Loss(estimator="sigmoid"), "views"),
    ("S2R2Loss sorting", lambda: S2R2Loss(estimator="sorting"), "views"),
    ("pml GroCoLoss", lambda: pml.GroCoLoss(4), "labels"),
    ("pml S2R2Loss", lambda: pml.S2R2Loss(), "labels"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, make, kind", CASES)
def test_compiled_equals_eager(name, make, kind):
    torch.manual_seed(0)
    views = [torch.randn(8, 6) for _ in range(2)]
    labels = torch.arange(8).repeat(2)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss_fn = make()
        for compiled in (False, True):
            leaves = [v.clone().requires_grad_(True) for v in views]
            fn = torch.compile(loss_fn, backend="eager") if compiled else loss_fn
            loss = fn(*leaves) if kind == "views" else fn(torch.cat(leaves), labels)
            loss.backward()
            results.append((loss.detach(), [leaf.grad for leaf in leaves]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for eager, compiled in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(eager, compiled)
