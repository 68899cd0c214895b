"""GroCo with every other image as a negative (K = B - 1) takes a sort instead of topk:
the loss and gradients equal those of the topk selection, which stays for K < B - 1."""

import pytest
import torch

from rankssl.losses import GroCoLoss


def _topk_negatives(loss: GroCoLoss, anchor: torch.Tensor, num_negatives=None) -> torch.Tensor:
    """The selection as it was before the sort path: K largest other scores, ascending."""
    candidates = anchor.detach() if loss.stop_gradient else anchor
    scores = anchor @ candidates.T
    own = torch.arange(anchor.shape[0])
    scores = scores.index_put((own, own), torch.tensor(float("-inf")))
    return scores.topk(num_negatives or loss.n_negatives, dim=1).values.flip(1)


def _loss_and_grads(loss: GroCoLoss, views):
    leaves = [v.clone().requires_grad_(True) for v in views]
    value = loss(*leaves)
    return value.detach(), torch.autograd.grad(value, leaves)


@pytest.mark.parametrize("batch, views, stop_gradient", [(16, 2, False), (33, 3, True), (24, 2, True)])
def test_all_negatives_sort_equals_topk(monkeypatch, batch, views, stop_gradient):
    generator = torch.Generator().manual_seed(batch)
    data = [torch.randn(batch, 8, dtype=torch.float64, generator=generator) for _ in range(views)]
    loss = GroCoLoss(n_negatives=batch - 1, stop_gradient=stop_gradient)
    got_value, got_grads = _loss_and_grads(loss, data)

    monkeypatch.setattr(GroCoLoss, "_hardest_negatives", _topk_negatives)
    want_value, want_grads = _loss_and_grads(loss, data)
    assert torch.equal(got_value, want_value)
    for got, want in zip(got_grads, want_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
        assert got.abs().max() > 0


def test_all_negatives_are_every_other_score_ascending():
    anchor = torch.nn.functional.normalize(torch.randn(9, 4, generator=torch.Generator().manual_seed(3)), dim=1)
    got = GroCoLoss(n_negatives=8)._hardest_negatives(anchor)
    scores = (anchor @ anchor.T).numpy()
    for row in range(9):
        others = sorted(scores[row, col] for col in range(9) if col != row)
        assert got[row].tolist() == pytest.approx(others, abs=0, rel=0)
