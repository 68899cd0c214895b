"""rankssl.pml.S2R2Loss: brute-force AP, pml's FastAPLoss, the lightly loss, ref_emb,
indices_tuple, reducers, SelfSupervisedLoss and CrossBatchMemory."""

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import FastAPLoss
from pytorch_metric_learning.miners import MultiSimilarityMiner
from pytorch_metric_learning.reducers import DoNothingReducer, ThresholdReducer
from sklearn.metrics import average_precision_score

import rankssl.losses
from rankssl.pml import CrossBatchMemory, S2R2Loss, SelfSupervisedLoss

EXACT = dict(estimator="sigmoid", temperature=1e-4)  # within ~1e-3 of the exact AP here


def _brute_force_losses(embeddings, labels, ref_emb=None, ref_labels=None, pairs=None):
    """{query: 1 - exact AP} by sklearn; pairs: (a1, p, a2, n) restricting each ranking."""
    same = ref_emb is None
    ref_emb = embeddings if same else ref_emb
    ref_labels = labels if same else ref_labels
    scores = F.normalize(embeddings, dim=1) @ F.normalize(ref_emb, dim=1).T
    out = {}
    for q in range(embeddings.shape[0]):
        if pairs is None:
            items = [k for k in range(ref_emb.shape[0]) if not (same and k == q)]
            relevant = [bool(ref_labels[k] == labels[q]) for k in items]
        else:
            a1, p, a2, n = pairs
            positives = set(p[a1 == q].tolist())
            items = sorted(positives | set(n[a2 == q].tolist()))
            relevant = [k in positives for k in items]
        if any(relevant):
            out[q] = 1 - average_precision_score(relevant, scores[q, items].numpy())
    return out


def _per_query(loss_fn, *args, **kwargs):
    loss_fn.reducer = DoNothingReducer()
    result = loss_fn(*args, **kwargs)
    return result["loss"]


def test_matches_brute_force_exact_ap():
    embeddings, labels = torch.randn(20, 6), torch.randint(0, 4, (20,))
    got = _per_query(S2R2Loss(**EXACT), embeddings, labels)
    expected = _brute_force_losses(embeddings, labels)
    assert got["indices"].tolist() == sorted(expected)
    torch.testing.assert_close(got["losses"], torch.tensor(list(expected.values()), dtype=torch.float32), atol=2e-3, rtol=0)


def test_fastap_estimator_equals_pml_fastaploss():
    embeddings = torch.randn(30, 8, requires_grad=True)
    labels = torch.randint(0, 5, (30,))
    labels[-1] = 99  # a query with no relevant item, left out by both
    expected = FastAPLoss(num_bins=10)(embeddings, labels)
    got = S2R2Loss("fastap", num_bins=10)(embeddings, labels)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    grad_expected = torch.autograd.grad(expected, embeddings)[0]
    grad_got = torch.autograd.grad(got, embeddings)[0]
    torch.testing.assert_close(grad_got, grad_expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("estimator", ["binned", "sigmoid", "sorting"])
def test_equals_lightly_loss_with_image_labels(estimator):
    views = [torch.randn(6, 8) for _ in range(3)]
    labels = torch.arange(6).repeat(3)
    expected = rankssl.losses.S2R2Loss(estimator)(views)
    torch.testing.assert_close(S2R2Loss(estimator)(torch.cat(views), labels), expected)


def test_ref_emb_is_the_database():
    embeddings, labels = torch.randn(8, 5), torch.randint(0, 3, (8,))
    ref_emb, ref_labels = torch.randn(15, 5), torch.arange(15) % 3
    got = _per_query(S2R2Loss(**EXACT), embeddings, labels, ref_emb=ref_emb, ref_labels=ref_labels)
    expected = _brute_force_losses(embeddings, labels, ref_emb, ref_labels)
    assert got["indices"].tolist() == sorted(expected) == list(range(8))
    torch.testing.assert_close(got["losses"], torch.tensor(list(expected.values()), dtype=torch.float32), atol=2e-3, rtol=0)


def test_indices_tuple_restricts_each_ranking():
    embeddings, labels = torch.randn(16, 6), torch.randint(0, 3, (16,))
    a1, p, a2, n = MultiSimilarityMiner(epsilon=0.2)(embeddings, labels)
    # Drop some pairs so that some queries keep no positive (they are left out).
    keep = torch.rand(a1.shape[0]) < 0.6
    pairs = (a1[keep], p[keep], a2, n)
    got = _per_query(S2R2Loss(**EXACT), embeddings, labels, indices_tuple=pairs)
    expected = _brute_force_losses(embeddings, labels, pairs=pairs)
    assert got["indices"].tolist() == sorted(expected)
    torch.testing.assert_close(got["losses"], torch.tensor(list(expected.values()), dtype=torch.float32), atol=2e-3, rtol=0)


def test_triplet_indices_tuple_without_labels():
    embeddings = torch.randn(6, 4)
    triplets = (torch.tensor([0, 0, 1]), torch.tensor([1, 1, 0]), torch.tensor([2, 3, 4]))
    got = _per_query(S2R2Loss(**EXACT), embeddings, None, indices_tuple=triplets)
    assert got["indices"].tolist() == [0, 1]


def test_queries_without_relevant_items_are_left_out():
    embeddings = torch.randn(7, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 3, 4])  # 4 singletons
    loss_fn = S2R2Loss()
    got = _per_query(loss_fn, embeddings, labels)
    assert got["indices"].tolist() == [0, 1, 2, 3]
    assert loss_fn.num_queries_without_relevant == 3
    loss_fn = S2R2Loss()
    assert float(loss_fn(embeddings, torch.arange(7)).detach()) == 0.0


