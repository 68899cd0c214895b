"""Hydra in the first author's mode (erow/hydra, SimLAP), against a loop written from their equations.

The reference below does not call any rankssl function: for the ordered view pair (a, b)
and anchor i of view a with class y_i and partner class p_i (one per image, shared by
both views), with gate g_i = g(y_i, p_i) and scale s:

    c_ij = s * cos(g_i * z_a[i], g_i * z_b[j]) - mean_j'(s * cos(g_i * z_a[i], g_i * z_b[j']))
    N_i  = sum over keys j of view b with y_j not in {y_i, p_i} of exp(c_ij)
    L_ab = sum over (i, j) with y_j == p_i of [log(exp(c_ij) + N_i) - c_ij] / #(i, j)
    L    = (L_12 + L_21) / 2
"""

import math

import pytest
import torch
from torch import nn

from rankssl.losses import HydraLoss
from rankssl.losses.hydra import RANKSSL_VARIANT, SIMLAP_SETTINGS
from rankssl.models import HydraProjectionHead


def authors_reference(z1, z2, labels, partners, gates, scale):
    """Explicit loops in float64 over directions, anchors and keys."""
    views = (z1.double(), z2.double())
    directions = []
    for a, b in ((0, 1), (1, 0)):
        q, k = views[a], views[b]
        total, pairs = 0.0, 0
        for i in range(q.shape[0]):
            g = gates[i].double()
            gq = g * q[i]
            sims = []
            for j in range(k.shape[0]):
                gk = g * k[j]
                sims.append(scale * (gq @ gk) / (gq.norm() * gk.norm()))
            mean = sum(sims) / len(sims)
            c = [x - mean for x in sims]
            y1, y2 = int(labels[i]), int(partners[i])
            negatives = sum((torch.exp(c[j]) for j in range(k.shape[0]) if int(labels[j]) not in (y1, y2)),
                            torch.zeros((), dtype=torch.float64))
            for j in range(k.shape[0]):
                if int(labels[j]) == y2:
                    total = total + torch.log(torch.exp(c[j]) + negatives) - c[j]
                    pairs += 1
        directions.append(total / pairs)
    return (directions[0] + directions[1]) / 2


def assert_equals_reference(loss, loss_fn, z1, z2, labels, partners, learn_scale, tol=1e-6, grad_tol=3e-6):
    """``loss`` equals the float64 reference's to ``tol``, its float32 gradients (views and the loss's
    parameters) to ``grad_tol`` absolute and 1e-5 relative."""
    params = list(loss_fn.parameters())
    grads = torch.autograd.grad(loss, [z1, z2, *params])
    gates = loss_fn.feature_filter(labels, partners)  # training mode: same batch statistics per view
    scale = loss_fn.log_scale.exp() if learn_scale else 10.0
    expected = authors_reference(z1, z2, labels, partners, gates, scale)
    expected_grads = torch.autograd.grad(expected, [z1, z2, *params])
    torch.testing.assert_close(loss.double(), expected, atol=tol, rtol=tol)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want.double(), atol=grad_tol, rtol=1e-5)
    return grads


def _batch(seed=0):
    torch.manual_seed(seed)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 4, 4, 3])
    partners = labels[torch.tensor([3, 0, 9, 1, 2, 8, 5, 4, 7, 6])]  # a permutation of the batch
    z1 = torch.randn(10, 8, requires_grad=True)
    z2 = torch.randn(10, 8, requires_grad=True)
    return labels, partners, z1, z2


@pytest.mark.parametrize("learn_scale", [False, True])
@pytest.mark.parametrize("gate_mode", ["fused", "open"])
def test_default_loss_equals_the_authors_equations_values_and_gradients(learn_scale, gate_mode):
    """``HydraLoss(C, D)`` with no variant option is SimLAP: value and every gradient to 1e-6."""
    labels, partners, z1, z2 = _batch()
    loss_fn = HydraLoss(5, 8, gate_mode=gate_mode, embed_dim=8, hidden_dim=16, learn_scale=learn_scale)
    params = list(loss_fn.parameters())
    loss = loss_fn([z1, z2], labels, pair_labels=partners)
    grads = assert_equals_reference(loss, loss_fn, z1, z2, labels, partners, learn_scale)
    if learn_scale:
        assert loss_fn.log_scale.item() == pytest.approx(math.log(10.0))
        scale_grad = grads[2 + [p is loss_fn.log_scale for p in params].index(True)]
        assert scale_grad.abs().item() > 0  # the scale learns


