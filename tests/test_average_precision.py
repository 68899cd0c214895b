"""AP estimators of rankssl.ops against scikit-learn, brute-force loops, diffsort-style
soft permutations and pytorch-metric-learning's FastAPLoss."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch.utils._python_dispatch import TorchDispatchMode

from rankssl.ops import AP_ESTIMATORS, average_precision, exact_average_precision, soft_sort


def _separated_problem(num_queries=5, num_items=40, seed=0):
    """Scores on a grid with gap 1.9 / (N - 1) (no ties) and a few relevant items per row."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.linspace(-0.95, 0.95, num_items)
    scores = torch.stack([grid[torch.randperm(num_items, generator=generator)] for _ in range(num_queries)])
    relevance = torch.rand(num_queries, num_items, generator=generator) < 0.25
    relevance[:, 0] = True
    return scores, relevance


def _sklearn_ap(scores, relevance):
    return torch.tensor(
        [average_precision_score(r.numpy(), s.numpy()) for s, r in zip(scores, relevance)],
        dtype=torch.float32,
    )


@pytest.mark.parametrize("ties", [False, True])
def test_exact_ap_matches_sklearn(ties):
    scores = torch.randn(8, 30)
    if ties:
        scores = (scores * 2).round() / 2  # many tied scores
    relevance = torch.rand(8, 30) < 0.3
    relevance[:, 3] = True
    torch.testing.assert_close(exact_average_precision(scores, relevance), _sklearn_ap(scores, relevance))


def test_exact_ap_honours_valid_mask():
    scores, relevance = _separated_problem()
    valid = torch.rand_like(scores) < 0.7
    valid[:, 0] = True
    expected = torch.stack(
        [_sklearn_ap(s[v][None], r[v][None])[0] for s, r, v in zip(scores, relevance, valid)]
    )
    torch.testing.assert_close(exact_average_precision(scores, relevance, valid), expected)


@pytest.mark.parametrize(
    "estimator, name, values, tolerance",
    [
        ("binned", "num_bins", [4, 40, 2000], 1e-5),
        ("sigmoid", "temperature", [0.3, 0.03, 1e-4], 1e-5),
        ("sorting", "steepness", [3.0, 30.0, 3000.0], 3e-3),
    ],
)
def test_estimators_tend_to_exact_ap(estimator, name, values, tolerance):
    scores, relevance = _separated_problem()
    valid = torch.ones_like(relevance)
    valid[:, 5] = False  # an excluded item (the query itself, say)
    exact = exact_average_precision(scores, relevance, valid)
    errors = [
        (average_precision(scores, relevance, valid, estimator, **{name: value}) - exact).abs().max().item()
        for value in values
    ]
    assert errors[0] > errors[-1]
    assert errors[-1] < tolerance, errors


def test_binned_matches_dense_triangular_kernel_reference():
    scores = torch.randn(6, 25).tanh()
    relevance = torch.rand(6, 25) < 0.3
    relevance[:, 0] = True
    valid = ~torch.eye(6, 25, dtype=torch.bool)
    valid[:, 0] = True
    num_bins = 7
    centres = torch.linspace(-1.0, 1.0, num_bins + 1)
    weights = F.relu(1 - (scores[..., None] - centres).abs() * num_bins / 2)  # (Q, N, L+1)
    expected = []
    for q in range(6):
        precisions = []
        for j in torch.nonzero(relevance[q] & valid[q]).flatten():
            above_relevant = above_valid = 0.0
            for k in range(25):
                if not valid[q, k]:
                    continue
                # Mass of k at or above each centre b, weighted by j's kernel at b.
                at_or_above = weights[q, k].flip(0).cumsum(0).flip(0)
                overlap = float((weights[q, j] * at_or_above).sum())
                if k == j:
                    continue
                above_valid += overlap
                above_relevant += overlap * float(relevance[q, k])
            precisions.append((1 + above_relevant) / (1 + above_valid))
        expected.append(sum(precisions) / len(precisions))
    got = average_precision(scores, relevance, valid, "binned", num_bins=num_bins)
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-5, rtol=0)


def test_sigmoid_matches_naive_smooth_ap():
    scores = torch.randn(6, 20) * 0.1
    relevance = torch.rand(6, 20) < 0.3
    relevance[:, 1] = True
    valid = torch.rand(6, 20) < 0.9
    valid[:, 1] = True
    temperature = 0.01
    diff = (scores[:, None, :] - scores[:, :, None]) / temperature  # [q, j, k] = s_k - s_j
    step = torch.sigmoid(diff) * valid[:, None, :] * (1 - torch.eye(20))
    rank_all = 1 + step.sum(-1)
    rank_relevant = 1 + (step * relevance[:, None, :]).sum(-1)
    rel = relevance & valid
    expected = ((rank_relevant / rank_all) * rel).sum(1) / rel.sum(1)
    got = average_precision(scores, relevance, valid, "sigmoid", temperature=temperature)
    torch.testing.assert_close(got, expected)


