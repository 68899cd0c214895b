"""The two Hydra front-ends share one core (rankssl.losses.hydra_base).

- The lightly-style and the pml ``HydraLoss`` take their settings, scale, partner draw and
  saved draw state from :class:`HydraLossBase` / :class:`PartnerDraw`, not from copies.
- Same seed, same labels: both draw the same partners; every process seeds with seed + rank.
- pml's ``forward`` hands its per-call inputs to the loss as arguments: no attribute is set.
- Values on fixed seeds equal those recorded before the core was shared (``BEFORE``), and a
  state dict in the layout earlier checkpoints hold still loads and continues their draws.
"""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import SumReducer

import rankssl.ops.dist as rankssl_dist
from rankssl.losses import HydraLoss as LightlyHydraLoss
from rankssl.losses.hydra import RANKSSL_VARIANT
from rankssl.losses.hydra_base import HydraLossBase, PartnerDraw
from rankssl.pml import HydraLoss as PMLHydraLoss

LABELS = torch.arange(12) % 4
SHARED = ("scale", "seed", "gate_mode", "_check_settings", "_partners", "_gate_penalty", "get_extra_state",
          "set_extra_state", "_init_common")


def _views(seed: int, n: int = 3, b: int = 12, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g) for _ in range(n)]


def _lightly(**kwargs) -> LightlyHydraLoss:
    torch.manual_seed(5)
    return LightlyHydraLoss(4, 8, embed_dim=8, hidden_dim=16, **kwargs)


def _pml(**kwargs) -> PMLHydraLoss:
    torch.manual_seed(5)
    return PMLHydraLoss(4, 8, embed_dim=8, hidden_dim=16, **kwargs)


# ---------------------------------------------------------------- one core


@pytest.mark.parametrize("front_end", [LightlyHydraLoss, PMLHydraLoss], ids=["lightly", "pml"])
def test_both_front_ends_take_the_shared_members_from_the_core(front_end):
    assert issubclass(front_end, HydraLossBase)
    for name in SHARED:
        owner = next(klass for klass in front_end.__mro__ if name in vars(klass))
        # the lightly-style loss adds its own settings (key views, warm-up) to the shared check
        assert owner is HydraLossBase or (front_end, name) == (LightlyHydraLoss, "_check_settings"), name
    assert not any(hasattr(front_end, name) for name in ("_draw", "_generator_on", "_seed_offset_by_rank"))


@pytest.mark.parametrize("settings", [
    dict(),
    dict(pair_draw="per_row"),
    dict(pairing="distinct", pair_draw="per_row"),
    dict(pair_draw="per_row", class_pair_weight=torch.arange(16.0).view(4, 4) + 1),
    dict(reduction="anchor_mean", pair_draw="per_row", gate_penalty=0.1),
], ids=["permutation", "per_row", "distinct", "weighted", "anchor_mean"])
def test_same_seed_same_draws_in_both_front_ends(settings):
    """One (B, D) batch, every row a key: the lightly-style loss (key_views='all') and the pml loss
    compute the same thing, so equal values over consecutive calls mean equal draws."""
    lightly, pml = _lightly(seed=7, key_views="all", **settings), _pml(seed=7, **settings)
    pml.feature_filter.load_state_dict(lightly.feature_filter.state_dict())
    for step in range(3):
        z = _views(step, n=1)[0]
        torch.testing.assert_close(pml(z, LABELS), lightly(z, LABELS))
    assert torch.equal(pml.get_extra_state(), lightly.get_extra_state())


@pytest.mark.parametrize("make, call", [
    (_lightly, lambda loss, vs: loss(vs[:2], LABELS)),
    (_pml, lambda loss, vs: loss(vs[0], LABELS)),
], ids=["lightly", "pml"])
def test_each_process_seeds_its_draw_with_seed_plus_rank(monkeypatch, make, call):
    def values(loss):
        return [call(loss, _views(step)).detach() for step in range(3)]

    at_rank_0_seed_6 = values(make(seed=6))
    at_rank_0_seed_5 = values(make(seed=5))
    monkeypatch.setattr(rankssl_dist, "rank", lambda: 1)
    at_rank_1_seed_5 = values(make(seed=5))
    assert PartnerDraw(5).process_seed() == 6
    torch.testing.assert_close(at_rank_1_seed_5, at_rank_0_seed_6, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(at_rank_1_seed_5, at_rank_0_seed_5))


