"""LARS (MoCo v3's variant, used by the Hydra/SimLAP authors) against a NumPy re-derivation."""

import numpy as np
import pytest
import torch

from rankssl.mm.optimizers import LARS


def numpy_lars_steps(params, grads_per_step, lr, wd, momentum, eta):
    params = [p.copy() for p in params]
    mus = [np.zeros_like(p) for p in params]
    for grads in grads_per_step:
        for k, (p, g) in enumerate(zip(params, grads)):
            d = g.copy()
            if p.ndim > 1:
                d = d + wd * p
                pn, dn = np.linalg.norm(p), np.linalg.norm(d)
                if pn > 0 and dn > 0:
                    d = d * (eta * pn / dn)
            mus[k] = momentum * mus[k] + d
            params[k] = p - lr * mus[k]
    return params


def test_lars_matches_numpy_reference_over_three_steps():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    bias = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    zero = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))  # |p| = 0: ratio 1
    start = [weight.detach().numpy().copy(), bias.detach().numpy().copy(), zero.detach().numpy().copy()]
    optimizer = LARS([weight, bias, zero], lr=0.2, weight_decay=1e-2, momentum=0.9, trust_coefficient=0.01)
    grads_per_step = []
    for _ in range(3):
        grads = [torch.randn_like(p) for p in (weight, bias, zero)]
        for p, g in zip((weight, bias, zero), grads):
            p.grad = g.clone()
        grads_per_step.append([g.numpy() for g in grads])
        optimizer.step()
    expected = numpy_lars_steps(start, grads_per_step, 0.2, 1e-2, 0.9, 0.01)
    for got, want in zip((weight, bias, zero), expected):
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10, atol=1e-12)


def test_lars_is_built_from_the_rankssl_scope_and_checks_arguments():
    from mmengine.optim import build_optim_wrapper

    import rankssl.registry  # noqa: F401

    model = torch.nn.Linear(3, 2)
    wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(type="rankssl.LARS", lr=0.2)))
    assert isinstance(wrapper.optimizer, LARS)
    with pytest.raises(ValueError, match="weight_decay"):
        LARS(model.parameters(), lr=0.1, weight_decay=-1.0)
