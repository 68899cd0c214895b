"""Hydra on the code path a CUDA tensor takes: no host sync, counted launches, compile, the
generator in the state dict, settings checked on every call, pml's efficient distributed path
and lightly's call forms."""

import os
import sys

import pytest
import torch
from pytorch_metric_learning.losses import SupConLoss
from pytorch_metric_learning.utils import distributed as pml_dist

from dist_utils import run_distributed

from rankssl.losses import HydraLoss
from rankssl.losses.hydra import RANKSSL_VARIANT
from rankssl.ops.validation import flush, validation_mode
from rankssl.pml import HydraLoss as PMLHydraLoss

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from launch_count import LaunchCounter  # noqa: E402

B, D, C = 256, 32, 10


def _count(step):
    step()
    with LaunchCounter() as counter:
        step()
    return counter


def _views(seed=0, b=B, d=D):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, d, generator=g).requires_grad_(True), torch.randn(b, d, generator=g).requires_grad_(True),
            torch.arange(b) % C)


@pytest.mark.parametrize("front_end", ["lightly", "lightly-variant", "pml"])
def test_no_host_sync_and_launches_at_most_supcon_at_batch_256(front_end):
    z0, z1, y = _views()
    z, yy = torch.cat([z0, z1]), torch.cat([y, y])
    variant = RANKSSL_VARIANT if front_end == "lightly-variant" else {}
    loss_fn = PMLHydraLoss(C, D, embed_dim=16, hidden_dim=16, seed=0) if front_end == "pml" else \
        HydraLoss(C, D, embed_dim=16, hidden_dim=16, seed=0, **variant)
    supcon = SupConLoss()

    def clear():
        z0.grad = z1.grad = None
        for p in loss_fn.parameters():
            p.grad = None  # as optimizer.zero_grad() leaves them

    def hydra_step():
        clear()
        (loss_fn(z, yy) if front_end == "pml" else loss_fn([z0, z1], y)).backward()

    def supcon_step():
        clear()
        supcon(z, yy).backward()

    with validation_mode("lazy"):
        hydra = _count(hydra_step)
        peer = _count(supcon_step)
        flush()
    assert hydra.syncs == 0, dict(hydra.syncs_by_name)
    # Measured 97 (lightly), 99 (lightly, rankssl's variant) and 87 (pml) against SupCon's 97 on
    # these views (99 on the benchmark's), the feature filter's MLP included.
    # SupCon's own count depends on the data (97 to 99); the variant's (V*B, V*B) masks cost 2 more
    slack = 2 if front_end == "lightly-variant" else 0
    assert hydra.launches <= peer.launches + slack, (hydra.launches, peer.launches, dict(hydra.by_name))
    # every lazy verdict of the call reaches the host in one copy
    assert hydra.by_name["aten::_to_copy"] == 1, dict(hydra.by_name)


@pytest.mark.parametrize("front_end", ["lightly", "pml"])
def test_collected_lazy_checks_raise_the_first_failure(front_end):
    """The checks a call collects travel to the host together and are still raised, in order."""
    loss_fn = HydraLoss(C, D, embed_dim=8, hidden_dim=8) if front_end == "lightly" else \
        PMLHydraLoss(C, D, embed_dim=8, hidden_dim=8)
    z0, z1, _ = _views(b=8)
    z1 = z1.detach().clone()
    z1[3, 2] = float("nan")
    one_class = torch.zeros(8, dtype=torch.long)  # a second failure for the lightly-style loss
    with validation_mode("lazy"), pytest.raises(ValueError, match="non-finite value at row 3, column 2"):
        if front_end == "lightly":
            loss_fn([z0, z1], one_class)
        else:
            loss_fn(torch.cat([z1, z0]), torch.cat([one_class, one_class + 1]))
        flush()
    if front_end == "lightly":
        with validation_mode("lazy"), pytest.raises(ValueError, match="single class"):
            loss_fn([z0, z0], one_class)
            flush()


def test_lazy_checks_still_raise():
    loss_fn = HydraLoss(C, D, embed_dim=8, hidden_dim=8)
    z0, z1, _ = _views(b=8)
    with validation_mode("lazy"), pytest.raises(ValueError, match="single class"):
        # a single class: deferred, raised at the next validated call (on the CPU, already
        # within the call: its verdict is ready at once) or at flush()
        loss_fn([z0, z1], torch.zeros(8, dtype=torch.long))
        flush()