def test_partner_draw_state_round_trip_and_the_permutation_of_the_authors():
    draw = PartnerDraw(seed=3)
    assert draw.state().numel() == 10  # the header only: no generator before the first draw
    y2, admissible = draw(LABELS, LABELS, LABELS, None, "arbitrary", "permutation")
    assert admissible is None
    assert torch.equal(y2, LABELS[torch.randperm(12, generator=torch.Generator().manual_seed(3))])
    saved, again = draw.state(), PartnerDraw(seed=None)
    again.load_state(saved)
    assert again.seed == 3
    for pairing, pair_draw in [("arbitrary", "permutation"), ("distinct", "per_row"), ("arbitrary", "per_row")]:
        a = draw(LABELS, LABELS, LABELS, None, pairing, pair_draw)
        b = again(LABELS, LABELS, LABELS, None, pairing, pair_draw)
        assert torch.equal(a[0], b[0])
    assert PartnerDraw(None)(LABELS, LABELS, LABELS, None, "identical", "per_row")[0].equal(LABELS)


# ---------------------------------------------------------------- pml: per-call state as arguments


def _record_setattr(self, name, value):
    """Record every attribute set on the loss once ``watching`` is on, then set it."""
    if self.__dict__.get("watching"):
        self.__dict__["set_during_call"].append(name)
    torch.nn.Module.__setattr__(self, name, value)


_SetAttrSpy = type("_SetAttrSpy", (PMLHydraLoss,), {"__setattr__": _record_setattr})
_LightlySetAttrSpy = type("_LightlySetAttrSpy", (LightlyHydraLoss,), {"__setattr__": _record_setattr})


@pytest.mark.parametrize("call", [
    lambda loss, z, r: loss(z, LABELS),
    lambda loss, z, r: loss(z, LABELS, pair_labels=LABELS.flip(0)),
    lambda loss, z, r: loss(z, LABELS, ref_emb=r, ref_labels=LABELS, ref_self_index=torch.arange(12)),
    lambda loss, z, r: loss(z, LABELS, ref_emb=r, ref_labels=LABELS, pair_labels=LABELS.roll(1)),
], ids=["drawn", "pair_labels", "ref_self_index", "ref-pair_labels"])
@pytest.mark.parametrize("settings", [dict(), dict(reduction="anchor_mean", pair_draw="per_row", reducer=SumReducer(),
                                                   gate_penalty=0.1)], ids=["default", "variant"])
def test_pml_forward_sets_no_attribute(call, settings):
    loss = _SetAttrSpy(4, 8, embed_dim=8, hidden_dim=16, seed=0, **settings)
    z, r = _views(0, n=2)
    before = dict(vars(loss))
    loss.__dict__.update(watching=True, set_during_call=[])
    for _ in range(2):  # the first call creates the generator and the shape cache: inside their holders
        call(loss, z, r)
    assert loss.__dict__["set_during_call"] == []
    after = {k: v for k, v in vars(loss).items() if k not in ("watching", "set_during_call")}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


@pytest.mark.parametrize("settings", [dict(), dict(RANKSSL_VARIANT), dict(gather_distributed=True)],
                         ids=["default", "variant", "gathered"])
def test_lightly_forward_sets_no_attribute_either(settings):
    loss = _LightlySetAttrSpy(4, 8, embed_dim=8, hidden_dim=16, seed=0, **settings)
    before = dict(vars(loss))
    loss.__dict__.update(watching=True, set_during_call=[])
    for step in range(2):
        loss(_views(step, n=2), LABELS)
    loss(_views(2, n=2), LABELS, pair_labels=LABELS.roll(1))
    assert loss.__dict__["set_during_call"] == []
    after = {k: v for k, v in vars(loss).items() if k not in ("watching", "set_during_call")}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


def test_pml_forward_equals_pmls_own_forward_route():
    """The loss's forward replays pml's ``BaseMetricLossFunction.forward``: same result as pml's own
    route through ``compute_loss`` (drawn partners, no ref_self_index), regularizer included."""
    from pytorch_metric_learning.regularizers import LpRegularizer

    for kwargs in (dict(), dict(embedding_regularizer=LpRegularizer(), reducer=SumReducer(), gate_penalty=0.2)):
        ours = _pml(seed=2, **kwargs)
        theirs = copy.deepcopy(ours)
        for step in range(2):
            z, r = _views(step, n=2)
            torch.testing.assert_close(ours(z, LABELS), BaseMetricLossFunction.forward(theirs, z, LABELS))
            torch.testing.assert_close(ours(z, LABELS, ref_emb=r, ref_labels=LABELS),
                                       BaseMetricLossFunction.forward(theirs, z, LABELS, None, r, LABELS))


