"""What the two Hydra front-ends share: hyper-parameters and their checks, the logit scale, the
seeded partner draw and its state.

Wu, Kittler, Awais, Atito, Mo, Feng, "Rethinking Positive Pairs in Contrastive Learning"
(arXiv:2410.18200). The lightly-style :class:`rankssl.losses.HydraLoss` and the
pytorch-metric-learning :class:`rankssl.pml.HydraLoss` differ only in how they are called;
everything that decides *which* loss they compute lives here, written once:

- the settings (temperature, gate penalty, pairing, key views, reduction, pair draw,
  warm-up) and their ``ValueError``\\ s, checked at construction and again on every call
  (attributes may be changed after construction);
- the logit scale, ``1 / temperature`` or the learned ``exp(s)``;
- :class:`PartnerDraw`: the partner class y2 of every anchor, drawn with the loss's own
  ``torch.Generator`` on the device of the input. The generator is seeded with
  ``seed + rank`` in every process (each process draws for the anchors it holds, so the
  draws of two processes are independent), and its state travels in ``state_dict()`` so
  that a resumed run draws what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from rankssl.losses._deferred import defer_check, is_lazy
from rankssl.losses.feature_filter import FeatureFilter, check_class_labels
from rankssl.losses.pair_sampling import check_pairing, draw_partners, permutation_pair_labels
from rankssl.ops import dist
from rankssl.ops.validation import check_choice, check_float, check_positive_int

__all__ = [
    "RANKSSL_VARIANT",
    "SIMLAP_SETTINGS",
    "HydraLossBase",
    "PartnerDraw",
    "check_hydra_settings",
    "check_variant_settings",
    "checked_class_pair_weight",
    "defer_or_raise",
    "feature_filter_for",
]

KEY_MODES = ("all", "other")
REDUCTIONS = ("anchor_mean", "pair_mean")
PAIR_DRAWS = ("per_row", "permutation")
# The SimLAP recipe of the paper's second version (erow/hydra: cl/losses.py, main_cl.py): the defaults.
SIMLAP_SETTINGS = dict(key_views="other", reduction="pair_mean", pair_draw="permutation")
# rankssl's own variant (the defaults before they became SimLAP's): every view as keys, the mean per
# anchor, a partner drawn for every row.
RANKSSL_VARIANT = dict(key_views="all", reduction="anchor_mean", pair_draw="per_row")

# Device types of a saved generator state (code 0: no generator yet).
_DEVICE_CODES = {"cpu": 1, "cuda": 2, "xpu": 3, "mps": 4}
_HEADER_BYTES = 10  # seed (8, int64 little-endian), has-seed flag (1), device code (1)


# ---------------------------------------------------------------- settings


def check_hydra_settings(temperature: float, gate_penalty: float, pairing: str) -> None:
    """Raise a ``ValueError`` for a non-positive temperature, a negative gate penalty or an
    unknown pairing (shared by the lightly-style and the pml loss)."""
    check_float(temperature, "temperature", 0.0)
    check_float(gate_penalty, "gate_penalty", 0.0, inclusive=True)
    check_pairing(pairing)


def check_variant_settings(
    key_views: str, reduction: str, pair_draw: str, pairing: str, filter_warmup_epochs: int
) -> None:
    """Raise a ``ValueError`` for an unknown key mode, reduction or pair draw, a permutation
    draw with ``pairing='distinct'`` (a permutation may map an image to its own class), or a
    negative warm-up."""
    check_choice(key_views, "key_views", KEY_MODES)
    check_choice(reduction, "reduction", REDUCTIONS)
    check_choice(pair_draw, "pair_draw", PAIR_DRAWS)
    if pair_draw == "permutation" and pairing == "distinct":
        raise ValueError(
            "pair_draw='permutation' draws partners as the authors do and cannot guarantee "
            "pairing='distinct'; use pair_draw='per_row' or pairing='arbitrary'."
        )
    check_positive_int(filter_warmup_epochs, "filter_warmup_epochs", minimum=0)


def feature_filter_for(
    num_classes: int,
    dim: int,
    embed_dim: int,
    hidden_dim: int,
    gate_mode: str,
    feature_filter: Optional[FeatureFilter] = None,
) -> FeatureFilter:
    """Build the loss's :class:`FeatureFilter`, or check that a given one gates ``dim``
    dimensions of ``num_classes`` classes."""
    if feature_filter is None:
        return FeatureFilter(num_classes, dim, embed_dim, hidden_dim, gate_mode)
    if feature_filter.num_classes != num_classes or feature_filter.out_dim != dim:
        raise ValueError(
            f"feature_filter has num_classes={feature_filter.num_classes}, out_dim="
            f"{feature_filter.out_dim} but the loss was given num_classes={num_classes}, dim={dim}."
        )
    return feature_filter


def checked_class_pair_weight(weight: Optional[torch.Tensor], num_classes: int) -> Optional[torch.Tensor]:
    """``weight`` as a (C, C) finite, non-negative float32 tensor, or ``None``; a clear error otherwise."""
    if weight is None:
        return None
    weight = torch.as_tensor(weight, dtype=torch.float32)
    if weight.shape != (num_classes, num_classes):
        raise ValueError(
            f"class_pair_weight must have shape ({num_classes}, {num_classes}), got {tuple(weight.shape)}."
        )
    if bool((weight < 0).any()) or not bool(torch.isfinite(weight).all()):  # once, at construction
        raise ValueError("class_pair_weight must be finite and non-negative.")
    return weight


def defer_or_raise(bad: torch.Tensor, message: str, like: torch.Tensor) -> None:
    """``ValueError(message)`` where ``bad``: deferred under lazy validation for ``like``'s device, else at once."""
    if is_lazy(like):
        defer_check(bad, message)
    elif bool(bad):
        raise ValueError(message)


