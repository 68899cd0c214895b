"""HydraLoss (lightly-style): a per-anchor loop reference, SupCon relation, views, bad input, distributed."""


import pytest
import torch
import torch.nn.functional as F

from dist_utils import run_distributed
from functools import partial

from rankssl.losses import HydraLoss as _HydraLoss
from rankssl.losses.hydra import RANKSSL_VARIANT
from rankssl.models import FeatureFilter

# These tests check rankssl's variant (every view as keys, the mean per anchor, a partner per row)
# against a per-anchor reference; the default, the authors' SimLAP loss, is tested in test_hydra_authors.py.
HydraLoss = partial(_HydraLoss, **RANKSSL_VARIANT)


def reference_loss(z, labels, pair_labels, gates, temperature=0.1):
    """METHODS.md's formula, one anchor and one positive at a time (float64 scalars)."""
    n = z.shape[0]
    per_anchor = []
    for i in range(n):
        y1, y2, g = int(labels[i]), int(pair_labels[i]), gates[i].double()
        logits = [F.cosine_similarity(g * z[i].double(), g * z[j].double(), dim=0) / temperature for j in range(n)]
        mean = sum(logits) / n
        logits = [l - mean for l in logits]
        negatives = [k for k in range(n) if int(labels[k]) not in (y1, y2)]
        positives = [j for j in range(n) if j != i and int(labels[j]) == y2]
        if not positives:
            continue
        terms = []
        for j in positives:
            denominator = torch.exp(logits[j]) + sum(torch.exp(logits[k]) for k in negatives)
            terms.append(torch.log(denominator) - logits[j])
        per_anchor.append(sum(terms) / len(terms))
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("gate_mode", ["fused", "product", "open"])
@pytest.mark.parametrize("pairing", ["arbitrary", "distinct", "identical"])
def test_matches_per_anchor_reference_with_gradients(gate_mode, pairing):
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 0])
    z = torch.randn(10, 6, requires_grad=True)
    loss_fn = HydraLoss(5, 6, gate_mode=gate_mode, pairing=pairing, embed_dim=8, hidden_dim=16, seed=0)
    pair_labels = torch.tensor([1, 3, 0, 2, 1, 4, 3, 0, 2, 1]) if pairing == "arbitrary" else None
    if pairing == "distinct":
        pair_labels = torch.tensor([1, 3, 0, 2, 3, 4, 0, 0, 2, 1])
    if pairing == "identical":
        pair_labels = labels.clone()
    loss = loss_fn(z, labels, pair_labels=pair_labels)
    grads = torch.autograd.grad(loss, [z, *loss_fn.parameters()])

    gates = loss_fn.feature_filter(labels, pair_labels)
    expected = reference_loss(z, labels, pair_labels, gates)
    expected_grads = torch.autograd.grad(expected, [z, *loss_fn.parameters()])
    torch.testing.assert_close(loss.double(), expected, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want.double(), atol=1e-5, rtol=1e-4)


def test_sampled_pairs_follow_the_rule_and_seed():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    z = torch.randn(8, 4)
    a = HydraLoss(4, 4, seed=5, embed_dim=8, hidden_dim=8)
    b = HydraLoss(4, 4, seed=5, embed_dim=8, hidden_dim=8)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(z, labels), b(z, labels))


def test_views_equal_the_concatenated_batch():
    torch.manual_seed(1)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    views = [torch.randn(6, 8) for _ in range(3)]
    pair_labels = torch.tensor([1, 2, 3, 0, 0, 3])
    loss_fn = HydraLoss(4, 8, embed_dim=8, hidden_dim=8)
    by_views = loss_fn(views, labels, pair_labels=pair_labels)
    concatenated = loss_fn(torch.cat(views), labels.repeat(3), pair_labels=pair_labels.repeat(3))
    torch.testing.assert_close(by_views, concatenated)
    assert torch.isfinite(loss_fn(views, labels))  # sampled pairs


def test_open_identical_equals_supcon_with_one_positive_per_anchor():
    from pytorch_metric_learning.losses import SupConLoss

    # Two samples per class: each anchor has exactly one positive, and the formulas coincide.
    labels = torch.arange(6).repeat(2)
    z = torch.randn(12, 16)
    hydra = HydraLoss(6, 16, gate_mode="open", pairing="identical")(z, labels)
    supcon = SupConLoss(temperature=0.1)(z, labels)
    torch.testing.assert_close(hydra, supcon, atol=1e-5, rtol=1e-5)


def test_open_identical_is_below_supcon_with_several_positives():
    from pytorch_metric_learning.losses import SupConLoss

    # SupCon's denominator also holds the anchor's other positives; Hydra's holds one:
    # L_hydra = mean_j [log(e^{l_ij} + sum_neg) - l_ij] <= mean_j [log(sum_{pos+neg}) - l_ij].
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    z = torch.randn(10, 16)
    hydra = HydraLoss(4, 16, gate_mode="open", pairing="identical")(z, labels)
    supcon = SupConLoss(temperature=0.1)(z, labels)
    assert hydra < supcon
    # Exact relation: add back the log-ratio of the two denominators, anchor by anchor.
    logits = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T / 0.1
    gaps = []
    for i in range(10):
        pos = [j for j in range(10) if j != i and labels[j] == labels[i]]
        if not pos:
            continue
        others = [k for k in range(10) if k != i]
        neg = [k for k in range(10) if labels[k] != labels[i]]
        full = torch.logsumexp(logits[i, others], 0)
        gaps.append(sum(full - torch.logsumexp(logits[i, [j] + neg], 0) for j in pos) / len(pos))
    torch.testing.assert_close(supcon - hydra, sum(gaps) / len(gaps), atol=1e-4, rtol=1e-4)