@pytest.mark.slow
def test_pml_compiled_equals_eager_with_per_call_arguments():
    import warnings

    eager = _pml(seed=3)
    compiled = torch.compile(copy.deepcopy(eager), backend="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(2):  # the second call with the generator advanced
            z, r = _views(step, n=2)
            for kwargs in (dict(), dict(pair_labels=LABELS.roll(step + 1)),
                           dict(ref_emb=r, ref_labels=LABELS, ref_self_index=torch.arange(12))):
                leaf = z.clone().requires_grad_(True)
                want = eager(leaf, LABELS, **kwargs)
                (want_grad,) = torch.autograd.grad(want, leaf)
                got = compiled(leaf, LABELS, **kwargs)
                (got_grad,) = torch.autograd.grad(got, leaf)
                torch.testing.assert_close(got, want)
                torch.testing.assert_close(got_grad, want_grad)


# ---------------------------------------------------------------- values and checkpoints as before

# (loss, norm of the gradient of the first view) for three consecutive calls, and the first
# 16 hex digits of the SHA-256 of the state dict's "_extra_state" after them; recorded with the
# front-ends as they were before they shared the core.
BEFORE = {
    "lightly/default/2": ([(5.4366813, 0.79920793), (5.3072548, 0.79567403), (4.588356, 0.73845851)], "178a167e93f9fa32"),
    "lightly/default/3": ([(6.265027, 0.45684144), (6.4737377, 0.41459489), (6.1816339, 0.42705125)], "178a167e93f9fa32"),
    "lightly/variant/2": ([(5.6805639, 0.59854954), (6.8198309, 0.65991306), (6.0428286, 0.65973556)], "f81b14bf562d4791"),
    "lightly/variant/3": ([(6.7296014, 0.43837267), (7.812397, 0.40240595), (7.3393383, 0.37017918)], "1ea04c5298d7d054"),
    "lightly/distinct/2": ([(4.9144506, 0.84189212), (5.0206079, 0.64212328), (4.5871687, 0.63802171)], "a67588b41e158f73"),
    "lightly/distinct/3": ([(6.4385333, 0.47459552), (6.7193584, 0.46426025), (6.9304118, 0.44330505)], "79e32ddfa67fa3ce"),
    "lightly/weighted/2": ([(5.5896378, 0.82038164), (5.3461771, 0.71306854), (4.6656685, 0.65181774)], "a67588b41e158f73"),
    "lightly/weighted/3": ([(6.803966, 0.44950968), (6.4663734, 0.40134025), (6.6677442, 0.39291379)], "79e32ddfa67fa3ce"),
    "lightly/learn_scale_penalty/2": ([(5.4600053, 0.79920793), (5.3307261, 0.79567403), (4.6115875, 0.73845851)], "178a167e93f9fa32"),
    "lightly/learn_scale_penalty/3": ([(6.2883511, 0.45684144), (6.4972091, 0.41459489), (6.2048655, 0.42705125)], "178a167e93f9fa32"),
    "lightly/gathered/2": ([(5.4366817, 0.79920793), (5.3072548, 0.79567403), (4.588356, 0.73845851)], "178a167e93f9fa32"),
    "lightly/gathered/3": ([(6.2650266, 0.45684144), (6.4737377, 0.41459489), (6.1816339, 0.42705125)], "178a167e93f9fa32"),
    "lightly/identical_product/2": ([(7.1970797, 0.81680876), (5.5901713, 1.1499648), (6.6712008, 0.81750321)], "f773301e0581ea0b"),
    "lightly/identical_product/3": ([(7.6729488, 0.43093896), (6.8654571, 0.54934752), (7.7029138, 0.45740581)], "f773301e0581ea0b"),
    "pml/default": ([(6.1128869, 1.6368905), (3.6284101, 1.1767626), (5.951581, 1.7578299)], "178a167e93f9fa32"),
    "pml/default/ref": ([(5.2698956, 0.98816729), (5.7318277, 0.96825403), (4.8876243, 0.92187917)], "178a167e93f9fa32"),
    "pml/anchor_mean_per_row": ([(5.2614288, 1.7301123), (5.6752472, 1.3609623), (3.8066518, 1.3104187)], "6e9da932c00a4713"),
    "pml/anchor_mean_per_row/ref": ([(5.3062282, 0.92934668), (4.8526745, 1.4048134), (5.9006805, 0.83861113)], "6e9da932c00a4713"),
    "pml/distinct": ([(5.6685629, 1.8929721), (6.4573994, 1.5360914), (4.9692116, 1.0911108)], "aff923d2ccf177b8"),
    "pml/distinct/ref": ([(5.0405002, 0.93133444), (6.2598991, 1.186936), (5.6942968, 0.85965139)], "aff923d2ccf177b8"),
    "pml/sum_reducer": ([(201.72525, 54.017384), (116.10912, 37.656403), (202.35376, 59.766212)], "178a167e93f9fa32"),
    "pml/sum_reducer/ref": ([(189.71625, 35.574024), (206.34583, 34.857143), (175.95447, 33.187649)], "178a167e93f9fa32"),
    "pml/penalty": ([(6.1595345, 1.6368905), (3.6753526, 1.1767626), (5.998044, 1.7578299)], "178a167e93f9fa32"),
    "pml/penalty/ref": ([(5.3165436, 0.98816729), (5.7787714, 0.96825403), (4.9340873, 0.92187917)], "178a167e93f9fa32"),
}

LIGHTLY_SETTINGS = {
    "default": {}, "variant": dict(RANKSSL_VARIANT), "distinct": dict(pairing="distinct", pair_draw="per_row"),
    "weighted": dict(pair_draw="per_row", class_pair_weight=torch.arange(16.0).view(4, 4) + 1),
    "learn_scale_penalty": dict(learn_scale=True, gate_penalty=0.1), "gathered": dict(gather_distributed=True),
    "identical_product": dict(pairing="identical", gate_mode="product"),
}
PML_SETTINGS = {
    "default": {}, "anchor_mean_per_row": dict(reduction="anchor_mean", pair_draw="per_row"),
    "distinct": dict(pairing="distinct", pair_draw="per_row"), "sum_reducer": dict(reducer=SumReducer()),
    "penalty": dict(gate_penalty=0.2, learn_scale=True),
}


def _cases():
    for name, settings in LIGHTLY_SETTINGS.items():
        for num_views in (2, 3):
            yield f"lightly/{name}/{num_views}", lambda s=settings: _lightly(seed=3, **s), \
                lambda loss, vs, n=num_views: loss(vs[:n], LABELS)
    for name, settings in PML_SETTINGS.items():
        yield f"pml/{name}", lambda s=settings: _pml(seed=3, **s), lambda loss, vs: loss(vs[0], LABELS)
        yield f"pml/{name}/ref", lambda s=settings: _pml(seed=3, **s), \
            lambda loss, vs: loss(vs[0], LABELS, ref_emb=vs[1], ref_labels=LABELS)


@pytest.mark.parametrize("name, make, call", list(_cases()), ids=[case[0] for case in _cases()])
def test_values_and_draw_state_equal_those_before_the_core_was_shared(name, make, call):
    loss = make()
    got = []
    for step in range(3):
        views = [v.requires_grad_(True) for v in _views(step)]
        value = call(loss, views)
        (grad,) = torch.autograd.grad(value, views[:1])
        got.append((float(value), float(grad.norm())))
    want, digest = BEFORE[name]
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)
    state = loss.state_dict()["_extra_state"]
    assert hashlib.sha256(bytes(state.tolist())).hexdigest()[:16] == digest