def test_defaults_are_simlap_and_the_variant_differs():
    labels, partners, z1, z2 = _batch(1)
    default = HydraLoss(5, 8, gate_mode="open")
    assert all(getattr(default, key) == value for key, value in SIMLAP_SETTINGS.items())
    variant = HydraLoss(5, 8, gate_mode="open", **RANKSSL_VARIANT)
    a = default([z1, z2], labels, pair_labels=partners)
    b = variant([z1, z2], labels, pair_labels=partners)
    assert abs(a.item() - b.item()) > 1e-3


def test_default_draw_equals_the_authors_permutation_draw_end_to_end():
    """No pair labels given: the loss draws ``labels[randperm(B)]`` with its generator, as simlap_loss does."""
    labels, _, z1, z2 = _batch(4)
    loss_fn = HydraLoss(5, 8, gate_mode="open", seed=11)
    partners = labels[torch.randperm(10, generator=torch.Generator().manual_seed(11))]
    loss = loss_fn([z1, z2], labels)
    assert_equals_reference(loss, loss_fn, z1, z2, labels, partners, False)


def test_permutation_draw_gives_one_partner_per_image_from_the_batch():
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 4, 4, 3])
    _, _, z1, z2 = _batch()
    seeded = HydraLoss(5, 8, embed_dim=8, hidden_dim=8, seed=3)
    explicit = HydraLoss(5, 8, embed_dim=8, hidden_dim=8)
    explicit.load_state_dict(seeded.state_dict())
    # The draw is labels[randperm(B)] with the loss's own generator (seed + rank 0).
    partners = labels[torch.randperm(10, generator=torch.Generator().manual_seed(3))]
    assert sorted(partners.tolist()) == sorted(labels.tolist())
    torch.testing.assert_close(seeded([z1, z2], labels), explicit([z1, z2], labels, pair_labels=partners))


def test_filter_warmup_detaches_embeddings_only():
    labels, partners, z1, z2 = _batch()
    loss_fn = HydraLoss(5, 8, embed_dim=8, hidden_dim=16, filter_warmup_epochs=2)
    filter_param = loss_fn.feature_filter.class_embedding.weight
    for epoch, embeddings_learn in ((0, False), (1, False), (2, True)):
        loss_fn.set_epoch(epoch)
        loss = loss_fn([z1, z2], labels, pair_labels=partners)
        grads = torch.autograd.grad(loss, [z1, z2, filter_param], allow_unused=True)
        assert grads[2] is not None and grads[2].abs().sum() > 0
        assert (grads[0] is not None and grads[0].abs().sum() > 0) == embeddings_learn


def test_hydra_algorithm_reads_the_runner_epoch_for_the_warmup():
    from mmengine.logging import MessageHub

    from rankssl.mm.hydra import Hydra

    model = Hydra(backbone=dict(type="SmallCNN", in_channels=1, widths=(4, 8, 8)),
                  neck=dict(type="HydraProjectionHead", hidden_dim=16, out_dim=8, last_norm="bn"),
                  loss=dict(type="HydraLoss", embed_dim=8, hidden_dim=8, filter_warmup_epochs=1, **SIMLAP_SETTINGS),
                  num_classes=4)
    views = torch.rand(2, 8, 1, 16, 16)
    labels = torch.arange(4).repeat(2)
    hub = MessageHub.get_instance("test_hydra_warmup")
    for epoch, backbone_learns in ((0, False), (1, True)):
        hub.update_info("epoch", epoch)
        model.zero_grad()
        model([views], dict(label=labels), mode="loss")["loss"].backward()
        grad = model.backbone.parameters().__next__().grad
        assert (grad is not None and grad.abs().sum() > 0) == backbone_learns
        assert model.loss_module.epoch == epoch