def test_gate_penalty_adds_mean_g_one_minus_g():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    pair_labels = torch.tensor([1, 2, 0, 2, 1, 0])
    z = torch.randn(6, 4)
    plain = HydraLoss(3, 4, embed_dim=8, hidden_dim=8)
    penalised = HydraLoss(3, 4, embed_dim=8, hidden_dim=8, gate_penalty=0.5)
    penalised.load_state_dict(plain.state_dict())
    gates = plain.feature_filter(labels, pair_labels)
    expected = plain(z, labels, pair_labels=pair_labels) + 0.5 * (gates * (1 - gates)).mean()
    torch.testing.assert_close(penalised(z, labels, pair_labels=pair_labels), expected)


def test_loss_has_parameters_and_trains():
    torch.manual_seed(0)
    labels = torch.arange(4).repeat_interleave(4)
    z = torch.randn(16, 8, requires_grad=True)
    loss_fn = HydraLoss(4, 8, embed_dim=16, hidden_dim=16, seed=0)
    assert sum(p.numel() for p in loss_fn.parameters()) > 0
    pair_labels = torch.tensor([1, 2, 3, 0] * 4)
    opt = torch.optim.SGD([z, *loss_fn.parameters()], lr=0.5)
    first = None
    for _ in range(15):
        loss = loss_fn(z, labels, pair_labels=pair_labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.2


def test_no_negative_anchor_costs_nothing_and_stays_finite():
    # Two classes, paired across: no sample is of neither class, every term is log(e^l) - l = 0.
    labels = torch.tensor([0, 0, 1, 1])
    z = torch.randn(4, 3, requires_grad=True)
    loss = HydraLoss(2, 3, gate_mode="open")(z, labels, pair_labels=torch.tensor([1, 1, 0, 0]))
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: HydraLoss(3, 4)(torch.randn(4, 4)), ValueError, "needs class labels"),
        (lambda: HydraLoss(3, 4)(torch.randn(4, 4), torch.tensor([0, 1, 2, 3])), ValueError, r"\[0, 3\)"),
        (lambda: HydraLoss(3, 4)(torch.randn(4, 4), torch.tensor([-1, 1, 2, 0])), ValueError, r"\[0, 3\)"),
        (lambda: HydraLoss(3, 4)(torch.randn(4, 4), torch.tensor([0.0, 1.0, 2.0, 0.0])), TypeError, "integer"),
        (lambda: HydraLoss(3, 4)(torch.randn(4, 4), torch.tensor([0, 1])), ValueError, "entries"),
        (lambda: HydraLoss(3, 4)(torch.randn(4, 4), torch.tensor([1, 1, 1, 1])), ValueError, "single class"),
        (lambda: HydraLoss(3, 4)(torch.randn(4, 5), torch.tensor([0, 1, 2, 0])), ValueError, "gates 4 dimensions"),
        (lambda: HydraLoss(3, 4, pairing="identical")(torch.randn(3, 4), torch.tensor([0, 1, 2])), ValueError, "No anchor has a positive"),
        (lambda: HydraLoss(3, 4, temperature=0), ValueError, "temperature"),
        (lambda: HydraLoss(3, 4, pairing="all"), ValueError, "Unknown pairing"),
        (lambda: HydraLoss(3, 4, gate_mode="gumbel"), ValueError, "Unknown gate mode"),
        (lambda: HydraLoss(3, 4, gate_penalty=-1.0), ValueError, "gate_penalty"),
        (lambda: HydraLoss(3, 4, feature_filter=FeatureFilter(3, 5)), ValueError, "out_dim=5"),
        (lambda: HydraLoss(3, 4, class_pair_weight=torch.ones(2, 2)), ValueError, "class_pair_weight"),
        (lambda: HydraLoss(3, 4)(torch.randn(4, 4, dtype=torch.float64).long(), torch.tensor([0, 1, 2, 0])), TypeError, "floating"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _distributed_hydra(rank, world_size, z, labels, pair_labels, state):
    batch = z.shape[0] // world_size
    rows = slice(rank * batch, (rank + 1) * batch)
    loss_fn = HydraLoss(4, z.shape[1], embed_dim=8, hidden_dim=8, gather_distributed=True)
    loss_fn.load_state_dict(state)
    loss_fn.eval()  # BatchNorm on running statistics, so both processes gate as one would
    local = z[rows].clone().requires_grad_(True)
    loss = loss_fn(local, labels[rows], pair_labels=pair_labels[rows])
    loss.backward()
    return loss.detach(), local.grad


@pytest.mark.slow
@pytest.mark.dist
def test_gather_distributed_matches_single_process():
    z = torch.randn(16, 6)
    labels = torch.arange(4).repeat(4)
    pair_labels = torch.tensor([1, 2, 3, 0, 0, 1, 2, 3, 2, 3, 0, 1, 3, 3, 1, 0])
    loss_fn = HydraLoss(4, 6, embed_dim=8, hidden_dim=8).eval()
    results = run_distributed(_distributed_hydra, 2, z, labels, pair_labels, loss_fn.state_dict())
    full = z.clone().requires_grad_(True)
    expected = loss_fn(full, labels, pair_labels=pair_labels)
    expected.backward()
    # Equal anchor counts per process: global loss = mean of the ranks' losses, and each
    # rank's gradient is that of the sum of all ranks' losses (world_size x the global one).
    torch.testing.assert_close(sum(r[0] for r in results) / 2, expected.detach(), atol=1e-6, rtol=0)
    for rank, (_, grad) in enumerate(results):
        torch.testing.assert_close(grad / 2, full.grad[rank * 8 : (rank + 1) * 8], atol=1e-6, rtol=0)
