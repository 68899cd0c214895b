"""rankssl.losses.GroCoLoss against a loop over anchors re-derived from the paper with diffsort."""

import diffsort
import pytest
import torch
import torch.nn.functional as F

from dist_utils import run_distributed
from rankssl import GroCoLoss
from rankssl.losses import group_ordering_loss


def reference_groco(views, n_negatives, n_positive_views=None, stop_gradient=True, steepness=1.0):
    """Every view is an anchor; positives: the image's other global views; negatives: the
    K most similar other images under the anchor's view; BCE on the positive-block mass
    of diffsort's permutation matrix, averaged with the negative-block term."""
    num_views = len(views)
    num_global = n_positive_views or num_views
    total = 0.0
    for i in range(num_views):
        anchor = views[i].float()
        positives = [views[j] for j in range(num_global) if j != i]
        positive_scores = torch.stack(
            [F.cosine_similarity(anchor, p.detach() if stop_gradient else p, dim=1) for p in positives], 1
        )
        keys = anchor.detach() if stop_gradient else anchor
        negative_scores = F.normalize(anchor, dim=1) @ F.normalize(keys, dim=1).T
        negative_scores = negative_scores.masked_fill(torch.eye(len(anchor), dtype=torch.bool), float("-inf"))
        negative_scores = negative_scores.topk(n_negatives, dim=1).values.flip(1)
        scores = torch.cat([negative_scores, positive_scores.sort(1).values], 1)
        n = scores.shape[1]
        _, P = diffsort.DiffSortNet("odd_even", n, steepness=steepness, distribution="cauchy")(scores)
        mass_positive = P[:, :, n_negatives:].sum(2).clip(0, 1)
        mass_negative = P[:, :, :n_negatives].sum(2).clip(0, 1)
        target = torch.zeros(n)
        target[n_negatives:] = 1
        target = target.expand_as(mass_positive)
        total = total + (
            F.binary_cross_entropy(mass_positive, target) + F.binary_cross_entropy(mass_negative, 1 - target)
        ) / 2
    return total / num_views


@pytest.mark.parametrize(
    "num_views, n_positive_views, stop_gradient, steepness",
    [(2, None, True, 1.0), (4, None, True, 1.0), (5, 2, True, 1.0), (3, None, False, 1.0), (4, 3, True, 4.0)],
)
def test_matches_reference_loop(num_views, n_positive_views, stop_gradient, steepness):
    views = [torch.randn(16, 8, requires_grad=True) for _ in range(num_views)]
    expected = reference_groco(views, 10, n_positive_views, stop_gradient, steepness)
    expected_grads = torch.autograd.grad(expected, views)
    loss_fn = GroCoLoss(10, steepness=steepness, n_positive_views=n_positive_views, stop_gradient=stop_gradient)
    loss = loss_fn(views)
    grads = torch.autograd.grad(loss, views)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=0)


def test_positional_and_list_calls_agree():
    views = [torch.randn(12, 6) for _ in range(3)]
    loss_fn = GroCoLoss(5)
    assert loss_fn(*views) == loss_fn(views) == loss_fn(tuple(views))


def test_aligned_views_score_lower_than_random_ones():
    base = F.normalize(torch.randn(32, 16), dim=1)
    aligned = GroCoLoss(10)(base, base + 0.01 * torch.randn(32, 16))
    unrelated = GroCoLoss(10)(base, torch.randn(32, 16))
    assert aligned < unrelated


def _retrieval_accuracy(model, data, noise):
    generator = torch.Generator().manual_seed(5)
    a, b = (F.normalize(model(data + noise * torch.randn(data.shape, generator=generator)), dim=1) for _ in range(2))
    return ((a @ b.T).argmax(1) == torch.arange(len(data))).float().mean().item()