@pytest.mark.slow
def test_compiled_equals_eager():
    z0, z1, y = _views(1, b=16, d=8)
    eager = HydraLoss(C, 8, embed_dim=8, hidden_dim=8, seed=3)
    compiled_module = HydraLoss(C, 8, embed_dim=8, hidden_dim=8, seed=3)
    compiled_module.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_module)
    for _ in range(2):  # the second call runs the compiled code with the generator advanced
        want = eager([z0, z1], y)
        (want_grad,) = torch.autograd.grad(want, z0)
        got = compiled([z0, z1], y)
        (got_grad,) = torch.autograd.grad(got, z0)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got_grad, want_grad)


# ---------------------------------------------------------------- the generator in the state dict


@pytest.mark.parametrize("front_end", ["lightly", "pml"])
@pytest.mark.parametrize("variant", [{}, RANKSSL_VARIANT])
def test_state_dict_round_trip_reproduces_the_next_draws(front_end, variant):
    z0, z1, y = _views(2, b=12, d=8)
    if front_end == "lightly":
        make = lambda: HydraLoss(C, 8, embed_dim=8, hidden_dim=8, seed=5, **variant)  # noqa: E731
        call = lambda m: m([z0, z1], y)  # noqa: E731
    else:
        pml_variant = {"reduction": "anchor_mean", "pair_draw": "per_row"} if variant else {}
        make = lambda: PMLHydraLoss(C, 8, embed_dim=8, hidden_dim=8, seed=5, **pml_variant)  # noqa: E731
        call = lambda m: m(torch.cat([z0, z1]), torch.cat([y, y]))  # noqa: E731
    run = make()
    fresh = make()
    fresh.load_state_dict(run.state_dict())  # before any draw: no generator yet, the seed carries it
    torch.testing.assert_close(call(fresh), call(run))
    call(run)
    saved = run.state_dict()
    following = [call(run) for _ in range(2)]  # the uninterrupted run
    resumed = make()
    call(resumed)  # its own generator has moved on; loading must replace it
    resumed.load_state_dict(saved)
    for want in following:
        torch.testing.assert_close(call(resumed), want)


def test_generator_state_of_another_device_type_gives_a_reproducible_stream():
    loss = HydraLoss(C, 8, embed_dim=8, hidden_dim=8, seed=1)
    z0, z1, y = _views(3, b=12, d=8)
    loss([z0, z1], y)
    state = loss.state_dict()
    extra = state["_extra_state"].clone()
    assert extra[9] == 1  # a CPU generator's state
    extra[9] = 2  # as if saved from a CUDA generator
    state["_extra_state"] = extra
    a, b = (HydraLoss(C, 8, embed_dim=8, hidden_dim=8, seed=1) for _ in range(2))
    a.load_state_dict(state)
    b.load_state_dict(state)
    torch.testing.assert_close(a([z0, z1], y), b([z0, z1], y))
    with pytest.raises(ValueError, match="extra state"):
        a.set_extra_state("not a state")


# ---------------------------------------------------------------- settings changed after construction


@pytest.mark.parametrize("front_end", ["lightly", "pml"])
@pytest.mark.parametrize("attribute, value, match", [
    ("temperature", 0, "temperature"), ("temperature", float("nan"), "temperature"),
    ("gate_penalty", -1.0, "gate_penalty"), ("pairing", "all", "pairing"), ("reduction", "sum", "reduction"),
    ("pair_draw", "rows", "pair_draw"),
])
def test_attributes_changed_after_construction_are_checked(front_end, attribute, value, match):
    z0, z1, y = _views(4, b=8, d=8)
    loss = HydraLoss(C, 8, embed_dim=8, hidden_dim=8) if front_end == "lightly" else PMLHydraLoss(C, 8, embed_dim=8, hidden_dim=8)
    setattr(loss, attribute, value)
    with pytest.raises(ValueError, match=match):
        loss([z0, z1], y) if front_end == "lightly" else loss(z0, y)


def test_lightly_key_views_changed_after_construction_is_checked():
    z0, z1, y = _views(4, b=8, d=8)
    loss = HydraLoss(C, 8, embed_dim=8, hidden_dim=8)
    loss.key_views = "mine"
    with pytest.raises(ValueError, match="key_views"):
        loss([z0, z1], y)


# ---------------------------------------------------------------- lightly's call forms


def test_lightly_call_forms_agree_and_labels_as_a_third_view_are_refused():
    z0, z1, y = _views(5, b=8, d=8)
    loss = HydraLoss(C, 8, embed_dim=8, hidden_dim=8).eval()
    want = loss([z0, z1], y, pair_labels=y.flip(0))
    torch.testing.assert_close(loss(z0, z1, labels=y, pair_labels=y.flip(0)), want)
    torch.testing.assert_close(loss(out0=z0, out1=z1, labels=y, pair_labels=y.flip(0)), want)
    with pytest.raises(TypeError, match="labels="):
        loss(z0, z1, y)
    with pytest.raises(TypeError, match="out1"):
        loss(out0=z0, labels=y)