# ---------------------------------------------------------------- the seeded partner draw


class PartnerDraw:
    """The partner class y2 of every anchor, drawn with a seeded generator on the input's device.

    The generator is created at the first draw, on that draw's device, and seeded with
    ``seed + rank`` (:func:`rankssl.ops.dist.rank`; 0 outside a process group): every
    process draws for the anchors it holds, so the processes' draws are independent and
    a single process draws what seed ``seed`` gives. ``seed=None`` uses torch's global
    generator (nothing to save).

    :meth:`state` and :meth:`load_state` save and restore the stream as one uint8 tensor;
    after :meth:`load_state` the next draws are those the saved object would have made.
    Where the state cannot be carried over as it is (saved on another device type), a new
    generator is seeded from a digest of the saved state.

    Args:
        seed: integer seed, or None.

    Example:
        >>> import torch
        >>> draw = PartnerDraw(seed=0)
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2])
        >>> y2, admissible = draw(labels, labels, labels, None, "arbitrary", "permutation")
        >>> y2.shape, admissible is None
        (torch.Size([6]), True)
        >>> again = PartnerDraw(seed=0)
        >>> again.load_state(draw.state())
        >>> torch.equal(draw(labels, labels, labels, None, "arbitrary", "permutation")[0],
        ...             again(labels, labels, labels, None, "arbitrary", "permutation")[0])
        True
    """

    def __init__(self, seed: Optional[int] = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an integer or None, got {seed!r}.")
        self.seed: Optional[int] = None if seed is None else int(seed)
        self._generator: Optional[torch.Generator] = None
        self._saved: Optional[Dict[str, Any]] = None  # a loaded state, until the first draw uses it

    def process_seed(self) -> int:
        """``seed + rank``: the seed of this process's generator (needs a seed)."""
        if self.seed is None:
            raise ValueError("PartnerDraw(seed=None) draws from torch's global generator and has no process seed.")
        return self.seed + dist.rank()

    def generator_on(self, device: Union[str, torch.device]) -> Optional[torch.Generator]:
        """The generator on ``device``'s type, created (or carried over) on first use; None without a seed."""
        if self.seed is None:
            return None
        device = torch.device(device)
        if self._generator is not None and self._generator.device.type == device.type:
            return self._generator
        generator = torch.Generator(device=device)
        saved, self._saved = self._saved, None
        if self._generator is not None:  # the loss moved to another device type: continue from the old stream
            generator.manual_seed(
                int(torch.randint(0, 2**62, (1,), generator=self._generator, device=self._generator.device))
            )
        elif saved is not None and saved["device"] == device.type:
            generator.set_state(saved["state"])
        elif saved is not None:
            digest = hashlib.sha256(saved["state"].numpy().tobytes()).digest()
            generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        else:
            generator.manual_seed(self.process_seed())
        self._generator = generator
        return generator

    def __call__(
        self,
        labels: torch.Tensor,
        rows: torch.Tensor,
        pool: torch.Tensor,
        self_index: Optional[torch.Tensor],
        pairing: str,
        pair_draw: str,
        class_pair_weight: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Draw the partners of ``rows``, on their device, without a host sync.

        Args:
            labels: (B,) class of each image.
            rows: (R,) class of each anchor row (``labels`` repeated once per view, or ``labels``).
            pool: (M,) classes of the samples partners are drawn from.
            self_index: (R,) row of each anchor in ``pool`` (never its own partner), or None.
            pairing: ``"arbitrary"``, ``"distinct"`` or ``"identical"``.
            pair_draw: ``"permutation"`` (with ``"arbitrary"``: the authors' ``labels[randperm(B)]``,
                one (B,) partner per image shared by its views) or ``"per_row"``.
            class_pair_weight: optional (C, C) prior over class pairs (per-row draws).

        Returns:
            ``(y2, admissible)``: (B,) or (R,) long partner classes, and None or the (R,)
            mask of rows that had an admissible partner.
        """
        check_choice(pair_draw, "pair_draw", PAIR_DRAWS)  # the pairing is checked where it is used
        generator = self.generator_on(rows.device)
        if pairing == "arbitrary" and pair_draw == "permutation":
            return permutation_pair_labels(labels, generator), None
        return draw_partners(rows, pairing, pool, self_index, class_pair_weight, generator)

    def state(self) -> torch.Tensor:
        """The generator's state as one uint8 tensor (a tensor, so every consumer of a state dict can copy it).

        Layout: seed (int64, little-endian), has-seed flag, device-type code, the generator's
        own state bytes (none before the first draw)."""
        if self._generator is not None:
            device, state = self._generator.device.type, self._generator.get_state().cpu()
        elif self._saved is not None:
            device, state = self._saved["device"], self._saved["state"]
        else:
            device, state = "", torch.empty(0, dtype=torch.uint8)
        seed = 0 if self.seed is None else self.seed
        header = torch.tensor(
            list(seed.to_bytes(8, "little", signed=True)) + [self.seed is not None, _DEVICE_CODES.get(device, 0)],
            dtype=torch.uint8,
        )
        return torch.cat([header, state.to(torch.uint8).reshape(-1)])

    def load_state(self, state: Any) -> None:
        """Restore :meth:`state`'s stream: the next draws are the saved object's next draws."""
        if (
            not isinstance(state, torch.Tensor)
            or state.dtype != torch.uint8
            or state.dim() != 1
            or state.numel() < _HEADER_BYTES
        ):
            raise ValueError(
                f"HydraLoss extra state must be the uint8 tensor get_extra_state() returns, got {type(state).__name__}."
            )
        state = state.cpu()
        header = bytes(state[:_HEADER_BYTES].tolist())
        self.seed = int.from_bytes(header[:8], "little", signed=True) if header[8] else None
        device = {code: name for name, code in _DEVICE_CODES.items()}.get(header[9])
        self._generator = None
        self._saved = None if device is None else dict(device=device, state=state[_HEADER_BYTES:].clone())


# ---------------------------------------------------------------- the shared module


class HydraLossBase(nn.Module):
    """What the lightly-style and the pml ``HydraLoss`` share: the settings, the logit scale, the
    partner draw (:class:`PartnerDraw`, seeded with ``seed + rank``) and its state in ``state_dict()``.

    A front-end calls :meth:`_init_common` from its constructor (checks, feature filter, draw),
    :meth:`_check_settings` on every call, :meth:`_partners` for the anchors' partner classes
    and :meth:`_gate_penalty` for the optional penalty term. ``state_dict()`` holds the draw's state under the key
    ``_extra_state`` (:meth:`get_extra_state`), so mmengine checkpoints carry it.
    """

    # set by the front-ends
    feature_filter: FeatureFilter
    reduction: str

    def _init_common(
        self,
        num_classes: int,
        dim: int,
        *,
        temperature: float,
        gate_mode: str,
        pairing: str,
        embed_dim: int,
        hidden_dim: int,
        gate_penalty: float,
        class_pair_weight: Optional[torch.Tensor],
        seed: Optional[int],
        feature_filter: Optional[FeatureFilter],
        reduction: str,
        pair_draw: str,
        learn_scale: bool,
        key_views: str = "all",
        filter_warmup_epochs: int = 0,
    ) -> None:
        """Check the shared hyper-parameters (``ValueError``/``TypeError`` naming the bad one), build or
        check the feature filter, set the shared attributes and the seeded partner draw."""
        check_hydra_settings(temperature, gate_penalty, pairing)
        check_variant_settings(key_views, reduction, pair_draw, pairing, filter_warmup_epochs)
        self.feature_filter = feature_filter_for(num_classes, dim, embed_dim, hidden_dim, gate_mode, feature_filter)
        self._partner_draw = PartnerDraw(seed)
        self.num_classes = num_classes
        self.temperature = float(temperature)
        self.pairing = pairing
        self.gate_penalty = float(gate_penalty)
        self.reduction = reduction
        self.pair_draw = pair_draw
        self.learn_scale = bool(learn_scale)
        cpw = checked_class_pair_weight(class_pair_weight, num_classes)
        if cpw is not None:
            self.register_buffer("class_pair_weight", cpw, persistent=False)
        else:
            self.class_pair_weight = None
        if self.learn_scale:  # exp(s), s initialised at log(1 / temperature) (authors' v1)
            self.log_scale = nn.Parameter(torch.tensor(-math.log(self.temperature)))

    @property
    def seed(self) -> Optional[int]:
        """Seed of the partner draw (each process draws with ``seed + rank``); None: torch's global generator."""
        return self._partner_draw.seed

    @seed.setter
    def seed(self, seed: Optional[int]) -> None:  # takes effect where no generator was created yet
        self._partner_draw.seed = PartnerDraw(seed).seed

    @property
    def scale(self) -> Union[float, torch.Tensor]:
        """The logit scale: 1 / temperature, or the learned exp(s)."""
        return self.log_scale.exp() if self.learn_scale else 1.0 / self.temperature

    @property
    def gate_mode(self) -> str:
        return self.feature_filter.mode

    def _check_settings(self) -> None:
        """The settings as they are now (attributes may change after construction): pure Python, no sync."""
        check_hydra_settings(self.temperature, self.gate_penalty, self.pairing)
        check_choice(self.pair_draw, "pair_draw", PAIR_DRAWS)
        check_choice(self.reduction, "reduction", REDUCTIONS)
        if self.pair_draw == "permutation" and self.pairing == "distinct":
            check_variant_settings("all", self.reduction, self.pair_draw, self.pairing, 0)

    def _partners(
        self,
        labels: torch.Tensor,
        rows: torch.Tensor,
        pool: torch.Tensor,
        self_index: Optional[torch.Tensor],
        pair_labels: Optional[object],
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(y2, admissible)`` on ``rows``' device: the given ``pair_labels`` checked (one per image,
        (B,), or one per row, (R,)), else drawn (see :class:`PartnerDraw` for the arguments)."""
        if pair_labels is None:
            return self._partner_draw(
                labels, rows, pool, self_index, self.pairing, self.pair_draw, self.class_pair_weight
            )
        per_image = (
            isinstance(pair_labels, torch.Tensor) and pair_labels.dim() == 1 and pair_labels.shape[0] == labels.shape[0]
        )
        length = None if per_image else rows.shape[0]
        return check_class_labels(pair_labels, self.num_classes, length=length, name="pair_labels").to(
            rows.device
        ), None

    def _gate_penalty(self, gates: torch.Tensor) -> torch.Tensor:
        """``gate_penalty * mean(g * (1 - g))`` over the (..., D) gates: 0 for binary gates."""
        return self.gate_penalty * (gates * (1 - gates)).mean()

    def get_extra_state(self) -> torch.Tensor:
        """The partner draw's generator state as one uint8 tensor (:meth:`PartnerDraw.state`)."""
        return self._partner_draw.state()

    def set_extra_state(self, state: Any) -> None:
        """Restore :meth:`get_extra_state`'s state: the next draws are the saved run's next draws."""
        self._partner_draw.load_state(state)
