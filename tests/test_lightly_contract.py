"""lightly's loss conventions, checked against lightly's own losses."""

import pytest
import torch
from lightly.loss import NTXentLoss

from rankssl.losses import GroCoLoss, HydraLoss, S2R2Loss

LOSSES = {
    "GroCoLoss": lambda **kw: GroCoLoss(n_negatives=2, **kw),
    "S2R2Loss": lambda **kw: S2R2Loss(**kw),
    "HydraLoss": lambda **kw: HydraLoss(num_classes=3, dim=8, embed_dim=4, hidden_dim=8, **kw),
}


@pytest.mark.parametrize("name", LOSSES)
def test_gather_distributed_without_torch_distributed_raises_at_construction(name, monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_available", lambda: False)
    with pytest.raises(ValueError) as lightly_error:
        NTXentLoss(gather_distributed=True)  # the reference behaviour
    with pytest.raises(ValueError, match="gather_distributed") as ours:
        LOSSES[name](gather_distributed=True)
    assert type(ours.value) is type(lightly_error.value)
    LOSSES[name](gather_distributed=False)  # without gathering, nothing is needed


@pytest.mark.parametrize("name", LOSSES)
def test_gather_distributed_outside_a_process_group_is_accepted(name):
    # As lightly: available but not initialised is fine; the loss then sees one process.
    assert LOSSES[name](gather_distributed=True).gather_distributed is True
    NTXentLoss(gather_distributed=True)
