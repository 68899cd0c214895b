"""FeatureFilter, pair sampling and the LayerNorm head of Hydra."""

import pytest
import torch
from torch import nn

from rankssl.models import FeatureFilter, HydraProjectionHead, sample_pair_labels


def _mlp_by_hand(filt: FeatureFilter, x: torch.Tensor) -> torch.Tensor:
    """f_g re-derived from the weights (eval mode: BatchNorm with running statistics)."""
    bn1, lin1, bn2, lin2 = filt.mlp[1], filt.mlp[2], filt.mlp[4], filt.mlp[5]

    def bn(layer, h):
        return (h - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps) * layer.weight + layer.bias

    h = bn(bn1, torch.relu(x)) @ lin1.weight.T + lin1.bias
    return bn(bn2, torch.relu(h)) @ lin2.weight.T + lin2.bias


def _warm_running_stats(filt: FeatureFilter, num_classes: int) -> None:
    filt.train()
    with torch.no_grad():
        for _ in range(3):
            filt(torch.randint(0, num_classes, (32,)), torch.randint(0, num_classes, (32,)))
    filt.eval()


@pytest.mark.parametrize("mode", ["fused", "product"])
def test_gate_matches_formula_and_is_symmetric(mode):
    filt = FeatureFilter(7, 12, embed_dim=16, hidden_dim=24, mode=mode)
    _warm_running_stats(filt, 7)
    y1, y2 = torch.randint(0, 7, (2, 20))
    gates = filt(y1, y2)
    emb = filt.class_embedding.weight
    if mode == "fused":
        expected = torch.sigmoid(_mlp_by_hand(filt, (emb[y1] + emb[y2]) / 2))
    else:
        expected = torch.sigmoid(_mlp_by_hand(filt, emb[y1])) * torch.sigmoid(_mlp_by_hand(filt, emb[y2]))
    torch.testing.assert_close(gates, expected, atol=1e-5, rtol=1e-5)
    assert gates.shape == (20, 12) and bool(((gates > 0) & (gates < 1)).all())
    torch.testing.assert_close(filt(y2, y1), gates)
    filt.train()  # batch statistics are over the same set of rows in either order
    torch.testing.assert_close(filt(y2, y1), filt(y1, y2), atol=1e-5, rtol=1e-5)


def test_open_gate_is_all_ones_without_parameters():
    filt = FeatureFilter(5, 8, mode="open")
    assert sum(p.numel() for p in filt.parameters()) == 0
    assert torch.equal(filt(torch.tensor([0, 1]), torch.tensor([4, 2])), torch.ones(2, 8))


def test_parameters_grow_with_classes_not_pairs():
    counts = {c: sum(p.numel() for p in FeatureFilter(c, 256).parameters()) for c in (10, 100, 1000)}
    # Linear in C with slope embed_dim: one 512-wide row per class.
    assert counts[100] - counts[10] == 90 * 512
    assert counts[1000] - counts[100] == 900 * 512
    num_pairs = 1000 * 999 // 2 + 1000
    assert num_pairs == 500_500
    # A per-pair table of 256-wide gates would hold 128 M numbers; the filter holds < 2 M.
    assert counts[1000] < 2_000_000 < num_pairs * 256 // 50
    filt = FeatureFilter(1000, 256)
    y1, y2 = torch.randint(0, 1000, (2, 64))
    gates = filt(y1, y2)
    gates.mean().backward()
    assert gates.shape == (64, 256)
    # Only the classes of the batch receive gradient: nothing was built per pair.
    touched = filt.class_embedding.weight.grad.abs().sum(1) > 0
    assert set(torch.nonzero(touched).flatten().tolist()) <= set(torch.cat((y1, y2)).tolist())


def test_pair_gate_matrix_matches_forward_and_restores_mode():
    filt = FeatureFilter(6, 5, embed_dim=8, hidden_dim=8)
    _warm_running_stats(filt, 6)
    filt.train()
    matrix = filt.pair_gate_matrix([1, 3, 4], chunk_size=4)
    assert filt.training and matrix.shape == (3, 3, 5)
    filt.eval()
    torch.testing.assert_close(matrix[0, 2], filt(torch.tensor([1]), torch.tensor([4]))[0])
    torch.testing.assert_close(matrix, matrix.transpose(0, 1))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: FeatureFilter(0, 4), ValueError, "num_classes"),
        (lambda: FeatureFilter(3, 4, mode="gumbel"), ValueError, "Unknown gate mode"),
        (lambda: FeatureFilter(3, 4)(torch.tensor([0, 3]), torch.tensor([0, 1])), ValueError, r"\[0, 3\)"),
        (lambda: FeatureFilter(3, 4)(torch.tensor([0.0, 1.0]), torch.tensor([0, 1])), TypeError, "integer"),
        (lambda: FeatureFilter(3, 4)(None, torch.tensor([0, 1])), ValueError, "class labels"),
        (lambda: FeatureFilter(3, 4)(torch.tensor([0, 1]), torch.tensor([0])), ValueError, "entries"),
        (lambda: FeatureFilter(3, 4)(torch.tensor([0]), torch.tensor([1])), ValueError, "at least 2 pairs"),
    ],
)
def test_filter_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- pair sampling ---------------------------------------------------------------------


