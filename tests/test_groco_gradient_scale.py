"""GroCo at the learning rates its hosts' users bring: ``gradient_scale``.

GroCo's gradients are 15-75x smaller than NT-Xent's (the authors train at lr 24). A
lightly user who swaps ``GroCoLoss`` in for ``NTXentLoss`` at lightly's usual SGD lr 0.06
sees no learning; ``gradient_scale=50`` makes the same loop learn, and the default (1)
stays the authors' loss exactly.
"""

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rankssl import pml
from rankssl.losses import GroCoLoss
from rankssl.losses.groco import scale_gradient


def _grads(loss_fn, *inputs):
    inputs = [x.clone().requires_grad_(True) for x in inputs]
    loss = loss_fn(*inputs)
    loss.backward()
    return loss.detach(), [x.grad for x in inputs]


@pytest.mark.parametrize("scale", [0.5, 50.0])
def test_lightly_style_scale_multiplies_gradient_only(scale):
    views = [torch.randn(16, 8), torch.randn(16, 8)]
    ref_loss, ref_grads = _grads(GroCoLoss(n_negatives=4), *views)
    loss, grads = _grads(GroCoLoss(n_negatives=4, gradient_scale=scale), *views)
    assert loss == ref_loss  # the reported value is the authors' loss
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, scale * r, rtol=1e-4, atol=1e-7 * scale)


def test_pml_scale_multiplies_gradient_only():
    embeddings, labels = torch.randn(24, 8), torch.arange(6).repeat(4)
    ref_loss, (ref_grad,) = _grads(lambda e: pml.GroCoLoss(n_negatives=4)(e, labels), embeddings)
    loss, (grad,) = _grads(lambda e: pml.GroCoLoss(n_negatives=4, gradient_scale=50)(e, labels), embeddings)
    assert loss == ref_loss
    torch.testing.assert_close(grad, 50 * ref_grad, rtol=1e-4, atol=5e-6)


def test_default_is_the_authors_loss_exactly():
    views = [torch.randn(16, 8), torch.randn(16, 8)]
    default_loss, default_grads = _grads(GroCoLoss(n_negatives=4), *views)
    one_loss, one_grads = _grads(GroCoLoss(n_negatives=4, gradient_scale=1.0), *views)
    assert default_loss == one_loss
    assert all(torch.equal(a, b) for a, b in zip(default_grads, one_grads))
    x = torch.tensor(3.0, requires_grad=True)
    y = x * x
    assert scale_gradient(y, 1.0) is y


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, True, "50"])
def test_bad_gradient_scale_is_refused(bad):
    for cls in (GroCoLoss, pml.GroCoLoss):
        with pytest.raises(ValueError, match="gradient_scale must be a finite number > 0"):
            cls(gradient_scale=bad)


def test_scale_equals_a_larger_learning_rate_for_plain_sgd():
    torch.manual_seed(0)
    head = nn.Linear(8, 8)
    data = [torch.randn(16, 8), torch.randn(16, 8)]
    finals = []
    for scale, lr in ((50.0, 0.06), (1.0, 3.0)):
        model = nn.Linear(8, 8)
        model.load_state_dict(head.state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        loss_fn = GroCoLoss(n_negatives=4, gradient_scale=scale)
        for _ in range(3):
            opt.zero_grad()
            loss_fn(model(data[0]), model(data[1])).backward()
            opt.step()
        finals.append(model.weight.detach().clone())
    torch.testing.assert_close(finals[0], finals[1], rtol=1e-4, atol=1e-6)


def _digits_knn_after_lightly_loop(loss_fn, steps=30, lr=0.06, seed=0):
    """A lightly-style loop on the embedded digits: SmallCNN + MLP head, two random-resized-crop views,
    SGD(lr, momentum 0.9). Returns the weighted-kNN accuracy (%) of the backbone before and after."""
    from rankssl.mm.digits import make_digits_canvas
    from rankssl.models import SmallCNN

    train_x, train_y = make_digits_canvas("train")
    test_x, test_y = make_digits_canvas("test")
    train_x = torch.tensor(train_x[:, None] / 255.0, dtype=torch.float32)
    test_x = torch.tensor(test_x[:, None] / 255.0, dtype=torch.float32)
    train_y, test_y = torch.tensor(train_y.copy()), torch.tensor(test_y.copy())

    def views(x, g):
        scale = torch.empty(len(x)).uniform_(0.5, 1.0, generator=g)
        shift = (torch.rand(2, len(x), generator=g) * 2 - 1) * (1 - scale)
        theta = torch.zeros(len(x), 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = scale
        theta[:, 0, 2], theta[:, 1, 2] = shift
        return F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)

    def knn(backbone):
        backbone.eval()
        with torch.no_grad():
            bank, query = F.normalize(backbone(train_x), dim=1), F.normalize(backbone(test_x), dim=1)
        weights, index = (query @ bank.T).topk(20, dim=1)
        votes = torch.zeros(len(query), 10).scatter_add_(1, train_y[index], (weights / 0.07).exp())
        backbone.train()
        return 100.0 * (votes.argmax(1) == test_y).float().mean().item()

    torch.manual_seed(seed)
    backbone = SmallCNN(1, widths=(8, 16, 32))
    head = nn.Sequential(nn.Linear(32, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 64))
    opt = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=lr, momentum=0.9, weight_decay=5e-4)
    before = knn(backbone)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = train_x[torch.randperm(len(train_x), generator=g)[:64]]
        loss = loss_fn(head(backbone(views(x, g))), head(backbone(views(x, g))))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, knn(backbone)


@pytest.mark.slow
def test_lightly_swap_at_lightlys_learning_rate_learns_with_gradient_scale():
    # A fresh process: flushing subnormal floats (GroCo's small gradients, see GroCoLoss's note)
    # must happen before torch starts its threads, which this test process already did.
    code = ("import sys, torch\n"
            "torch.set_flush_denormal(True)\n"
            f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
            "from rankssl.losses import GroCoLoss\n"
            "from test_groco_gradient_scale import _digits_knn_after_lightly_loop as loop\n"
            "before, scaled = loop(GroCoLoss(gradient_scale=50))\n"
            "_, unscaled = loop(GroCoLoss())\n"
            "print(before, scaled, unscaled)\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, scaled, unscaled = map(float, proc.stdout.split()[-3:])
    assert scaled >= before + 5.0, (before, scaled)           # measured: 32.5 -> 39.7
    assert scaled - before >= 2 * max(unscaled - before, 1.0), (before, unscaled, scaled)  # unscaled: 32.5 -> 33.1
