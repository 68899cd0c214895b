"""Value checks without host syncs: RANKSSL_VALIDATE / validation_mode (full, lazy, auto)."""

import os
import sys

import pytest
import torch

from rankssl.ops import validation
from rankssl.ops.validation import (
    check_finite,
    check_labels,
    check_views,
    current_validation_mode,
    defer_check,
    flush,
    validation_mode,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from launch_count import LaunchCounter  # noqa: E402


@pytest.fixture(autouse=True)
def _no_pending_left():
    validation._PENDING.clear()
    yield
    validation._PENDING.clear()


def _views_with_nan(view: int, row: int, column: int = 2):
    views = [torch.randn(6, 4) for _ in range(3)]
    views[view][row, column] = float("nan")
    return views


def test_lazy_check_issues_no_host_sync_and_raises_at_the_next_call():
    bad = _views_with_nan(view=1, row=3)
    with validation_mode("lazy"):
        with LaunchCounter() as counter:
            check_views(bad)  # returns: the verdict is still on its way
        assert counter.syncs == 0 and counter.launches > 0
        with pytest.raises(ValueError, match=r"View 1 holds a non-finite value at row 3, column 2"):
            check_views([torch.randn(6, 4), torch.randn(6, 4)])
        # Raised once: the next call goes through.
        check_views([torch.randn(6, 4), torch.randn(6, 4)])
        flush()


def test_lazy_check_raises_at_flush_naming_tensor_and_row():
    scores = torch.randn(5, 7)
    scores[4, 0] = float("inf")
    with validation_mode("lazy"):
        check_finite([("scores", scores)], row_axis_name="query")
        with pytest.raises(ValueError, match=r"scores holds a non-finite value at query 4, column 0"):
            flush()
        flush()  # nothing left


def test_lazy_good_input_raises_nothing_and_full_mode_raises_at_once():
    with validation_mode("lazy"):
        check_views([torch.randn(4, 3), torch.randn(4, 3)])
        flush()
    with validation_mode("full"), pytest.raises(ValueError, match=r"View 0 holds a non-finite value \(nan\) at row 1"):
        check_views(_views_with_nan(view=0, row=1))
    assert not validation._PENDING


def test_auto_is_full_on_cpu_and_env_variable_chooses(monkeypatch):
    monkeypatch.delenv("RANKSSL_VALIDATE", raising=False)
    assert current_validation_mode() == "auto"
    with pytest.raises(ValueError, match="View 2"):
        check_views(_views_with_nan(view=2, row=0))  # auto on CPU tensors: at once
    monkeypatch.setenv("RANKSSL_VALIDATE", "lazy")
    assert current_validation_mode() == "lazy"
    check_views(_views_with_nan(view=2, row=0))
    with pytest.raises(ValueError, match="View 2 holds a non-finite value at row 0"):
        flush()
    monkeypatch.setenv("RANKSSL_VALIDATE", "lazzy")
    with pytest.raises(ValueError, match="RANKSSL_VALIDATE.*Did you mean 'lazy'"):
        current_validation_mode()
    with pytest.raises(ValueError, match="validation mode"):
        validation_mode("sometimes")


def test_context_manager_restores_the_previous_mode():
    with validation_mode("full"):
        with validation_mode("lazy"):
            assert current_validation_mode() == "lazy"
        assert current_validation_mode() == "full"


def test_defer_check_full_and_lazy():
    with validation_mode("full"):
        defer_check(torch.tensor(False), "not raised")
        with pytest.raises(ValueError, match="fewer than 2 classes"):
            defer_check(torch.tensor(True), "fewer than 2 classes")
    with validation_mode("lazy"):
        with LaunchCounter() as counter:
            defer_check(torch.tensor(True), "fewer than 2 classes")
        assert counter.syncs == 0
        with pytest.raises(ValueError, match="fewer than 2 classes"):
            flush()
    with pytest.raises(TypeError, match="defer_check"):
        defer_check(True, "x")


def test_lazy_label_range_check():
    with validation_mode("lazy"):
        with LaunchCounter() as counter:
            check_labels(torch.tensor([0, 1, 5]), num_classes=3)
        assert counter.syncs == 0
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
            flush()