# ---------------------------------------------------------------- pml's DistributedLossWrapper(efficient=True)


def test_pml_accepts_the_all_pairs_tuple_of_the_efficient_wrapper_and_refuses_a_miners():
    """What ``DistributedLossWrapper(efficient=True)`` calls, simulated in one process: the local rows
    against the gathered ones (local first) with every pair but the self-comparisons."""
    g = torch.Generator().manual_seed(6)
    local, others = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    labels, other_labels = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([2, 1, 0, 3, 3, 1])
    all_emb, all_labels = torch.cat([local, others]), torch.cat([labels, other_labels])
    loss = PMLHydraLoss(4, 8, embed_dim=8, hidden_dim=8).eval()
    pairs = torch.tensor([1, 2, 0, 3, 0, 1])
    indices = pml_dist.get_indices_tuple(labels, all_labels)
    got = loss(local, labels, indices, all_emb, all_labels, pair_labels=pairs)
    want = loss(local, labels, ref_emb=all_emb, ref_labels=all_labels, pair_labels=pairs, ref_self_index=torch.arange(6))
    torch.testing.assert_close(got, want)
    mined = tuple(part[:3] for part in indices)
    with pytest.raises(ValueError, match="efficient=False"):
        loss(local, labels, mined, all_emb, all_labels)


def _efficient_wrapper(rank, world_size):
    g = torch.Generator().manual_seed(7)
    emb, labels = torch.randn(12, 8, generator=g), torch.arange(12) % 4
    half = 12 // world_size
    local = emb[rank * half:(rank + 1) * half].clone().requires_grad_(True)
    loss_fn = PMLHydraLoss(4, 8, embed_dim=8, hidden_dim=8, pairing="identical").eval()
    loss_fn.load_state_dict(torch.load(os.environ["HYDRA_TEST_STATE"]))
    loss = pml_dist.DistributedLossWrapper(loss_fn, efficient=True)(local, labels[rank * half:(rank + 1) * half])
    loss.backward()
    order = torch.cat([torch.arange(rank * half, (rank + 1) * half),
                       torch.tensor([i for i in range(12) if not rank * half <= i < (rank + 1) * half])])
    return loss.detach(), local.grad, emb, labels, order


@pytest.mark.dist
@pytest.mark.slow
def test_pml_under_the_efficient_distributed_wrapper(tmp_path):
    loss_fn = PMLHydraLoss(4, 8, embed_dim=8, hidden_dim=8, pairing="identical").eval()
    path = tmp_path / "state.pt"
    torch.save(loss_fn.state_dict(), path)
    os.environ["HYDRA_TEST_STATE"] = str(path)
    try:
        results = run_distributed(_efficient_wrapper, 2)
    finally:
        del os.environ["HYDRA_TEST_STATE"]
    for rank, (loss, grad, emb, labels, order) in enumerate(results):
        local = emb[rank * 6:(rank + 1) * 6].clone().requires_grad_(True)
        ref = torch.cat([local, emb[order[6:]]])
        want = 2 * loss_fn(local, labels[rank * 6:(rank + 1) * 6], ref_emb=ref, ref_labels=labels[order],
                           ref_self_index=torch.arange(6))
        want.backward()
        torch.testing.assert_close(loss, want.detach())
        torch.testing.assert_close(grad, local.grad)


@pytest.mark.parametrize("num_views", [2, 3])
@pytest.mark.parametrize("variant", [{}, {"pair_draw": "per_row"}, {"reduction": "anchor_mean"}])
def test_batched_directions_equal_the_masked_full_matrix(num_views, variant):
    """SimLAP's directions computed as one batch equal the masked (V*B, V*B) computation that the
    distributed path takes (``gather_distributed=True`` in one process), values and gradients."""
    g = torch.Generator().manual_seed(8)
    views = [torch.randn(12, 8, generator=g).requires_grad_(True) for _ in range(num_views)]
    y = torch.arange(12) % 4
    batched = HydraLoss(4, 8, embed_dim=8, hidden_dim=8, seed=1, **variant)
    masked = HydraLoss(4, 8, embed_dim=8, hidden_dim=8, seed=1, gather_distributed=True, **variant)
    masked.load_state_dict(batched.state_dict())
    want, got = masked(views, y), batched(views, y)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, views), torch.autograd.grad(want, views)):
        torch.testing.assert_close(a, b)
