"""rankssl.pml.GroCoLoss and the pml wrappers against a brute-force loop with diffsort."""

import diffsort
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, losses, miners, reducers, regularizers
from pytorch_metric_learning.utils import distributed as pml_dist

from dist_utils import run_distributed
from rankssl import pml


def reference_anchor_loss(positive_scores, negative_scores):
    k = len(negative_scores)
    scores = torch.cat([negative_scores.sort().values, positive_scores.sort().values])[None]
    n = scores.shape[1]
    _, P = diffsort.DiffSortNet("odd_even", n, steepness=1.0, distribution="cauchy")(scores)
    target = torch.zeros(1, n)
    target[:, k:] = 1
    mass_positive = P[:, :, k:].sum(2).clip(0, 1)
    mass_negative = P[:, :, :k].sum(2).clip(0, 1)
    return (F.binary_cross_entropy(mass_positive, target) + F.binary_cross_entropy(mass_negative, 1 - target)) / 2


def reference_loss(emb, labels, ref_emb=None, ref_labels=None, k=10, p=None, pairs=None, score_fn=None):
    """Mean over anchors with a positive and a negative; hardest p positives, k negatives."""
    same_set = ref_emb is None
    ref_emb = emb if same_set else ref_emb
    ref_labels = labels if same_set else ref_labels
    score_fn = score_fn or (lambda a, b: F.normalize(a, dim=1) @ F.normalize(b, dim=1).T)
    scores = score_fn(emb, ref_emb.detach())
    per_anchor = []
    for a in range(len(emb)):
        if pairs is None:
            pos = [j for j in range(len(ref_emb)) if ref_labels[j] == labels[a] and not (same_set and j == a)]
            neg = [j for j in range(len(ref_emb)) if ref_labels[j] != labels[a]]
        else:
            pos = [int(j) for i, j in zip(pairs[0], pairs[1]) if i == a]
            neg = [int(j) for i, j in zip(pairs[2], pairs[3]) if i == a]
        if not pos or not neg:
            continue
        pos_scores = scores[a, pos].sort().values[: p or len(pos)]
        neg_scores = scores[a, neg].sort(descending=True).values[:k]
        per_anchor.append(reference_anchor_loss(pos_scores, neg_scores))
    return torch.stack(per_anchor).mean()


def _check(loss, expected, emb):
    (grad,) = torch.autograd.grad(loss, emb, retain_graph=True)
    (expected_grad,) = torch.autograd.grad(expected, emb)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=0)


def test_labels_define_positives_and_hardest_negatives():
    emb = torch.randn(24, 8, requires_grad=True)
    labels = torch.randint(0, 5, (24,))
    _check(pml.GroCoLoss(n_negatives=6)(emb, labels), reference_loss(emb, labels, k=6), emb)


def test_hardest_positives_only():
    emb = torch.randn(24, 8, requires_grad=True)
    labels = torch.arange(4).repeat(6)
    _check(pml.GroCoLoss(n_negatives=5, n_positives=2)(emb, labels), reference_loss(emb, labels, k=5, p=2), emb)


def test_ref_emb_and_ref_labels():
    emb = torch.randn(10, 8, requires_grad=True)
    labels = torch.randint(0, 3, (10,))
    ref, ref_labels = torch.randn(30, 8), torch.randint(0, 3, (30,))
    loss = pml.GroCoLoss(n_negatives=4)(emb, labels, ref_emb=ref, ref_labels=ref_labels)
    _check(loss, reference_loss(emb, labels, ref, ref_labels, k=4), emb)


def test_miner_indices_restrict_pairs():
    emb = torch.randn(24, 8, requires_grad=True)
    labels = torch.arange(6).repeat(4)
    pairs = miners.MultiSimilarityMiner(epsilon=0.2)(emb, labels)
    loss = pml.GroCoLoss(n_negatives=3)(emb, labels, indices_tuple=pairs)
    _check(loss, reference_loss(emb, labels, k=3, pairs=pairs), emb)


def test_non_inverted_distance_is_negated():
    emb = torch.randn(16, 8, requires_grad=True)
    labels = torch.arange(4).repeat(4)
    loss = pml.GroCoLoss(n_negatives=4, distance=distances.LpDistance(normalize_embeddings=False))(emb, labels)
    expected = reference_loss(emb, labels, k=4, score_fn=lambda a, b: -torch.cdist(a, b))
    _check(loss, expected, emb)


def test_reducers_and_regularizers_work_as_for_pml_losses():
    emb = torch.randn(16, 8, requires_grad=True)
    labels = torch.arange(4).repeat(4)
    mean_loss = pml.GroCoLoss(n_negatives=4)(emb, labels)
    sum_loss = pml.GroCoLoss(n_negatives=4, reducer=reducers.SumReducer())(emb, labels)
    torch.testing.assert_close(sum_loss, mean_loss * 16)
    regularizer = regularizers.LpRegularizer()
    regularized = pml.GroCoLoss(n_negatives=4, embedding_regularizer=regularizer, embedding_reg_weight=0.5)(emb, labels)
    torch.testing.assert_close(regularized, mean_loss + 0.5 * emb.norm(dim=1).mean())


