"""Class-pair sampling for Hydra (Wu et al., arXiv:2410.18200).

Every anchor of class y1 is given a partner class y2, drawn from the classes present in
the batch, so that the partner class has positives to offer:

- ``"arbitrary"``: y2 is the class of another sample of the batch, chosen uniformly
  (so y2 == y1 happens as often as the batch's class balance makes it happen);
- ``"distinct"``: as arbitrary, among samples of another class (y2 != y1);
- ``"identical"``: y2 = y1 (plain supervised contrastive pairs).

An optional (C, C) ``class_pair_weight`` makes the draw of partner sample j proportional
to ``class_pair_weight[y1, label_j]`` (e.g. a semantic-similarity prior). Draws go
through a ``torch.Generator`` so that a seed reproduces them.
"""

from __future__ import annotations

from typing import Optional

import torch

from rankssl.ops.validation import check_choice

__all__ = ["PAIRINGS", "sample_pair_labels"]

PAIRINGS = ("arbitrary", "distinct", "identical")


def check_pairing(pairing: str) -> None:
    check_choice(pairing, "pairing", PAIRINGS, "pairing")


def sample_pair_labels(
    labels: torch.Tensor,
    pairing: str = "arbitrary",
    pool_labels: Optional[torch.Tensor] = None,
    self_index: Optional[torch.Tensor] = None,
    class_pair_weight: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Draw a partner class y2 for every anchor label y1.

    Args:
        labels: (N,) integer class of each anchor (y1).
        pairing: ``"arbitrary"``, ``"distinct"`` or ``"identical"``.
        pool_labels: (M,) classes of the samples partners are drawn from (default:
            ``labels``; with a distributed gather, the global batch).
        self_index: (N,) position of each anchor in the pool, never drawn as its own
            partner. Default ``arange(N)`` when the pool is ``labels``, none otherwise.
        class_pair_weight: optional (C, C) non-negative weights of class pairs.
        generator: random generator (its device decides where the draw happens).

    Returns:
        (N,) long tensor y2 on ``labels.device``.

    Raises:
        ValueError: unknown pairing, or an anchor without any admissible partner (e.g.
            ``"distinct"`` on a batch holding a single class).

    Example:
        >>> import torch
        >>> from rankssl.losses.pair_sampling import sample_pair_labels
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.tensor([0, 0, 1, 1, 2, 2])
        >>> y2 = sample_pair_labels(y, "distinct", generator=g)
        >>> bool((y2 != y).all())
        True
    """
    check_pairing(pairing)
    if pairing == "identical":
        return labels.clone()
    if pool_labels is None:
        pool_labels = labels
        if self_index is None:
            self_index = torch.arange(labels.shape[0], device=labels.device)
    device = generator.device if generator is not None else labels.device
    y1, pool = labels.to(device), pool_labels.to(device)
    allowed = torch.ones(y1.shape[0], pool.shape[0], dtype=torch.bool, device=device)
    if self_index is not None:
        allowed[torch.arange(y1.shape[0], device=device), self_index.to(device)] = False
    if pairing == "distinct":
        allowed &= y1[:, None] != pool[None, :]
    weights = allowed.float()
    if class_pair_weight is not None:
        cpw = class_pair_weight.to(device=device, dtype=torch.float32)
        if cpw.dim() != 2 or cpw.shape[0] != cpw.shape[1]:
            raise ValueError(f"class_pair_weight must be a (C, C) matrix, got {tuple(cpw.shape)}.")
        if bool((cpw < 0).any()) or not bool(torch.isfinite(cpw).all()):
            raise ValueError("class_pair_weight must be finite and non-negative.")
        weights = weights * cpw[y1][:, pool]
    empty = weights.sum(dim=1) <= 0
    if bool(empty.any()):
        row = int(torch.nonzero(empty)[0])
        reason = {
            "arbitrary": "the batch has no other sample",
            "distinct": "the batch holds a single class",
        }[pairing]
        if class_pair_weight is not None:
            reason += " or class_pair_weight is zero for every class present"
        raise ValueError(
            f"Anchor {row} (class {int(y1[row])}) has no admissible partner for pairing={pairing!r}: "
            f"{reason}. Batches need several classes (use a class-balanced sampler such as "
            f"pytorch-metric-learning's MPerClassSampler)."
        )
    picked = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    return pool[picked].to(labels.device)


def permutation_pair_labels(labels: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The authors' partner draw (``erow/hydra`` ``cl/losses.py``: ``posy = y[randperm(B)]``).

    Shared by the lightly-style and pml ``HydraLoss``, which check ``labels`` before calling it.

    Args:
        labels: (B,) class of each image.
        generator: CPU generator of the permutation; None uses torch's global one.

    Returns:
        (B,) the class of the image that a random permutation of the batch maps each image
        to (its own class when the permutation maps it to an image of that class).
    """
    permutation = torch.randperm(labels.shape[0], generator=generator)
    return labels[permutation.to(labels.device)]
