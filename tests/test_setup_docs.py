"""The set-up facts a newcomer meets first: the Python version, activating .venv, the digits' source."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_python_requirement_is_torch_2_14s_and_the_readme_says_so():
    pyproject = _read("pyproject.toml")
    assert re.search(r'^requires-python = ">=3\.10"', pyproject, re.M)
    assert '"torch>=2.1,<=2.14.1"' in pyproject  # 2.14.1 ships wheels for Python 3.10+ only
    readme = _read("README.md")
    assert "Python 3.10+" in readme and "Python 3.9" not in readme


def test_readme_says_to_activate_the_venv_and_names_the_digits_generator():
    readme = _read("README.md")
    assert "source .venv/bin/activate" in readme
    assert "rankssl.mm.digits.make_digits_canvas" in readme
    from rankssl.mm.digits import make_digits_canvas

    images, labels = make_digits_canvas("test")
    assert images.shape == (360, 32, 32) and str(images.dtype) == "uint8" and labels.shape == (360,)


def test_gradient_accumulation_is_not_a_larger_batch_for_the_ranking_losses():
    """What the README says: the loss of a batch differs from the mean of its halves' losses, because
    negatives (GroCo), the ranking database (S2R2) and keys (Hydra) come from the call's own items."""
    import torch

    from rankssl.losses import GroCoLoss, HydraLoss, S2R2Loss

    torch.manual_seed(0)
    z0, z1 = torch.randn(16, 8), torch.randn(16, 8)
    labels = torch.arange(4).repeat(4)
    halves = (slice(0, 8), slice(8, 16))
    groco, s2r2, hydra = GroCoLoss(n_negatives=3), S2R2Loss(), HydraLoss(num_classes=4, dim=8, seed=0)
    for name, loss in (("GroCo", lambda a, b, y: groco(a, b)), ("S2R2", lambda a, b, y: s2r2([a, b])),
                       ("Hydra", lambda a, b, y: hydra([a, b], y))):  # one filter for both sides
        whole = loss(z0, z1, labels)
        accumulated = sum(loss(z0[h], z1[h], labels[h]) for h in halves) / 2
        assert torch.isfinite(whole) and torch.isfinite(accumulated)
        assert not torch.allclose(whole, accumulated, rtol=1e-3, atol=1e-4), name
