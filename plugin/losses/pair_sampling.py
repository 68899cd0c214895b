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

Every draw runs on the device of the labels without reading a value on the host: the
arbitrary draw is O(N) (one uniform integer per anchor, shifted past the anchor's own
row), the weighted and distinct draws an exponential race over the (N, M) admissible
pairs (``argmin(E / w)`` with ``E ~ Exp(1)`` picks j with probability ``w_j / sum w``).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from rankssl.losses._deferred import defer_check, is_lazy
from rankssl.ops.validation import check_choice

__all__ = ["PAIRINGS", "draw_partners", "permutation_pair_labels", "sample_pair_labels"]

PAIRINGS = ("arbitrary", "distinct", "identical")


def check_pairing(pairing: str) -> None:
    check_choice(pairing, "pairing", PAIRINGS, "pairing")


def _generator_for(generator: Optional[torch.Generator], device: torch.device) -> Optional[torch.Generator]:
    if generator is not None and generator.device.type != torch.device(device).type:
        raise ValueError(
            f"The pair sampler's generator lives on {generator.device} but the labels on {device}: "
            "create the generator on the labels' device."
        )
    return generator


def draw_partners(
    labels: torch.Tensor,
    pairing: str = "arbitrary",
    pool_labels: Optional[torch.Tensor] = None,
    self_index: Optional[torch.Tensor] = None,
    class_pair_weight: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The partner classes and which anchors had an admissible partner, without a host sync.

    Arguments as for :func:`sample_pair_labels` (labels, pool and generator on one device).

    Returns:
        ``(y2, admissible)``: (N,) long partner classes and the (N,) boolean mask of anchors
        that had at least one admissible partner (where it is False, y2 is the anchor's own
        class and must not be used); ``admissible`` is None where every anchor has one by
        construction (``"identical"``, ``"arbitrary"`` without weights from a pool of two or more).
    """
    check_pairing(pairing)
    if pairing == "identical":
        return labels.clone(), None
    device = labels.device
    generator = _generator_for(generator, device)
    if pool_labels is None:
        pool_labels = labels
        if self_index is None:
            self_index = torch.arange(labels.shape[0], device=device)
    pool = pool_labels.to(device)
    n, m = labels.shape[0], pool.shape[0]
    if pairing == "arbitrary" and class_pair_weight is None:
        free = m - (1 if self_index is not None else 0)
        if free < 1:
            return labels.clone(), torch.zeros_like(labels, dtype=torch.bool)
        picked = torch.randint(0, free, (n,), generator=generator, device=device)
        if self_index is not None:
            picked = picked + (picked >= self_index.to(device))
        return pool[picked], None
    weights = torch.ones(n, m, device=device)
    if self_index is not None:
        weights = weights.index_put(
            (torch.arange(n, device=device), self_index.to(device)), torch.zeros((), device=device)
        )
    if pairing == "distinct":
        weights = weights * (labels[:, None] != pool[None, :])
    if class_pair_weight is not None:
        weights = weights * class_pair_weight.to(device=device, dtype=torch.float32)[labels[:, None], pool[None, :]]
    race = torch.empty(n, m, device=device).exponential_(generator=generator) / weights  # w = 0: +inf
    picked = race.argmin(dim=1)
    admissible = (weights > 0).any(dim=1)
    return torch.where(admissible, pool[picked], labels), admissible


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
        generator: random generator, on the labels' device.

    Returns:
        (N,) long tensor y2 on ``labels.device``.

    Raises:
        ValueError: unknown pairing, bad weights, or an anchor without any admissible
            partner (e.g. ``"distinct"`` on a batch holding a single class); under lazy
            validation (CUDA tensors) the last is raised at the next validated call.

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
    if class_pair_weight is not None:
        cpw = torch.as_tensor(class_pair_weight)
        if cpw.dim() != 2 or cpw.shape[0] != cpw.shape[1]:
            raise ValueError(f"class_pair_weight must be a (C, C) matrix, got {tuple(cpw.shape)}.")
        if not is_lazy(cpw) and (bool((cpw < 0).any()) or not bool(torch.isfinite(cpw).all())):
            raise ValueError("class_pair_weight must be finite and non-negative.")
    y2, admissible = draw_partners(labels, pairing, pool_labels, self_index, class_pair_weight, generator)
    if admissible is None:
        return y2
    reason = {
        "arbitrary": "the batch has no other sample",
        "distinct": "the batch holds a single class",
        "identical": "",
    }[pairing]
    if class_pair_weight is not None:
        reason += " or class_pair_weight is zero for every class present"
    advice = (
        "Batches need several classes (use a class-balanced sampler such as "
        "pytorch-metric-learning's MPerClassSampler)."
    )
    if is_lazy(labels):
        defer_check(
            ~admissible.all(), f"An anchor has no admissible partner for pairing={pairing!r}: {reason}. {advice}"
        )
    elif not bool(admissible.all()):
        row = int(torch.nonzero(~admissible)[0])
        raise ValueError(
            f"Anchor {row} (class {int(labels[row])}) has no admissible partner for "
            f"pairing={pairing!r}: {reason}. {advice}"
        )
    return y2


def permutation_pair_labels(labels: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The authors' partner draw (``erow/hydra`` ``cl/losses.py``: ``posy = y[randperm(B)]``).

    Shared by the lightly-style and pml ``HydraLoss``, which check ``labels`` before calling it.

    Args:
        labels: (B,) class of each image.
        generator: generator on the labels' device; None uses torch's global one.

    Returns:
        (B,) the class of the image that a random permutation of the batch maps each image
        to (its own class when the permutation maps it to an image of that class).
    """
    generator = _generator_for(generator, labels.device)
    permutation = torch.randperm(labels.shape[0], generator=generator, device=labels.device)
    return labels[permutation]