def test_training_makes_views_retrieve_each_other():
    torch.manual_seed(1)
    model = torch.nn.Linear(32, 8)
    data = torch.randn(64, 32)
    loss_fn = GroCoLoss(10)
    optimizer = torch.optim.SGD(model.parameters(), lr=20.0)  # GroCo's gradients are small
    with torch.no_grad():
        before = _retrieval_accuracy(model, data, 1.0)
    for _ in range(100):
        loss = loss_fn(*[model(data + torch.randn_like(data)) for _ in range(2)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = _retrieval_accuracy(model, data, 1.0)
    assert after > before + 0.1


def test_half_precision_views_compute_in_float32():
    views = [torch.randn(16, 8) for _ in range(2)]
    full = GroCoLoss(5)(views)
    half = GroCoLoss(5)([v.half() for v in views])
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, atol=5e-3, rtol=0)


def test_functional_core_shapes_and_perfect_order():
    positives = torch.full((4, 2), 0.9)
    negatives = torch.full((4, 3), -0.9)
    easy = group_ordering_loss(positives, negatives, steepness=50.0)
    hard = group_ordering_loss(negatives[:, :2], positives.repeat(1, 2)[:, :3], steepness=50.0)
    assert easy.shape == (4,)
    assert (easy < 0.05).all() and (hard > 1.0).all()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: GroCoLoss(3)(torch.randn(8, 4)), ValueError, "at least 2 views"),
        (lambda: GroCoLoss(3)(torch.randn(8, 4), torch.randn(8, 5)), ValueError, "same shape"),
        (lambda: GroCoLoss(3)(torch.randn(8, 4), torch.randn(7, 4)), ValueError, "same shape"),
        (lambda: GroCoLoss(3)(torch.ones(8, 4, dtype=torch.long), torch.ones(8, 4, dtype=torch.long)), TypeError, "floating-point"),
        (lambda: GroCoLoss(3)(torch.randn(8, 4, 2), torch.randn(8, 4, 2)), ValueError, "batch_size, dim"),
        (lambda: GroCoLoss(3)(torch.randn(1, 4), torch.randn(1, 4)), ValueError, "no negatives"),
        (lambda: GroCoLoss(3, n_positive_views=3)(torch.randn(8, 4), torch.randn(8, 4)), ValueError, "n_positive_views=3"),
        (lambda: GroCoLoss(0), ValueError, "n_negatives"),
        (lambda: GroCoLoss(3, n_positive_views=1), ValueError, "n_positive_views"),
        (lambda: GroCoLoss(3, sorting_network="shell"), ValueError, "Unknown sorting network"),
        (lambda: GroCoLoss(3, distribution="softmax"), ValueError, "Unknown relaxation"),
        (lambda: GroCoLoss(3, steepness=0), ValueError, "steepness"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _distributed_groco(rank, world_size, views):
    batch = views[0].shape[0] // world_size
    local = [v[rank * batch : (rank + 1) * batch].clone().requires_grad_(True) for v in views]
    loss = GroCoLoss(6, gather_distributed=True)(local)
    loss.backward()
    return loss.detach(), [v.grad for v in local]


@pytest.mark.slow
@pytest.mark.dist
def test_gather_distributed_matches_single_process():
    views = [torch.randn(16, 8) for _ in range(3)]
    results = run_distributed(_distributed_groco, 2, views)
    full = [v.clone().requires_grad_(True) for v in views]
    expected = GroCoLoss(6)(full)
    expected.backward()
    # The global loss is the mean of the ranks' losses; each rank's gradient is that of
    # the sum of all ranks' losses, i.e. world_size times the global loss's gradient.
    torch.testing.assert_close(sum(r[0] for r in results) / 2, expected.detach(), atol=1e-6, rtol=0)
    for rank, (_, grads) in enumerate(results):
        for grad, full_view in zip(grads, full):
            torch.testing.assert_close(grad / 2, full_view.grad[rank * 8 : (rank + 1) * 8], atol=1e-6, rtol=0)


def test_small_batch_uses_every_other_image_as_pml_does():
    # One rule for both objects: fewer than K candidates -> all of them are negatives.
    from rankssl import pml

    torch.manual_seed(0)
    a, b = torch.randn(8, 4), torch.randn(8, 4)
    torch.testing.assert_close(GroCoLoss(10)(a, b), GroCoLoss(7)(a, b))
    embeddings, labels = torch.cat([a, b]), torch.arange(8).repeat(2)
    # pml: 14 negatives per anchor, so K=20 clamps to 14, the same as K=14.
    torch.testing.assert_close(pml.GroCoLoss(20)(embeddings, labels), pml.GroCoLoss(14)(embeddings, labels))


def test_lightly_keywords_out0_out1():
    a, b = torch.randn(8, 4), torch.randn(8, 4)
    loss = GroCoLoss(4)
    torch.testing.assert_close(loss(out0=a, out1=b), loss(a, b))
    with pytest.raises(TypeError, match="out1 is missing"):
        loss(out0=a)
    with pytest.raises(TypeError, match="not both"):
        loss(a, out1=b)


@pytest.mark.parametrize("attribute, value, error", [
    ("n_negatives", 0, ValueError), ("steepness", 0.0, ValueError), ("sorting_network", "bitnic", ValueError),
    ("gradient_scale", float("inf"), ValueError), ("n_negatives", 2.5, TypeError),
])
def test_attributes_changed_after_construction_are_checked(attribute, value, error):
    from rankssl import pml

    for loss, args in ((GroCoLoss(4), (torch.randn(8, 4), torch.randn(8, 4))),
                       (pml.GroCoLoss(4), (torch.randn(16, 4), torch.arange(8).repeat(2)))):
        if attribute in ("steepness", "sorting_network") and isinstance(loss, pml.GroCoLoss):
            loss.sort_kwargs[attribute] = value
        else:
            setattr(loss, attribute, value)
        with pytest.raises(error, match=attribute):
            loss(*args)
