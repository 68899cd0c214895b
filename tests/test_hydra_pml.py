"""rankssl.pml.HydraLoss: same numbers as the lightly-style loss, ref_emb, reducers, bad input."""

import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.reducers import SumReducer
from pytorch_metric_learning.regularizers import LpRegularizer

from functools import partial

from rankssl.losses import HydraLoss as _LightlyHydraLoss
from rankssl.losses.hydra import RANKSSL_VARIANT
from rankssl.pml import HydraLoss as _HydraLoss
from test_hydra import reference_loss

# rankssl's variant (per-anchor mean, a partner per row) against the lightly-style loss's variant and a
# per-anchor reference; the default (SimLAP) pml loss is tested in test_hydra_authors.py.
HydraLoss = partial(_HydraLoss, reduction="anchor_mean", pair_draw="per_row")
LightlyHydraLoss = partial(_LightlyHydraLoss, **RANKSSL_VARIANT)

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0, 1])
PAIRS = torch.tensor([1, 2, 0, 3, 3, 0, 1, 2, 0, 1])


def _pair(**kwargs):
    pml = HydraLoss(4, 6, embed_dim=8, hidden_dim=8, **kwargs)
    lightly = LightlyHydraLoss(4, 6, embed_dim=8, hidden_dim=8)
    lightly.feature_filter.load_state_dict(pml.feature_filter.state_dict())
    return pml, lightly


def test_matches_lightly_loss_with_gradients():
    pml, lightly = _pair()
    z = torch.randn(10, 6, requires_grad=True)
    got = pml(z, LABELS, pair_labels=PAIRS)
    (g_got,) = torch.autograd.grad(got, z)
    want = lightly(z, LABELS, pair_labels=PAIRS)
    (g_want,) = torch.autograd.grad(want, z)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_got, g_want)


def test_ref_emb_against_brute_force():
    pml = HydraLoss(4, 6, embed_dim=8, hidden_dim=8, gate_mode="product")
    queries, refs = torch.randn(4, 6, requires_grad=True), torch.randn(8, 6)
    q_labels, r_labels = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    pairs = torch.tensor([1, 1, 3, 0])
    got = pml(queries, q_labels, ref_emb=refs, ref_labels=r_labels, pair_labels=pairs)
    gates = pml.feature_filter(q_labels, pairs)
    expected = []
    for i in range(4):
        # Reference with the query appended as an extra key that is never a positive/negative
        # of anything but itself: drop it by computing on refs only.
        g = gates[i]
        logits = torch.stack([torch.cosine_similarity(g * queries[i], g * r, dim=0) for r in refs]) / 0.1
        logits = logits - logits.mean()
        neg = [k for k in range(8) if int(r_labels[k]) not in (int(q_labels[i]), int(pairs[i]))]
        pos = [j for j in range(8) if r_labels[j] == pairs[i]]
        expected.append(sum(torch.logaddexp(logits[j], torch.logsumexp(logits[neg], 0)) - logits[j] for j in pos) / len(pos))
    torch.testing.assert_close(got, torch.stack(expected).mean(), atol=1e-5, rtol=1e-5)
    got.backward()
    assert queries.grad is not None and pml.feature_filter.class_embedding.weight.grad is not None


def test_self_reference_loop_matches():
    pml = HydraLoss(4, 6, embed_dim=8, hidden_dim=8)
    z = torch.randn(10, 6)
    gates = pml.feature_filter(LABELS, PAIRS)
    torch.testing.assert_close(pml(z, LABELS, pair_labels=PAIRS).double(), reference_loss(z, LABELS, PAIRS, gates), atol=1e-5, rtol=1e-5)


def test_reducer_regularizer_and_gate_penalty():
    z = torch.randn(10, 6)
    mean_loss = HydraLoss(4, 6, embed_dim=8, hidden_dim=8)
    sum_loss = HydraLoss(4, 6, embed_dim=8, hidden_dim=8, reducer=SumReducer())
    sum_loss.load_state_dict(mean_loss.state_dict())
    torch.testing.assert_close(sum_loss(z, LABELS, pair_labels=PAIRS), 10 * mean_loss(z, LABELS, pair_labels=PAIRS))

    reg = HydraLoss(4, 6, embed_dim=8, hidden_dim=8, embedding_regularizer=LpRegularizer())
    reg.load_state_dict(mean_loss.state_dict())
    extra = z.norm(dim=1).mean()
    torch.testing.assert_close(reg(z, LABELS, pair_labels=PAIRS), mean_loss(z, LABELS, pair_labels=PAIRS) + extra)

    pen = HydraLoss(4, 6, embed_dim=8, hidden_dim=8, gate_penalty=2.0)
    pen.load_state_dict(mean_loss.state_dict())
    gates = mean_loss.feature_filter(LABELS, PAIRS)
    torch.testing.assert_close(
        pen(z, LABELS, pair_labels=PAIRS), mean_loss(z, LABELS, pair_labels=PAIRS) + 2.0 * (gates * (1 - gates)).mean()
    )


def test_sampled_pairs_are_seeded_and_parameters_train():
    z = torch.randn(10, 6)
    a = HydraLoss(4, 6, embed_dim=8, hidden_dim=8, seed=3)
    b = HydraLoss(4, 6, embed_dim=8, hidden_dim=8, seed=3)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(z, LABELS), b(z, LABELS))
    names = [n for n, _ in a.named_parameters()]
    assert any(n.startswith("feature_filter.class_embedding") for n in names)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: HydraLoss(4, 6)(torch.randn(10, 6)), ValueError, "needs class labels"),
        (lambda: HydraLoss(4, 6)(torch.randn(10, 6), LABELS + 1), ValueError, r"\[0, 4\)"),
        (lambda: HydraLoss(4, 6)(torch.randn(10, 6), LABELS.float()), TypeError, "integer"),
        (lambda: HydraLoss(4, 6)(torch.randn(10, 5), LABELS), ValueError, "gates 6 dimensions"),
        (lambda: HydraLoss(4, 6)(torch.randn(10, 6), LABELS, indices_tuple=(LABELS, LABELS, LABELS)), ValueError, "indices_tuple"),
        (lambda: HydraLoss(4, 6)(torch.randn(4, 6), LABELS[:4], ref_emb=torch.randn(4, 6)), ValueError, "ref_labels"),
        (lambda: HydraLoss(4, 6, distance=LpDistance()), ValueError, "CosineSimilarity"),
        (lambda: HydraLoss(4, 6, temperature=-1.0), ValueError, "temperature"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("reduction", ["pair_mean", "anchor_mean"])
def test_default_mean_reducer_equals_pml_reducing_the_unreduced_losses(reduction):
    """pml's MeanReducer result is computed on the device (already reduced): it equals pml's mean of the
    per-pair / per-anchor losses that any other reducer gets, value and gradient."""
    from pytorch_metric_learning.reducers import DoNothingReducer, MeanReducer

    z = torch.randn(10, 6, requires_grad=True)
    mean = _HydraLoss(4, 6, embed_dim=8, hidden_dim=8, reduction=reduction)
    unreduced = _HydraLoss(4, 6, embed_dim=8, hidden_dim=8, reduction=reduction, reducer=DoNothingReducer())
    unreduced.load_state_dict(mean.state_dict())
    got = mean(z, LABELS, pair_labels=PAIRS)
    entry = unreduced(z, LABELS, pair_labels=PAIRS)["loss"]
    assert entry["reduction_type"] == ("pos_pair" if reduction == "pair_mean" else "element")
    want = MeanReducer()({"loss": entry}, z, LABELS)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, z)[0], torch.autograd.grad(want, z)[0])