def test_anchors_without_positives_or_with_few_negatives_never_nan():
    emb = torch.randn(7, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 2])  # 1 and 2 have no positive
    loss = pml.GroCoLoss(n_negatives=10)(emb, labels)  # class 0 anchors have 2 negatives only
    assert torch.isfinite(loss)
    _check(loss, reference_loss(emb, labels, k=10), emb)
    lonely = pml.GroCoLoss(n_negatives=3)(torch.randn(4, 8, requires_grad=True), torch.arange(4))
    assert lonely.item() == 0.0


def test_self_supervised_wrapper_accepts_rankssl_and_pml_losses():
    views = [torch.randn(8, 16, requires_grad=True) for _ in range(3)]
    wrapped = pml.SelfSupervisedLoss(pml.GroCoLoss(n_negatives=4))
    labels = torch.arange(8)
    expected = pml.GroCoLoss(n_negatives=4)(torch.cat(views[:2]), labels.repeat(2))
    torch.testing.assert_close(wrapped(views[0], views[1]), expected)
    three = wrapped(*views)
    torch.testing.assert_close(three, pml.GroCoLoss(n_negatives=4)(torch.cat(views), labels.repeat(3)))
    assert torch.isfinite(pml.SelfSupervisedLoss(losses.NTXentLoss())(views[0], views[1]))
    with pytest.raises(ValueError, match="does not support ArcFaceLoss"):
        pml.SelfSupervisedLoss(losses.ArcFaceLoss(10, 16))
    with pytest.raises(Exception, match="not supported for GroCoLoss"):
        losses.SelfSupervisedLoss(pml.GroCoLoss())  # the reason the wrapper exists
    with pytest.raises(ValueError, match="same shape|shape of embeddings"):
        wrapped(views[0], torch.randn(7, 16))