def test_reducers_and_distances():
    embeddings, labels = torch.randn(12, 5), torch.arange(4).repeat(3)
    per_query = _per_query(S2R2Loss(), embeddings, labels)["losses"]
    torch.testing.assert_close(S2R2Loss()(embeddings, labels), per_query.mean())
    thresholded = S2R2Loss(reducer=ThresholdReducer(low=0.3))(embeddings, labels)
    torch.testing.assert_close(thresholded, per_query[per_query > 0.3].mean())
    # A distance (smaller = closer) is turned into a score; L2 on normalised vectors
    # ranks like cosine, so the exact AP is the same.
    l2 = S2R2Loss(distance=LpDistance(), score_range=(-2.0, 0.0), **{"estimator": "binned", "num_bins": 4000})
    cosine = S2R2Loss(num_bins=4000)
    torch.testing.assert_close(l2(embeddings, labels), cosine(embeddings, labels), atol=1e-2, rtol=0)


def test_self_supervised_wrapper_is_s2r2_over_views():
    views = [torch.randn(8, 6) for _ in range(4)]
    expected = rankssl.losses.S2R2Loss()(views)
    wrapped = SelfSupervisedLoss(S2R2Loss())
    torch.testing.assert_close(wrapped(*views), expected)
    two = rankssl.losses.S2R2Loss()(views[:2])
    torch.testing.assert_close(wrapped(views[0], views[1]), two)