def _old_layout_state(seed: int, generator: torch.Generator) -> torch.Tensor:
    """The ``_extra_state`` layout of existing checkpoints, written out independently of the code:
    seed as int64 little-endian, has-seed flag 1, device code 1 (CPU), the generator's state bytes."""
    header = list(seed.to_bytes(8, "little", signed=True)) + [1, 1]
    return torch.cat([torch.tensor(header, dtype=torch.uint8), generator.get_state()])


@pytest.mark.parametrize("front_end", ["lightly", "pml"])
def test_a_checkpoint_in_the_existing_layout_loads_and_continues_its_draws(front_end):
    stream = torch.Generator().manual_seed(11)
    torch.randperm(12, generator=stream)  # the saved run had drawn once
    make = _lightly if front_end == "lightly" else _pml
    resumed, explicit = make(seed=99), make(seed=99)
    state = resumed.state_dict()
    state["_extra_state"] = _old_layout_state(11, stream)
    resumed.load_state_dict(state)
    assert resumed.seed == 11
    partners = LABELS[torch.randperm(12, generator=stream)]  # the next draw of the saved stream
    z = _views(0)
    if front_end == "lightly":
        torch.testing.assert_close(resumed(z[:2], LABELS), explicit(z[:2], LABELS, pair_labels=partners))
    else:
        torch.testing.assert_close(resumed(z[0], LABELS), explicit(z[0], LABELS, pair_labels=partners))