def test_cross_batch_memory_uses_the_bank_as_reference():
    loss_fn = pml.CrossBatchMemory(pml.GroCoLoss(n_negatives=4), embedding_size=8, memory_size=32)
    first_emb, first_labels = torch.randn(12, 8), torch.arange(6).repeat(2)
    loss_fn(first_emb, first_labels)
    emb = torch.randn(12, 8, requires_grad=True)
    labels = torch.arange(6).repeat(2)
    loss = loss_fn(emb, labels)
    bank = torch.cat([first_emb, emb.detach()])
    bank_labels = torch.cat([first_labels, labels])
    # Self-comparisons (an embedding against its own copy in the bank) are removed.
    pairs = [[], [], [], []]
    for a in range(12):
        for j in range(24):
            if j == 12 + a:
                continue
            side = 0 if bank_labels[j] == labels[a] else 2
            pairs[side].append(a)
            pairs[side + 1].append(j)
    pairs = [torch.tensor(p) for p in pairs]
    expected = reference_loss(emb, labels, bank, bank_labels, k=4, pairs=pairs)
    _check(loss, expected, emb)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: pml.GroCoLoss()(torch.randn(8, 4), torch.arange(7)), ValueError, r"labels must have shape \(8,\)"),
        (lambda: pml.GroCoLoss()(torch.randn(8, 4), torch.rand(8)), TypeError, "integer"),
        (lambda: pml.GroCoLoss()(torch.randn(8, 4)), ValueError, "labels|indices_tuple"),
        (lambda: pml.GroCoLoss()(torch.randn(8), torch.arange(8)), ValueError, "batch_size, dim"),
        (lambda: pml.GroCoLoss(n_negatives=0), ValueError, "n_negatives"),
        (lambda: pml.GroCoLoss(n_positives=0), ValueError, "n_positives"),
        (lambda: pml.GroCoLoss(sorting_network="x"), ValueError, "Unknown sorting network"),
        (lambda: pml.GroCoLoss(steepness=-2.0), ValueError, "steepness"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _distributed_wrapper(rank, world_size, emb, labels):
    batch = len(emb) // world_size
    local = emb[rank * batch : (rank + 1) * batch].clone().requires_grad_(True)
    local_labels = labels[rank * batch : (rank + 1) * batch]
    loss = pml_dist.DistributedLossWrapper(pml.GroCoLoss(n_negatives=4))(local, local_labels)
    loss.backward()
    return loss.detach(), local.grad


@pytest.mark.slow
@pytest.mark.dist
def test_distributed_loss_wrapper():
    emb, labels = torch.randn(16, 8), torch.arange(4).repeat(4)
    results = run_distributed(_distributed_wrapper, 2, emb, labels)
    # pml's wrapper computes the loss on the gathered batch (scaled by world size).
    expected = 2 * pml.GroCoLoss(n_negatives=4)(emb, labels)
    for loss, grad in results:
        torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("views, n_positives, n_negatives", [(2, 1, 6), (4, 2, 5), (3, 2, 30)])
def test_uniform_groups_equal_the_default(views, n_positives, n_negatives):
    generator = torch.Generator().manual_seed(50)
    emb = torch.randn(12 * views, 8, generator=generator).requires_grad_(True)
    labels = torch.arange(12).repeat(views)
    default = pml.GroCoLoss(n_negatives=n_negatives, n_positives=n_positives)(emb, labels)
    uniform = pml.GroCoLoss(n_negatives=n_negatives, n_positives=n_positives, uniform_groups=True)(emb, labels)
    _check(uniform, default, emb)


class _NoHostReads:
    """Make every read of a tensor's value on the host (``tolist``, ``item``, ``bool``,
    ``int``, ``float``) raise: on CPU tensors the launch counter cannot see them."""

    NAMES = ("tolist", "item", "__bool__", "__int__", "__float__", "__index__")

    def __enter__(self):
        self.saved = {name: getattr(torch.Tensor, name) for name in self.NAMES}

        def refuse(self, *args, **kwargs):
            raise AssertionError("a tensor value was read on the host (a host sync on the GPU)")

        for name in self.NAMES:
            setattr(torch.Tensor, name, refuse)
        return self

    def __exit__(self, *exc):
        for name, method in self.saved.items():
            setattr(torch.Tensor, name, method)


def test_uniform_groups_read_nothing_on_the_host():
    from rankssl.ops.validation import flush, validation_mode

    emb = torch.randn(32, 8, requires_grad=True)
    labels = torch.arange(16).repeat(2)
    uniform = pml.GroCoLoss(n_negatives=10, n_positives=1, uniform_groups=True)
    default = pml.GroCoLoss(n_negatives=10, n_positives=1)
    with validation_mode("lazy"):
        uniform(emb, labels)  # first call: kernels built, networks cached
        with _NoHostReads():
            uniform(emb, labels).backward()
        with pytest.raises(AssertionError, match="read on the host"), _NoHostReads():
            default(emb, labels)  # the default copies the group keys to the host
        flush()


def test_uniform_groups_refuse_a_batch_that_breaks_the_promise():
    from rankssl.ops.validation import flush, validation_mode

    emb = torch.randn(8, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])  # labels 3 and 4: no positive
    loss_fn = pml.GroCoLoss(n_negatives=2, n_positives=1, uniform_groups=True)
    with pytest.raises(ValueError, match="uniform_groups=True promises at least n_positives=1"):
        loss_fn(emb, labels)
    with validation_mode("lazy"), pytest.raises(ValueError, match="uniform_groups=True promises"):
        # The verdict travels to the host without blocking: raised by a later check or flush.
        loss_fn(emb, labels)
        flush()
    with pytest.raises(ValueError, match="uniform_groups=True needs n_positives"):
        pml.GroCoLoss(uniform_groups=True)
    with pytest.raises(TypeError, match="uniform_groups must be True or False"):
        pml.GroCoLoss(n_positives=1, uniform_groups="yes")


@pytest.mark.parametrize(
    "views, symmetric, settings",
    [
        (2, True, {}),
        (2, False, {}),
        (3, True, {}),
        (3, True, dict(n_positives=1)),
        (2, True, dict(n_negatives=40)),  # more than the batch has: clamped as the default clamps
        (2, False, dict(n_negatives=40)),
    ],
)
def test_self_supervised_wrapper_runs_groco_sync_free_with_the_default_values(views, symmetric, settings):
    """SelfSupervisedLoss knows every anchor's groups (its other views, all other images), so
    it runs GroCoLoss with uniform_groups; the values are those of the labelled default call."""
    from rankssl.ops.validation import flush, validation_mode

    generator = torch.Generator().manual_seed(51)
    batch = [torch.randn(6, 8, generator=generator).requires_grad_(True) for _ in range(views)]
    loss_fn = pml.GroCoLoss(**settings)
    wrapper = pml.SelfSupervisedLoss(loss_fn, symmetric=symmetric)
    labels = torch.arange(6)
    if symmetric:
        default = loss_fn(torch.cat(batch), labels.repeat(views))
    else:
        default = loss_fn(batch[0], labels, ref_emb=batch[1], ref_labels=labels.clone())
    wrapped = wrapper(*batch)
    torch.testing.assert_close(wrapped, default, rtol=0, atol=0)
    # stop_gradient: without symmetry, ref_emb (the second view) gets no gradient in either call
    expected = torch.autograd.grad(default, batch, allow_unused=True)
    got = torch.autograd.grad(wrapper(*batch), batch, allow_unused=True)
    for a, b in zip(got, expected, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert loss_fn.uniform_groups is False and loss_fn.n_positives == settings.get("n_positives")  # untouched
    with validation_mode("lazy"):
        wrapper(*batch)
        with _NoHostReads():
            wrapper(*batch).backward()
        flush()
