"""rankssl.ops.DiffSortNet against diffsort 0.2.0's DiffSortNet: constructor, attributes, numbers, errors."""

import pytest
import torch

diffsort = pytest.importorskip("diffsort")

from rankssl.ops import DiffSortNet  # noqa: E402

DISTRIBUTIONS = ["cauchy", "logistic", "logistic_phi", "gaussian", "reciprocal", "optimal"]


def _pair(*args, **kwargs):
    return diffsort.DiffSortNet(*args, **kwargs), DiffSortNet(*args, **kwargs)


@pytest.mark.parametrize("network", ["bitonic", "odd_even"])
@pytest.mark.parametrize("size", [2, 7, 13])
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_values_and_permutation_equal_diffsort(network, size, distribution):
    torch.manual_seed(size)
    theirs, ours = _pair(network, size, steepness=7.0, distribution=distribution)
    x = torch.randn(6, size, dtype=torch.float64)
    x[0, 1] = x[0, 0]  # a tie
    expected_values, expected_P = theirs(x)
    values, P = ours(x)
    torch.testing.assert_close(values, expected_values, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(P, expected_P, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("network", ["bitonic", "odd_even"])
def test_gradients_equal_diffsort(network):
    torch.manual_seed(0)
    theirs, ours = _pair(network, 10, steepness=4.0)
    x = torch.randn(4, 10, dtype=torch.float64)
    weights = torch.randn(4, 10, 10, dtype=torch.float64)
    grads = []
    for sorter in (theirs, ours):
        leaf = x.clone().requires_grad_(True)
        values, P = sorter(leaf)
        (values.sum() + (P * weights).sum()).backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-9)


def test_positional_constructor_and_attributes_match():
    theirs, ours = _pair("odd_even", 6, "cpu", 3.0, 0.5, None, "logistic_phi")
    for name in ("sorting_network_type", "size", "steepness", "art_lambda", "distribution"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert isinstance(ours, torch.nn.Module)


def test_interpolation_type_is_an_alias_of_distribution():
    theirs, ours = _pair("bitonic", 4, interpolation_type="logistic")
    assert ours.distribution == theirs.distribution == "logistic"
    x = torch.randn(3, 4)
    torch.testing.assert_close(ours(x)[1], theirs(x)[1])


def test_steepness_changed_after_construction_takes_effect():
    theirs, ours = _pair("bitonic", 8, steepness=2.0)
    x = torch.randn(5, 8, dtype=torch.float64)
    before = ours(x)[1]
    for sorter in (theirs, ours):
        sorter.steepness = 40.0
        sorter.distribution = "logistic"
    after = ours(x)[1]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, theirs(x)[1], rtol=1e-9, atol=1e-9)


def test_float32_and_float16_match_diffsort():
    theirs, ours = _pair("odd_even", 7)
    x = torch.randn(4, 7)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-5)
    values, P = ours(x.half())
    assert values.dtype == P.dtype == torch.float16
    torch.testing.assert_close(values.float(), theirs(x.half())[0].float(), rtol=1e-2, atol=1e-2)


def _raises_like(call_theirs, call_ours):
    with pytest.raises(Exception) as expected:
        call_theirs()
    with pytest.raises(type(expected.value)) as ours:
        call_ours()
    assert isinstance(ours.value, (ValueError, TypeError)), "also a ValueError/TypeError with a message"
    return str(ours.value)


def test_same_error_types_for_bad_input():
    theirs, ours = _pair("bitonic", 4)
    message = _raises_like(lambda: theirs(torch.randn(2, 5)), lambda: ours(torch.randn(2, 5)))
    assert "(batch, 4)" in message
    _raises_like(lambda: theirs(torch.randn(2, 3, 4)), lambda: ours(torch.randn(2, 3, 4)))
    _raises_like(lambda: theirs(torch.randn(4)), lambda: ours(torch.randn(4)))
    message = _raises_like(lambda: diffsort.DiffSortNet("merge", 4), lambda: DiffSortNet("merge", 4))
    assert "odd_even" in message
    message = _raises_like(
        lambda: diffsort.DiffSortNet("bitonic", 4, distribution="logistic", interpolation_type="gaussian"),
        lambda: DiffSortNet("bitonic", 4, distribution="logistic", interpolation_type="gaussian"),
    )
    assert "interpolation_type" in message
    for sorter in (theirs, ours):
        sorter.distribution = "softmax"
    message = _raises_like(lambda: theirs(torch.randn(2, 4)), lambda: ours(torch.randn(2, 4)))
    assert "cauchy" in message


def test_refuses_what_diffsort_silently_accepts():
    with pytest.raises(ValueError, match="steepness"):
        DiffSortNet("bitonic", 4, steepness=-1.0)(torch.randn(2, 4))
    with pytest.raises(ValueError, match="size"):
        DiffSortNet("odd_even", 1)


def test_bitonic_mirrored_sorts_every_size_hard():
    sorter = DiffSortNet("bitonic_mirrored", 22, steepness=1e4)
    x = torch.randn(16, 22, dtype=torch.float64)
    values, P = sorter(x)
    torch.testing.assert_close(values, x.sort(dim=1).values, rtol=1e-3, atol=1e-3)