def test_sorting_matches_explicit_soft_permutation():
    scores = torch.randn(4, 12)
    relevance = torch.rand(4, 12) < 0.4
    relevance[:, 2] = True
    _, P = soft_sort(scores, "bitonic_mirrored", "cauchy", 5.0)
    relevant_at = (relevance.float()[:, None, :] @ P).squeeze(1)  # ascending ranks
    at_or_above = lambda t: t.flip(1).cumsum(1).flip(1)  # noqa: E731
    counts_above = at_or_above((torch.ones(4, 1, 12) @ P).squeeze(1))
    expected = (relevant_at * at_or_above(relevant_at) / counts_above).sum(1) / relevance.sum(1)
    got = average_precision(scores, relevance, None, "sorting", steepness=5.0, distribution="cauchy")
    torch.testing.assert_close(got, expected)


def test_fastap_matches_pml_fastaploss():
    from pytorch_metric_learning.losses import FastAPLoss
    from pytorch_metric_learning.reducers import DoNothingReducer

    embeddings = F.normalize(torch.randn(24, 8), dim=1)
    labels = torch.arange(6).repeat(4)
    expected = FastAPLoss(num_bins=10, reducer=DoNothingReducer())(embeddings, labels)["loss"]["losses"]
    scores = embeddings @ embeddings.T
    not_self = ~torch.eye(24, dtype=torch.bool)
    relevance = (labels[:, None] == labels[None, :]) & not_self
    got = 1 - average_precision(scores, relevance, not_self, "fastap", num_bins=10)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("estimator", ["binned", "sigmoid", "sorting", "fastap"])
@pytest.mark.parametrize("case", ["ties", "identical_embeddings", "single_positive"])
def test_gradients_are_finite(estimator, case):
    embeddings = torch.randn(10, 4)
    if case == "identical_embeddings":
        embeddings = torch.ones(10, 4)
    if case == "ties":
        embeddings = torch.eye(4).repeat(3, 1)[:10]  # scores tied in groups
    embeddings.requires_grad_(True)
    normalized = F.normalize(embeddings, dim=1)
    scores = normalized @ normalized.T
    not_self = ~torch.eye(10, dtype=torch.bool)
    relevance = torch.zeros(10, 10, dtype=torch.bool)
    relevance[torch.arange(10), (torch.arange(10) + 1) % 10] = True  # exactly one positive
    if case != "single_positive":
        relevance[torch.arange(10), (torch.arange(10) + 2) % 10] = True
    ap = average_precision(scores, relevance, not_self, estimator)
    assert torch.isfinite(ap).all() and ((ap >= 0) & (ap <= 1 + 1e-6)).all()
    ap.mean().backward()
    assert torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize("estimator", ["binned", "sigmoid", "sorting"])
def test_chunk_size_does_not_change_values_or_gradients(estimator):
    base = torch.randn(30, 20).tanh()
    relevance = torch.rand(30, 20) < 0.3
    relevance[:, 0] = True
    results = []
    for chunk_size in (1, 7, 30):
        scores = base.clone().requires_grad_(True)
        ap = average_precision(scores, relevance, None, estimator, chunk_size=chunk_size)
        ap.sum().backward()
        results.append((ap.detach(), scores.grad))
    for ap, grad in results[1:]:
        torch.testing.assert_close(ap, results[0][0])
        torch.testing.assert_close(grad, results[0][1])


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("estimator", ["sigmoid", "sorting", "binned"])
def test_work_per_chunk_is_bounded_and_never_cubic(estimator):
    """Largest intermediate of forward + backward: one chunk's work or the (Q, N) inputs,
    never (Q, N, N); and the memory held is linear in Q for a fixed N."""
    num_items, num_relevant, chunk = 64, 4, 8
    largest = {}
    for num_queries in (32, 64):
        scores = torch.randn(num_queries, num_items).tanh().requires_grad_(True)
        relevance = torch.zeros(num_queries, num_items, dtype=torch.bool)
        relevance[:, :num_relevant] = True
        with _LargestTensor() as tracker:
            average_precision(scores, relevance, None, estimator, chunk_size=chunk).sum().backward()
        largest[num_queries] = tracker.largest
    per_chunk = {
        "sigmoid": chunk * num_relevant * num_items,
        "sorting": 2 * chunk * num_items,
        "binned": 2 * chunk * (AP_ESTIMATORS["binned"]["num_bins"] + 3),  # both histograms: centres + 2
    }
    for num_queries, elements in largest.items():
        assert elements <= max(num_queries * num_items, per_chunk[estimator])
        assert elements < num_queries * num_items * num_items // 8