def test_other_views_needs_two_views_and_variant_names_are_checked():
    with pytest.raises(ValueError, match="at least two views"):
        HydraLoss(3, 4)(torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    for kwargs, match in ((dict(key_views="mine"), "key_views"), (dict(reduction="sum"), "reduction"),
                          (dict(pair_draw="x"), "pair_draw"), (dict(filter_warmup_epochs=-1), "filter_warmup"),
                          (dict(pair_draw="permutation", pairing="distinct"), "distinct")):
        with pytest.raises(ValueError, match=match):
            HydraLoss(3, 4, **kwargs)


@pytest.mark.parametrize("last_norm", ["ln", "bn", "none"])
def test_head_last_norm(last_norm):
    head = HydraProjectionHead(12, 16, 6, last_norm=last_norm)
    out = head(torch.randn(20, 12))
    last = head.layers[-1]
    if last_norm == "ln":
        assert isinstance(last, nn.LayerNorm)
        torch.testing.assert_close(out.mean(dim=1), torch.zeros(20), atol=1e-5, rtol=0)
    elif last_norm == "bn":
        assert isinstance(last, nn.BatchNorm1d) and not last.affine
        torch.testing.assert_close(out.mean(dim=0), torch.zeros(6), atol=1e-5, rtol=0)
    else:
        assert isinstance(last, nn.Linear)
    with pytest.raises(ValueError, match="last_norm"):
        HydraProjectionHead(12, last_norm="batch")


def test_layernorm_head_admits_the_exact_collapse_and_batchnorm_does_not():
    x = torch.randn(32, 12)
    ln = HydraProjectionHead(12, 16, 6, last_norm="ln")
    with torch.no_grad():
        ln.layers[-1].weight.zero_()  # gamma -> 0: every sample becomes beta
        ln.layers[-1].bias.copy_(torch.randn(6))
    out = ln(x)
    assert torch.allclose(out, out[:1].expand_as(out))
    bn = HydraProjectionHead(12, 16, 6, last_norm="bn")
    with torch.no_grad():
        bn.layers[-2].weight.mul_(0.1)  # a shrunken pre-norm output is re-standardised
    out = bn(x)
    assert bool((out.var(dim=0, unbiased=False) > 0.9).all())  # unit variance up to BatchNorm's eps


@pytest.mark.parametrize("learn_scale", [False, True])
def test_pml_default_loss_equals_the_authors_equations(learn_scale):
    """pml's calling convention: each view against the other as ``ref_emb``, one ``pair_labels`` for both."""
    from rankssl.pml import HydraLoss as PMLHydraLoss

    labels, partners, z1, z2 = _batch(2)
    loss_fn = PMLHydraLoss(5, 8, embed_dim=8, hidden_dim=16, learn_scale=learn_scale)
    assert loss_fn.reduction == "pair_mean" and loss_fn.pair_draw == "permutation"
    loss = (loss_fn(z1, labels, ref_emb=z2, ref_labels=labels, pair_labels=partners)
            + loss_fn(z2, labels, ref_emb=z1, ref_labels=labels, pair_labels=partners)) / 2
    assert_equals_reference(loss, loss_fn, z1, z2, labels, partners, learn_scale)


def test_pml_pair_mean_hands_pml_one_loss_per_positive_pair():
    from pytorch_metric_learning.reducers import DoNothingReducer

    from rankssl.pml import HydraLoss as PMLHydraLoss

    labels, partners, z1, _ = _batch(3)
    per_pair = PMLHydraLoss(5, 8, embed_dim=8, hidden_dim=16, reducer=DoNothingReducer())
    per_anchor = PMLHydraLoss(5, 8, embed_dim=8, hidden_dim=16, reduction="anchor_mean", reducer=DoNothingReducer())
    per_anchor.load_state_dict(per_pair.state_dict())
    pairs = per_pair(z1, labels, pair_labels=partners)["loss"]
    anchors = per_anchor(z1, labels, pair_labels=partners)["loss"]
    anchor_idx, positive_idx = pairs["indices"]
    assert pairs["reduction_type"] == "pos_pair" and anchors["reduction_type"] == "element"
    assert bool((labels[positive_idx] == partners[anchor_idx]).all()) and bool((anchor_idx != positive_idx).all())
    # The per-anchor loss is the mean of that anchor's pair losses.
    for row, anchor in enumerate(anchors["indices"].tolist()):
        torch.testing.assert_close(anchors["losses"][row], pairs["losses"][anchor_idx == anchor].mean())


def test_pml_permutation_draw_takes_partners_from_the_batch():
    from rankssl.pml import HydraLoss as PMLHydraLoss

    labels, _, z1, _ = _batch()
    seeded = PMLHydraLoss(5, 8, embed_dim=8, hidden_dim=8, seed=4)
    explicit = PMLHydraLoss(5, 8, embed_dim=8, hidden_dim=8)
    explicit.load_state_dict(seeded.state_dict())
    partners = labels[torch.randperm(10, generator=torch.Generator().manual_seed(4))]
    torch.testing.assert_close(seeded(z1, labels), explicit(z1, labels, pair_labels=partners))
    with pytest.raises(ValueError, match="pair_draw"):
        PMLHydraLoss(5, 8, pair_draw="permutation", pairing="distinct")
    with pytest.raises(ValueError, match="reduction"):
        PMLHydraLoss(5, 8, reduction="pairs")