def test_cross_batch_memory_uses_the_bank_as_database():
    loss_fn = CrossBatchMemory(S2R2Loss(**EXACT), embedding_size=6, memory_size=32)
    first, first_labels = torch.randn(10, 6), torch.arange(5).repeat(2)
    # With only this batch in memory the loss is the plain in-batch loss.
    torch.testing.assert_close(loss_fn(first, first_labels), S2R2Loss(**EXACT)(first, first_labels))
    second = torch.randn(10, 6, requires_grad=True)
    loss = loss_fn(second, first_labels)
    loss.backward()
    assert torch.isfinite(second.grad).all() and second.grad.abs().sum() > 0
    memory = torch.cat([first, second.detach()])
    memory_labels = first_labels.repeat(2)
    # The bank holds each query itself (the wrapper excludes it) and 19 other items.
    per_query = []
    scores = F.normalize(second.detach(), dim=1) @ F.normalize(memory, dim=1).T
    for q in range(10):
        items = [k for k in range(20) if k != 10 + q]
        relevant = [bool(memory_labels[k] == first_labels[q]) for k in items]
        per_query.append(1 - average_precision_score(relevant, scores[q, items].numpy()))
    assert abs(float(loss.detach()) - sum(per_query) / 10) < 2e-3


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: S2R2Loss("nope"), ValueError, "Unknown AP estimator"),
        (lambda: S2R2Loss("sigmoid", temperature=-1.0), ValueError, "temperature"),
        (lambda: S2R2Loss(chunk_size=0), ValueError, "chunk_size"),
        (lambda: S2R2Loss()(torch.randn(4, 3), torch.arange(5)), ValueError, "labels must have shape"),
        (lambda: S2R2Loss()(torch.randn(4, 3), None), ValueError, "labels and indices_tuple"),
        (lambda: S2R2Loss()(torch.randn(4, 3), torch.arange(4), ref_emb=torch.randn(4, 5)), ValueError, "dim"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _numpy_exact_ap(scores, labels):
    """Brute-force AP per query (itself excluded), in NumPy: precision at every relevant item."""
    import numpy as np

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    out = []
    for q in range(len(labels)):
        others = [k for k in range(len(labels)) if k != q]
        relevant = [k for k in others if labels[k] == labels[q]]
        precisions = []
        for j in relevant:
            above = [k for k in others if scores[q, k] >= scores[q, j]]
            precisions.append(sum(labels[k] == labels[q] for k in above) / len(above))
        out.append(np.mean(precisions))
    return np.array(out)


@pytest.mark.parametrize("distance", [
    "LpDistance()", "LpDistance(normalize_embeddings=False)", "LpDistance(power=2)",
    "DotProductSimilarity(normalize_embeddings=False)", "SNRDistance()",
])
def test_non_cosine_distances_are_binned_over_their_own_range(distance):
    from pytorch_metric_learning import distances

    torch.manual_seed(0)
    distance_fn = eval(f"distances.{distance}")
    embeddings = (3 * torch.randn(48, 16)).requires_grad_(True)
    labels = torch.arange(12).repeat(4)
    loss_fn = S2R2Loss(distance=distance_fn)
    loss = loss_fn(embeddings, labels)
    loss.backward()
    with torch.no_grad():
        scores = distance_fn(embeddings)
        scores = scores if distance_fn.is_inverted else -scores
    exact = 1 - _numpy_exact_ap(scores, labels).mean()
    assert abs(float(loss) - exact) < 0.01, (float(loss), exact)
    # Not clamped: (almost) every embedding gets a gradient.
    assert (embeddings.grad.abs().sum(1) > 0).float().mean() > 0.95


def test_a_given_score_range_that_clamps_is_refused():
    from pytorch_metric_learning.distances import LpDistance

    embeddings, labels = 3 * torch.randn(24, 8), torch.arange(6).repeat(4)
    with pytest.raises(ValueError, match=r"outside score_range \(-1.0, 1.0\).*score_range='batch'"):
        S2R2Loss(distance=LpDistance(normalize_embeddings=False), score_range=(-1, 1))(embeddings, labels)


@pytest.mark.parametrize("with_ref", [False, True])
def test_sync_free_path_equals_the_full_path(with_ref):
    # Lazy validation (the GPU path) ranks every query and weights the ones without a
    # relevant item 0: same loss and gradients as dropping them.
    from rankssl.ops.validation import flush, validation_mode

    torch.manual_seed(1)
    base = torch.randn(20, 8)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 4, 5, 5] * 2)
    labels[[6, 7]] = torch.tensor([10, 11])  # two queries without a relevant item
    results = []
    for mode in ("full", "lazy"):
        embeddings = base.clone().requires_grad_(True)
        loss_fn = S2R2Loss()
        with validation_mode(mode):
            if with_ref:
                loss = loss_fn(embeddings[:10], labels[:10], ref_emb=embeddings[10:], ref_labels=labels[10:])
            else:
                loss = loss_fn(embeddings, labels)
            flush()
        loss.backward()
        results.append((loss.detach(), embeddings.grad, int(loss_fn.num_queries_without_relevant)))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    assert results[0][2] == results[1][2] > 0
