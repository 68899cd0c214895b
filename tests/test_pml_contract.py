"""pytorch-metric-learning's generic loss behaviours, run against every rankssl pml loss.

References are independent of the code under test where the behaviour allows it: reducers
against their formula on the unreduced losses, wrappers against the loss called on the
inputs the wrapper is documented to build (a brute-force memory bank, labels from views),
``DistributedLossWrapper`` on 2 CPU processes against the single process.
"""

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners, reducers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper

from dist_utils import run_distributed

from rankssl.pml import CrossBatchMemory, GroCoLoss, HydraLoss, S2R2Loss, SelfSupervisedLoss

B, D, C = 12, 8, 4


def make_groco(**kw):
    return GroCoLoss(n_negatives=3, **kw)


def make_s2r2(**kw):
    return S2R2Loss(**kw)


def make_hydra(num_classes=C, pairing="identical", **kw):
    """Same weights and pair draws for every call (pairing 'identical' draws nothing)."""
    torch.manual_seed(123)
    kw.setdefault("reduction", "anchor_mean")  # one loss per anchor ("element"), as the other losses
    return HydraLoss(num_classes, D, embed_dim=8, hidden_dim=16, pairing=pairing, seed=0, **kw)


FACTORIES = {"GroCoLoss": make_groco, "S2R2Loss": make_s2r2, "HydraLoss": make_hydra}
PAIR_LOSSES = ["GroCoLoss", "S2R2Loss"]  # take pml's pairs (indices_tuple, miners)


def batch(seed=0, dtype=torch.float32, b=B):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, D, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    labels = torch.arange(C).repeat(b // C + 1)[:b][torch.randperm(b, generator=g)]
    return emb, labels


def grad_of(loss_fn, emb, *args, **kwargs):
    emb = emb.detach().clone().requires_grad_(True)
    loss = loss_fn(emb, *args, **kwargs)
    loss.backward()
    return loss.detach(), emb.grad


# ---------------------------------------------------------------- no valid pairs


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("labels", ["single_class", "all_distinct"])
def test_batch_without_pairs_gives_zero_loss_that_backpropagates(name, labels):
    emb, _ = batch()
    y = torch.zeros(B, dtype=torch.long) if labels == "single_class" else torch.arange(B)
    loss_fn = FACTORIES[name](num_classes=B) if name == "HydraLoss" else FACTORIES[name]()
    loss = loss_fn(emb, y)
    assert loss.requires_grad
    loss.backward()  # an unlucky batch never stops training
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    if name == "HydraLoss" and labels == "all_distinct":
        # Hydra's positives are the partner class's items: all-distinct labels still pair up.
        loss_fn = make_hydra(num_classes=B, pairing="distinct", pair_draw="per_row")
        assert loss_fn(emb, y) > 0
    else:
        assert loss.item() == 0.0
        assert emb.grad.abs().max() < 1e-6  # S2R2 on one class: every item relevant, AP = 1


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_anchors_without_positives_are_left_out(name):
    emb, labels = batch()
    labels = labels.clone()
    labels[0] = C + 5  # a class nobody else has: no positive for anchor 0
    unreduced = FACTORIES[name](reducer=reducers.DoNothingReducer())(emb, labels)
    assert 0 not in unreduced["loss"]["indices"].tolist()
    assert len(unreduced["loss"]["indices"]) == B - 1


# ---------------------------------------------------------------- ref_emb / ref_labels


@pytest.mark.parametrize("name", FACTORIES)
def test_ref_emb_is_a_set_order_and_size_free(name):
    emb, labels = batch(0)
    ref, ref_labels = batch(1, b=2 * B)
    loss = FACTORIES[name]()(emb, labels, ref_emb=ref, ref_labels=ref_labels)
    perm = torch.randperm(2 * B, generator=torch.Generator().manual_seed(2))
    permuted = FACTORIES[name]()(emb, labels, ref_emb=ref[perm], ref_labels=ref_labels[perm])
    torch.testing.assert_close(permuted, loss)
    loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


# ---------------------------------------------------------------- miners


def _miners():
    return {
        "AngularMiner": miners.AngularMiner(angle=20),
        "BatchEasyHardMiner": miners.BatchEasyHardMiner(),
        "BatchHardMiner": miners.BatchHardMiner(),
        "DistanceWeightedMiner": miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4),
        "HDCMiner": miners.HDCMiner(filter_percentage=0.5),
        "MultiSimilarityMiner": miners.MultiSimilarityMiner(epsilon=0.5),
        "PairMarginMiner": miners.PairMarginMiner(pos_margin=0.2, neg_margin=0.8),
        "TripletMarginMiner": miners.TripletMarginMiner(margin=0.5, type_of_triplets="all"),
        "UniformHistogramMiner": miners.UniformHistogramMiner(num_bins=10, pos_per_bin=5, neg_per_bin=5),
    }