def test_pairings_respect_their_rule():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    g = torch.Generator().manual_seed(1)
    assert torch.equal(sample_pair_labels(labels, "identical"), labels)
    for _ in range(20):
        y2 = sample_pair_labels(labels, "distinct", generator=g)
        assert bool((y2 != labels).all())
        assert set(y2.tolist()) <= set(labels.tolist())
    # One sample per class: "arbitrary" never picks the anchor itself, so never its class.
    unique = torch.arange(6)
    for _ in range(20):
        assert bool((sample_pair_labels(unique, "arbitrary", generator=g) != unique).all())


def test_arbitrary_pairing_frequencies():
    # Anchor 0 (class 0) picks uniformly among the 9 other samples: 1 of class 0, 8 of class 1.
    labels = torch.tensor([0, 0] + [1] * 8)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_pair_labels(labels, "arbitrary", generator=g)[0] for _ in range(2000)])
    freq = (draws == 0).float().mean().item()
    assert abs(freq - 1 / 9) < 0.03


def test_seeded_sampling_is_reproducible():
    labels = torch.randint(0, 5, (64,))
    a = sample_pair_labels(labels, "arbitrary", generator=torch.Generator().manual_seed(3))
    b = sample_pair_labels(labels, "arbitrary", generator=torch.Generator().manual_seed(3))
    c = sample_pair_labels(labels, "arbitrary", generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_class_pair_weight_steers_partners():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    weight = torch.zeros(3, 3)
    weight[0, 1] = weight[1, 2] = weight[2, 0] = 1.0
    y2 = sample_pair_labels(labels, "arbitrary", class_pair_weight=weight, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y2, (labels + 1) % 3)


def test_pool_and_self_index():
    pool = torch.tensor([0, 1, 2, 3])
    y2 = sample_pair_labels(torch.tensor([1, 2]), "arbitrary", pool, torch.tensor([1, 2]), generator=torch.Generator().manual_seed(0))
    assert y2[0] != 1 and y2[1] != 2


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sample_pair_labels(torch.tensor([2, 2, 2]), "distinct"), "single class"),
        (lambda: sample_pair_labels(torch.tensor([2]), "arbitrary"), "no other sample"),
        (lambda: sample_pair_labels(torch.tensor([0, 1]), "random"), "Unknown pairing"),
        (lambda: sample_pair_labels(torch.tensor([0, 1]), "arbitrary", class_pair_weight=torch.zeros(2, 2)), "class_pair_weight"),
        (lambda: sample_pair_labels(torch.tensor([0, 1]), "arbitrary", class_pair_weight=-torch.ones(2, 2)), "non-negative"),
    ],
)
def test_sampling_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- projection head -------------------------------------------------------------------


def test_head_ends_in_layernorm():
    head = HydraProjectionHead(32, 64, 16, num_layers=3)
    assert isinstance(head.layers[-1], nn.LayerNorm)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in list(head.layers)[-2:])
    out = head(torch.randn(10, 32))
    assert out.shape == (10, 16)
    # LayerNorm (no affine change yet): each row has zero mean and unit variance.
    torch.testing.assert_close(out.mean(1), torch.zeros(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(1, unbiased=False), torch.ones(10), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="batch_size, 32"):
        head(torch.randn(10, 31))
    with pytest.raises(ValueError, match="num_layers"):
        HydraProjectionHead(32, num_layers=0)


# ---- class-relationship read-out ------------------------------------------------------


def test_active_dimension_overlap_against_sets():
    from rankssl.models import active_dimension_overlap

    active = torch.rand(7, 12) > 0.5
    active[3] = False
    got = active_dimension_overlap(active)
    for p in range(7):
        for q in range(7):
            a = set(torch.nonzero(active[p]).flatten().tolist())
            b = set(torch.nonzero(active[q]).flatten().tolist())
            want = len(a & b) / len(a | b) if a | b else 0.0
            assert got[p, q].item() == pytest.approx(want)


def test_class_pair_gates_table():
    from rankssl.models import class_pair_gates

    filt = FeatureFilter(5, 6, embed_dim=8, hidden_dim=8)
    _warm_running_stats(filt, 5)
    table = class_pair_gates(filt, [0, 2, 4])
    assert table["pairs"].tolist() == [[0, 0], [0, 2], [0, 4], [2, 2], [2, 4], [4, 4]]
    assert table["gates"].shape == (6, 6) and table["overlap"].shape == (6, 6)
    torch.testing.assert_close(table["gates"][1], filt(torch.tensor([0]), torch.tensor([2]))[0])
    assert torch.equal(table["active"], table["gates"] > 0.5)
    torch.testing.assert_close(table["open_fraction"][0, 1], table["active"][1].float().mean())