def test_invalid_items_do_not_count():
    scores, relevance = _separated_problem()
    valid = torch.ones_like(relevance)
    valid[:, 7:12] = False
    reduced = [s[v][None] for s, v in zip(scores, valid)]
    # Exact for the histogram and sigmoid estimators; the sorting network still lets the
    # (parked, bottom) invalid items mix a little with the lowest valid ones.
    for estimator, tolerance in (("binned", 2e-5), ("sigmoid", 2e-5), ("sorting", 1e-2)):
        full = average_precision(scores, relevance, valid, estimator)
        dropped = torch.cat(
            [average_precision(s, r[v][None], None, estimator) for s, r, v in zip(reduced, relevance, valid)]
        )
        torch.testing.assert_close(full, dropped, atol=tolerance, rtol=0)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda s, r: average_precision(s, r, estimator="nope"), ValueError, "Unknown AP estimator"),
        (lambda s, r: average_precision(s, r, temperature=0.1), TypeError, "does not take temperature"),
        (lambda s, r: average_precision(s, r, estimator="sigmoid", temperature=0.0), ValueError, "temperature"),
        (lambda s, r: average_precision(s, r, num_bins=0), ValueError, "num_bins"),
        (lambda s, r: average_precision(s, r, score_range=(1, -1)), ValueError, "score_range"),
        (lambda s, r: average_precision(s, r, chunk_size=0), ValueError, "chunk_size"),
        (lambda s, r: average_precision(s, r[:, :3]), ValueError, "shape of scores"),
        (lambda s, r: average_precision(s[0], r[0]), ValueError, "num_queries, num_items"),
        (lambda s, r: average_precision(s.long(), r), TypeError, "floating"),
        (lambda s, r: average_precision(s, r.float()), TypeError, "bool"),
        (lambda s, r: average_precision(s, torch.zeros_like(r)), ValueError, "no relevant"),
        (lambda s, r: average_precision(s, r, valid=~r), ValueError, "no relevant"),
        (lambda s, r: average_precision(s, r, estimator="sorting", sorting_network="x"), ValueError, "network"),
    ],
)
def test_bad_input(call, error, match):
    scores, relevance = _separated_problem(3, 6)
    with pytest.raises(error, match=match):
        call(scores, relevance)


def test_ap_of_a_perfect_and_a_reversed_ranking():
    scores = torch.linspace(1, -1, 10)[None].repeat(2, 1)
    relevance = torch.zeros(2, 10, dtype=torch.bool)
    relevance[0, :3] = True  # at the top
    relevance[1, -3:] = True  # at the bottom
    expected = torch.tensor([1.0, np.mean([1 / 8, 2 / 9, 3 / 10])], dtype=torch.float32)
    for estimator, settings in [("binned", dict(num_bins=100)), ("sigmoid", {}), ("sorting", dict(steepness=1e3))]:
        got = average_precision(scores, relevance, None, estimator, **settings)
        torch.testing.assert_close(got, expected, atol=5e-3, rtol=0)


def test_scores_outside_a_fixed_score_range_are_refused_not_clamped():
    scores = torch.tensor([[0.5, 1.8, -0.2]])
    relevant = torch.tensor([[True, False, False]])
    with pytest.raises(ValueError, match=r"outside score_range \(-1.0, 1.0\) \(valid scores span \[-0.2, 1.8\]\)"):
        average_precision(scores, relevant)
    # Rounding of a cosine (1 + 1e-7) is not clamping; the batch range takes any scores.
    average_precision(torch.tensor([[1.0 + 1e-7, 0.2, -1.0]]), relevant)
    torch.testing.assert_close(
        average_precision(scores, relevant, score_range="batch"), exact_average_precision(scores, relevant), atol=0.01, rtol=0
    )


@pytest.mark.parametrize("estimator", ["sigmoid", "sorting"])
def test_func_grad_through_the_checkpointed_estimators(estimator):
    # torch.func refuses checkpointing's saved-tensor hooks: under a transform the chunks
    # are not recomputed, and the gradient equals autograd's.
    generator = torch.Generator().manual_seed(40)
    scores = torch.rand(4, 10, generator=generator)
    relevance = torch.rand(4, 10, generator=generator) > 0.5
    relevance[:, 0] = True
    settings = {"sorting": dict(steepness=30.0), "sigmoid": dict(temperature=0.05)}[estimator]

    def total(s):
        return average_precision(s, relevance, estimator=estimator, **settings).sum()

    got = torch.func.grad(total)(scores)
    leaf = scores.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(total(leaf), leaf)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