@pytest.mark.parametrize("miner_name", list(_miners()))
@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_indices_tuple_from_every_miner(name, miner_name):
    emb, labels = batch(3)
    indices_tuple = _miners()[miner_name](emb, labels)
    loss, grad = grad_of(FACTORIES[name](), emb, labels, indices_tuple)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # Only the set of mined pairs matters: the pair form, shuffled and duplicated, gives the same loss.
    a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels)
    g = torch.Generator().manual_seed(0)
    sp, sn = torch.randperm(len(a1), generator=g), torch.randperm(len(a2), generator=g)
    pairs = (torch.cat([a1[sp], a1]), torch.cat([p[sp], p]), torch.cat([a2[sn], a2]), torch.cat([n[sn], n]))
    torch.testing.assert_close(grad_of(FACTORIES[name](), emb, labels, pairs)[0], loss)
    if len(a1) and len(a2):
        # anchors the miner gave no positive get no loss
        unreduced = FACTORIES[name](reducer=reducers.DoNothingReducer())(emb, labels, indices_tuple)
        assert set(unreduced["loss"]["indices"].tolist()) <= set(a1.tolist())


def test_embeddings_already_packaged_as_triplets():
    emb, _ = batch(4)
    labels = torch.tensor([0, 0, 1] * (B // 3))
    indices_tuple = miners.EmbeddingsAlreadyPackagedAsTriplets()(emb, labels)
    anchors = torch.arange(0, B, 3)
    pairs = (anchors, anchors + 1, anchors, anchors + 2)  # each row's (anchor, positive, negative)
    for name in PAIR_LOSSES:
        loss, grad = grad_of(FACTORIES[name](), emb, labels, indices_tuple)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        torch.testing.assert_close(FACTORIES[name]()(emb, labels, pairs), loss)


def test_hydra_refuses_miners_with_a_reason():
    emb, labels = batch()
    with pytest.raises(ValueError, match="class pairs"):
        make_hydra()(emb, labels, miners.BatchHardMiner()(emb, labels))


# ---------------------------------------------------------------- reducers


def _reduce_reference(losses, indices, labels, reducer_name):
    if reducer_name in ("MeanReducer", "PerAnchorReducer"):
        return losses.mean()
    if reducer_name == "SumReducer":
        return losses.sum()
    if reducer_name == "AvgNonZeroReducer":
        return losses[losses > 0].mean()
    if reducer_name == "ThresholdReducer":
        return losses[losses > 0.3].mean()
    if reducer_name == "ClassWeightedReducer":
        weights = torch.arange(1.0, C + 1)
        return (losses * weights[labels[indices]]).mean()
    raise AssertionError(reducer_name)


REDUCERS = {
    "MeanReducer": lambda: reducers.MeanReducer(),
    "SumReducer": lambda: reducers.SumReducer(),
    "AvgNonZeroReducer": lambda: reducers.AvgNonZeroReducer(),
    "ThresholdReducer": lambda: reducers.ThresholdReducer(low=0.3),
    "ClassWeightedReducer": lambda: reducers.ClassWeightedReducer(weights=torch.arange(1.0, C + 1)),
    "PerAnchorReducer": lambda: reducers.PerAnchorReducer(),
}


@pytest.mark.parametrize("reducer_name", REDUCERS)
@pytest.mark.parametrize("name", FACTORIES)
def test_every_reducer_reduces_the_unreduced_losses(name, reducer_name):
    emb, labels = batch(5)
    unreduced = FACTORIES[name](reducer=reducers.DoNothingReducer())(emb, labels)["loss"]
    assert unreduced["reduction_type"] == "element"
    expected = _reduce_reference(unreduced["losses"], unreduced["indices"], labels, reducer_name)
    loss, grad = grad_of(FACTORIES[name](reducer=REDUCERS[reducer_name]()), emb, labels)
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-6)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", FACTORIES)
def test_multiple_reducers_and_sum_reducer_agree(name):
    emb, labels = batch(6)
    total = FACTORIES[name](reducer=reducers.MultipleReducers({"loss": reducers.SumReducer()}))(emb, labels)
    torch.testing.assert_close(total, FACTORIES[name](reducer=reducers.SumReducer())(emb, labels))


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
@pytest.mark.parametrize("name", FACTORIES)
def test_float16_and_float64(name, dtype):
    emb32, labels = batch(7)
    emb = emb32.detach().to(dtype).requires_grad_(True)
    loss = FACTORIES[name]()(emb, labels)
    loss.backward()
    assert torch.isfinite(loss) and emb.grad.dtype == dtype and torch.isfinite(emb.grad).all()
    reference = FACTORIES[name]()(emb.detach().double(), labels)
    tolerance = 5e-2 if dtype == torch.float16 else 1e-5
    torch.testing.assert_close(loss.double(), reference.double(), rtol=tolerance, atol=tolerance)


# ---------------------------------------------------------------- wrappers


@pytest.mark.parametrize("name", FACTORIES)
def test_multiple_losses_is_the_weighted_sum(name):
    emb, labels = batch(8)
    weights = [0.3, 2.0]
    combined = pml_losses.MultipleLosses([FACTORIES[name](), pml_losses.ContrastiveLoss()], weights=weights)
    expected = weights[0] * FACTORIES[name]()(emb, labels) + weights[1] * pml_losses.ContrastiveLoss()(emb, labels)
    torch.testing.assert_close(combined(emb, labels), expected)


@pytest.mark.parametrize("name", FACTORIES)
def test_self_supervised_loss_labels_rows_by_image(name):
    view0, _ = batch(9)
    view1, _ = batch(10)
    kwargs = {"num_classes": B} if name == "HydraLoss" else {}
    wrapped = SelfSupervisedLoss(FACTORIES[name](**kwargs))
    expected = FACTORIES[name](**kwargs)(torch.cat([view0, view1]), torch.arange(B).repeat(2))
    torch.testing.assert_close(wrapped(view0, view1), expected)
    asymmetric = SelfSupervisedLoss(FACTORIES[name](**kwargs), symmetric=False)(view0, view1)
    expected = FACTORIES[name](**kwargs)(view0, torch.arange(B), ref_emb=view1, ref_labels=torch.arange(B))
    torch.testing.assert_close(asymmetric, expected)


@pytest.mark.parametrize("name", FACTORIES)
def test_pml_own_wrappers_refuse_by_name_and_ours_refuse_lightly_style_losses(name):
    import rankssl.losses as lightly_style

    with pytest.raises(Exception, match="not supported"):
        pml_losses.SelfSupervisedLoss(FACTORIES[name]())  # why rankssl.pml ships its own
    lightly_loss = {
        "GroCoLoss": lambda: lightly_style.GroCoLoss(),
        "S2R2Loss": lambda: lightly_style.S2R2Loss(),
        "HydraLoss": lambda: lightly_style.HydraLoss(num_classes=C, dim=D, embed_dim=4, hidden_dim=8),
    }[name]()
    for wrapper in (lambda: SelfSupervisedLoss(lightly_loss), lambda: CrossBatchMemory(lightly_loss, D)):
        with pytest.raises(TypeError, match=f"rankssl.pml.{name}"):
            wrapper()


class BruteForceMemory:
    """The last ``size`` (embedding, label) pairs seen, kept in a plain list."""

    def __init__(self, size):
        self.size, self.items = size, []

    def add(self, emb, labels):
        self.items = (self.items + [(e, int(y)) for e, y in zip(emb.detach(), labels)])[-self.size:]

    def tensors(self):
        return torch.stack([e for e, _ in self.items]), torch.tensor([y for _, y in self.items])


@pytest.mark.parametrize("name", FACTORIES)
def test_cross_batch_memory_against_a_brute_force_memory_bank(name):
    memory_size, steps = 20, 4  # 4 batches of 8 wrap around the memory
    wrapped = CrossBatchMemory(FACTORIES[name](), D, memory_size=memory_size)
    bank = BruteForceMemory(memory_size)
    for step in range(steps):
        emb, labels = batch(20 + step, b=8)
        bank.add(emb, labels)
        ref, ref_labels = bank.tensors()
        own = torch.arange(len(ref) - 8, len(ref))  # the batch's own copies: newest rows
        if name == "HydraLoss":
            expected = FACTORIES[name]()(emb, labels, ref_emb=ref, ref_labels=ref_labels, ref_self_index=own)
        else:
            a1, p, a2, n = [], [], [], []
            for i in range(8):
                for j in range(len(ref)):
                    if labels[i] == ref_labels[j] and j != own[i]:
                        a1.append(i), p.append(j)
                    elif labels[i] != ref_labels[j]:
                        a2.append(i), n.append(j)
            pairs = tuple(torch.tensor(x, dtype=torch.long) for x in (a1, p, a2, n))
            expected = FACTORIES[name]()(emb, labels, pairs, ref_emb=ref, ref_labels=ref_labels)
        loss, grad = grad_of(wrapped, emb, labels)
        torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-6)
        assert torch.isfinite(grad).all()


def test_cross_batch_memory_hydra_with_arbitrary_pairs_trains():
    wrapped = CrossBatchMemory(make_hydra(pairing="arbitrary"), D, memory_size=32)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    for step in range(3):
        emb, labels = batch(30 + step)
        loss = wrapped(emb, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss) and emb.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: CrossBatchMemory(make_groco(), D, 8)(torch.randn(12, D), torch.arange(12)), "memory_size=8"),
        (lambda: CrossBatchMemory(make_groco(), D, 64)(torch.randn(12, D + 1), torch.arange(12)), "embedding_size=8"),
        (lambda: CrossBatchMemory(make_groco(), D, 64)(torch.randn(12, D), torch.arange(10)), r"labels must have shape \(12,\)"),
        (lambda: CrossBatchMemory(make_groco(), D, 0), "memory_size"),
        (lambda: CrossBatchMemory(make_hydra(), D, 64, miner=miners.BatchHardMiner()), "miner"),
    ],
)
def test_cross_batch_memory_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- DistributedLossWrapper


def _distributed_grads(rank, world_size):
    emb, labels = batch(40)
    half = B // world_size
    results = {}
    for name, factory in FACTORIES.items():
        local = emb.detach()[rank * half:(rank + 1) * half].clone().requires_grad_(True)
        loss_fn = factory()
        loss = DistributedLossWrapper(loss_fn)(local, labels[rank * half:(rank + 1) * half])
        loss.backward()
        results[name] = (loss.detach(), local.grad, [p.grad.clone() for p in loss_fn.parameters()])
    return results


@pytest.mark.dist
@pytest.mark.slow
def test_distributed_loss_wrapper_gradients_equal_single_process():
    world_size = 2
    results = run_distributed(_distributed_grads, world_size)  # one start-up for the three losses
    emb, labels = batch(40)
    half = B // world_size
    for name, factory in FACTORIES.items():
        loss_fn = factory()
        loss, grad = grad_of(loss_fn, emb, labels)
        for rank, by_name in enumerate(results):
            rank_loss, rank_grad, rank_params = by_name[name]
            # pml multiplies by world_size, which DDP's gradient averaging divides out again.
            torch.testing.assert_close(rank_loss, world_size * loss, rtol=1e-5, atol=1e-6)
            expected = world_size * grad[rank * half:(rank + 1) * half]
            torch.testing.assert_close(rank_grad, expected, rtol=1e-4, atol=1e-6)
            for got, param in zip(rank_params, loss_fn.parameters()):
                torch.testing.assert_close(got, world_size * param.grad, rtol=1e-4, atol=1e-6)
