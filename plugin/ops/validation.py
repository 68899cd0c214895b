"""Input checks shared by every public loss, op and pytorch-metric-learning object.

One place decides what bad input looks like and how the error reads, so that every
entry point of rankssl fails the same way: a ``TypeError`` for a value of the wrong
kind (not a tensor, wrong dtype), a ``ValueError`` for a value of the right kind that is
unusable (wrong shape, out of range, NaN or infinite, on the meta device). Each message
names the argument (and the view or row at fault) and says what is expected.

The checks are cheap: shapes and dtypes are metadata; finiteness costs one reduction
over each tensor and one host synchronisation for all of them, and the row at fault is
only looked for once a check has failed.

**Validation without host syncs.** A check of *values* (finiteness, "every query has a
relevant item") needs the value on the host, and on a GPU reading it makes the host wait
for the device (a host sync) in the middle of the training step. The environment
variable ``RANKSSL_VALIDATE`` (or :class:`validation_mode`, as a setter or a context
manager) chooses how those checks run:

``full``
    values are checked at once (a host sync; free on the CPU); the error is raised by
    the call that received the bad input.
``lazy``
    the verdict (and the first bad index) is computed on the device and copied to the
    host without blocking; the check is raised, with the same ``ValueError`` wording
    naming the tensor and its row, at the next validated call or at :func:`flush`
    (call it at the end of an epoch, or before trusting a result). The training step
    never waits.
``auto`` (default)
    ``full`` for CPU tensors, ``lazy`` for CUDA (and other accelerator) tensors.

:func:`defer_check` applies the same policy to any value-dependent check a loss needs
(``bad`` a 0-dim bool tensor, True = bad). Checks of shapes, dtypes and Python settings
are always immediate: they cost nothing.

Example of the lazy mode (on CPU tensors here, as CI tests the GPU path):
    >>> import torch
    >>> from rankssl.ops.validation import check_finite, flush, validation_mode
    >>> with validation_mode("lazy"):
    ...     check_finite([("scores", torch.tensor([[0.0, float("nan")]]))])  # returns at once
    ...     try:
    ...         flush()
    ...     except ValueError as error:
    ...         print(str(error)[:50])
    scores holds a non-finite value at row 0, column 1

Example:
    >>> import torch
    >>> from rankssl.ops.validation import check_positive_int, check_views
    >>> check_positive_int(10, "n_negatives")
    10
    >>> views = check_views((torch.randn(4, 8), torch.randn(4, 8)))
    >>> len(views)
    2

Pure torch: no host framework is imported here.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import torch

__all__ = [
    "VALIDATION_MODES",
    "check_choice",
    "check_embeddings",
    "check_finite",
    "check_flag",
    "check_float",
    "check_indices_tuple",
    "check_labels",
    "check_optional_positive_int",
    "check_positive_int",
    "check_tensor",
    "check_views",
    "checks_lazily",
    "collect_checks",
    "current_validation_mode",
    "defer_check",
    "describe",
    "flush",
    "safe_normalize",
    "send_collected_checks",
    "validation_mode",
]


def describe(value: object) -> str:
    """A short description of a value for an error message: a tensor's shape and dtype,
    else the type name."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------------------------------
# Hyper-parameters


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum``; ``bool`` and floats are refused.

    Raises:
        TypeError: not an integer (``True`` is not a count).
        ValueError: below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_flag(value: object, name: str) -> bool:
    """``value`` if it is ``True`` or ``False``; a truthy stand-in (1, ``"yes"``) is refused.

    Raises:
        TypeError: not a ``bool``.
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return value


def check_optional_positive_int(value: object, name: str, minimum: int = 1) -> Optional[int]:
    """``None`` or :func:`check_positive_int`."""
    if value is None:
        return None
    try:
        return check_positive_int(value, name, minimum)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name} must be None or an integer >= {minimum}, got {value!r}.") from None


def check_float(
    value: object,
    name: str,
    minimum: float = 0.0,
    inclusive: bool = False,
) -> float:
    """``value`` as a finite float ``> minimum`` (``>= minimum`` with ``inclusive``).

    ``bool`` is refused; NaN and infinities are refused (a temperature of ``inf`` is as
    meaningless as one of 0).

    Raises:
        TypeError: not a real number. ValueError: not finite, or out of range.
    """
    relation = ">=" if inclusive else ">"
    expected = f"a finite number {relation} {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__}).")
    number = float(value)
    if not math.isfinite(number) or not (number >= minimum if inclusive else number > minimum):
        raise ValueError(f"{name} must be {expected}, got {value!r}.")
    return number


def check_choice(value: object, name: str, choices: Iterable[str], what: Optional[str] = None) -> str:
    """``value`` if it is one of ``choices``; else a ``ValueError`` that lists them and
    suggests the closest name (``Unknown sorting network 'bitnic'; did you mean
    'bitonic'?``)."""
    choices = list(choices)
    if isinstance(value, str) and value in choices:
        return value
    what = what or name
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1)
        if close:
            hint = f" Did you mean {close[0]!r}?"
    raise ValueError(f"Unknown {what} {value!r} for {name}; expected one of {', '.join(map(repr, choices))}.{hint}")


# ---------------------------------------------------------------------------------------
# When value checks run: at once (a host sync) or lazily (device-side verdict)

#: Accepted values of ``RANKSSL_VALIDATE`` and :class:`validation_mode`.
VALIDATION_MODES = ("auto", "full", "lazy")
_ENV = "RANKSSL_VALIDATE"
_override: Optional[str] = None
#: Pending lazy verdicts before the oldest is waited for (bounds memory if no call follows).
_MAX_PENDING = 64


def _check_mode(mode: object, name: str) -> str:
    return check_choice(mode, name, VALIDATION_MODES, "validation mode")


def current_validation_mode() -> str:
    """The mode in force: the innermost :class:`validation_mode`, else ``RANKSSL_VALIDATE``
    (default ``"auto"``)."""
    if _override is not None:
        return _override
    return _check_mode(os.environ.get(_ENV, "auto") or "auto", _ENV)


class validation_mode:
    """Set how value checks run: ``"auto"``, ``"full"`` or ``"lazy"`` (see the module docstring).

    Called plainly it sets the mode for the process (overriding ``RANKSSL_VALIDATE``);
    used as a context manager it restores the previous mode on exit. Leaving a lazy
    block does not flush: call :func:`flush` to raise what is pending.

    Example:
        >>> from rankssl.ops.validation import current_validation_mode, validation_mode
        >>> with validation_mode("full"):
        ...     current_validation_mode()
        'full'
    """

    def __init__(self, mode: str) -> None:
        global _override
        self.mode = _check_mode(mode, "mode")
        self._previous = _override
        _override = self.mode

    def __enter__(self) -> validation_mode:
        return self

    def __exit__(self, *exc_info) -> None:
        global _override
        _override = self._previous


def checks_lazily(tensor: torch.Tensor) -> bool:
    """Whether value checks on ``tensor`` run lazily under the current mode (``lazy``, or
    ``auto`` with a tensor off the CPU). A caller with a detailed message that needs
    values on the host builds it only when this is False."""
    mode = current_validation_mode()
    if mode == "auto":
        return tensor.device.type not in ("cpu", "meta")
    return mode == "lazy"


@dataclass
class _Pending:
    """A verdict on its way to the host: ``code`` (host tensor, ready once ``event`` has
    completed) and the function that turns its values (a list of ints) into the error
    message, or None when they are good."""

    code: torch.Tensor
    event: Optional[torch.cuda.Event]
    message: Callable[[List[int]], Optional[str]]

    def ready(self) -> bool:
        return self.event is None or self.event.query()

    def error(self) -> Optional[str]:
        if self.event is not None:
            self.event.synchronize()
        return self.message([int(value) for value in self.code.numpy().reshape(-1)])


_PENDING: List[_Pending] = []
# Verdicts collected between collect_checks() and send_collected_checks(): (values, explain).
_COLLECTED: Optional[List[Tuple[List[torch.Tensor], Callable[[List[int]], Optional[str]]]]] = None


def _send_to_host(code: torch.Tensor, message: Callable[[List[int]], Optional[str]]) -> None:
    """Queue the integer or bool ``code`` computed on the device, copied without blocking."""
    host = code.detach().reshape(-1).to("cpu", non_blocking=True, copy=True)
    event = None
    if code.device.type == "cuda":
        event = torch.cuda.Event()
        event.record()
    if len(_PENDING) >= _MAX_PENDING:
        _raise_pending(_PENDING[:1], block=True)
    _PENDING.append(_Pending(host, event, message))


def _defer_values(values: List[torch.Tensor], explain: Callable[[List[int]], Optional[str]]) -> None:
    """Queue 1-element device ``values`` for the host; ``explain`` turns them, read there, into
    an error message or None. Collected values travel together (see :func:`collect_checks`)."""
    if _COLLECTED is not None:
        _COLLECTED.append((values, explain))
    else:
        _send_values([(values, explain)])


def _send_values(entries: List[Tuple[List[torch.Tensor], Callable[[List[int]], Optional[str]]]]) -> None:
    """One stacked copy to the host for all ``entries``; the first failing explanation is raised."""
    flat = [value.detach().reshape(()) for values, _ in entries for value in values]
    code = flat[0] if len(flat) == 1 else torch.stack(flat)  # stack promotes bool to int64

    def message(codes: List[int]) -> Optional[str]:
        start = 0
        for values, explain in entries:
            error = explain(codes[start : start + len(values)])
            start += len(values)
            if error is not None:
                return error
        return None

    _send_to_host(code, message)


@torch.compiler.disable
def collect_checks() -> bool:
    """Start collecting lazy verdicts, to send them to the host in one copy at
    :func:`send_collected_checks` (a loss that runs several checks calls both around its
    forward, in ``try``/``finally``). Returns whether this call started the collection
    (nested calls join the outer one); pass it to :func:`send_collected_checks`.

    Example:
        >>> import torch
        >>> started = collect_checks()
        >>> try:
        ...     defer_check(torch.tensor(False), "never raised")
        ... finally:
        ...     send_collected_checks(started)
    """
    global _COLLECTED
    if _COLLECTED is not None:
        return False
    _COLLECTED = []
    return True


@torch.compiler.disable
def send_collected_checks(started: bool) -> None:
    """Send the verdicts collected since :func:`collect_checks` (when it returned True) in
    one non-blocking copy."""
    global _COLLECTED
    if not started:
        return
    entries, _COLLECTED = _COLLECTED, None
    if entries:
        _send_values(entries)


def _raise_pending(entries: List[_Pending], block: bool) -> None:
    """Remove the ready (or, with ``block``, all) ``entries`` from the queue; raise the
    first error among them."""
    first_error = None
    for entry in list(entries):
        if not block and not entry.ready():
            continue
        _PENDING.remove(entry)
        message = entry.error()
        if message is not None and first_error is None:
            first_error = message
    if first_error is not None:
        raise ValueError(first_error)


def _raise_ready() -> None:
    """Raise a pending lazy check whose verdict has reached the host (never waits)."""
    if _PENDING:
        _raise_pending(_PENDING, block=False)


def flush() -> None:
    """Wait for every pending lazy check and raise the first that failed (``ValueError``).

    Cheap when nothing is pending. Call it where a sync is harmless: the end of an
    epoch, before saving, before reading a result. In ``full`` mode nothing is pending.
    """
    if _PENDING:
        _raise_pending(_PENDING, block=True)


@torch.compiler.disable
def defer_check(bad: torch.Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` if ``bad`` (a 0-dim bool tensor, True = bad) holds.

    In ``full`` mode (and ``auto`` on the CPU) at once, which reads ``bad`` on the host;
    in ``lazy`` mode the verdict is copied to the host without blocking and raised at
    the next validated call or :func:`flush`. For value-dependent checks other than
    finiteness, e.g. "every query needs a relevant item".

    Example:
        >>> import torch
        >>> defer_check(torch.tensor(False), "never raised")
    """
    if not isinstance(bad, torch.Tensor) or bad.numel() != 1:
        raise TypeError(f"defer_check needs a 1-element bool tensor as bad, got {describe(bad)}.")
    _raise_ready()
    if not checks_lazily(bad):
        if bool(bad):
            raise ValueError(message)
        return
    _defer_values([bad], lambda codes: message if codes[0] else None)


# ---------------------------------------------------------------------------------------
# Tensors


def check_tensor(
    value: object,
    name: str,
    dims: Optional[Sequence[int]] = None,
    shape_hint: Optional[str] = None,
    floating: bool = True,
) -> torch.Tensor:
    """``value`` if it is a real (not meta) tensor of the right rank and dtype kind.

    Args:
        value: the argument.
        name: its name in messages.
        dims: allowed numbers of dimensions (None: any).
        shape_hint: the expected shape in words, e.g. ``"(batch_size, dim)"``.
        floating: require a floating-point dtype.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor{' of shape ' + shape_hint if shape_hint else ''}, got {describe(value)}."
        )
    if value.is_meta:
        raise ValueError(
            f"{name} is on the meta device: it has a shape but no values. Materialise it on a "
            "real device (e.g. .to_empty(device='cpu') on its module, then load weights) first."
        )
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}.")
    if dims is not None and value.dim() not in dims:
        hint = shape_hint or " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name} must have shape {hint}, got {tuple(value.shape)}.")
    return value


def _first_bad_row(tensor: torch.Tensor) -> Tuple[int, ...]:
    bad = torch.nonzero(~torch.isfinite(tensor.detach()))[0]
    return tuple(int(i) for i in bad)


def _where(index: Tuple[int, ...], row_axis_name: str) -> str:
    where = f"{row_axis_name} {index[0]}" + (f", column {index[1]}" if len(index) == 2 else "")
    if len(index) > 2:
        where = f"{row_axis_name} {index[0]} (index {index})"
    return where


_FINITE_ADVICE = (
    "embeddings and scores must be finite. Check the model's output for overflow (a lower learning "
    "rate, mixed-precision loss scaling) or the data for NaN."
)


def _lazy_finite(names: List[str], stacked: torch.Tensor, row_axis_name: str) -> None:
    """Queue the finiteness verdict of ``len(names)`` tensors stacked along a new first
    dimension: whether all are finite and the flat index of the first non-finite entry,
    computed on the device (``x - x == 0`` exactly when ``x`` is finite)."""
    flat = stacked.detach().reshape(-1)
    finite, first_bad = (flat - flat == 0).min(0)  # min of a bool vector: the first False
    shape = tuple(stacked.shape)

    def message(codes: List[int]) -> Optional[str]:
        if codes[0]:
            return None
        code = codes[1]
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(code), shape))
        name, index = names[index[0]], index[1:] or (0,)
        return (
            f"{name} holds a non-finite value at {_where(index, row_axis_name)}: {_FINITE_ADVICE} "
            "(Found by a lazy check, raised at the next validated call: see RANKSSL_VALIDATE.)"
        )

    _defer_values([finite, first_bad], message)


@torch.compiler.disable
def check_finite(tensors: Sequence[Tuple[str, torch.Tensor]], row_axis_name: str = "row") -> None:
    """Refuse NaN or infinite values in any of the named tensors.

    ``full`` mode (see :class:`validation_mode`): one reduction per tensor and one host
    synchronisation for all of them; the first bad entry is located only on failure,
    and the message names the tensor and its row (the index along dimension 0) and
    column. ``lazy`` mode: two reductions per tensor on the device and a non-blocking
    copy; the same message is raised at the next validated call or :func:`flush`.
    """
    _raise_ready()
    tensors = [(name, t) for name, t in tensors if t.numel()]
    if not tensors:
        return
    if checks_lazily(tensors[0][1]):
        shapes = {(t.shape, t.dtype, t.device) for _, t in tensors}
        if len(tensors) > 1 and len(shapes) == 1:
            # Tensors of one shape (the views of a batch): one verdict for all of them.
            _lazy_finite([name for name, _ in tensors], torch.stack([t.detach() for _, t in tensors]), row_axis_name)
        else:
            for name, t in tensors:
                _lazy_finite([name], t.unsqueeze(0), row_axis_name)
        return
    flags = [torch.isfinite(t.detach()).all() for _, t in tensors]
    if bool(torch.stack([flag.to(flags[0].device) for flag in flags]).all()):
        return
    for name, t in tensors:
        if not bool(torch.isfinite(t.detach()).all()):
            index = _first_bad_row(t)
            value = float(t.detach()[index])
            raise ValueError(
                f"{name} holds a non-finite value ({value}) at {_where(index, row_axis_name)}: {_FINITE_ADVICE}"
            )


def check_embeddings(
    value: object,
    name: str = "embeddings",
    min_rows: int = 1,
    dim: Optional[int] = None,
    finite: bool = True,
) -> torch.Tensor:
    """A floating (rows, dim) tensor with ``rows >= min_rows``, ``dim >= 1`` (or ``== dim``),
    finite values."""
    emb = check_tensor(value, name, dims=(2,), shape_hint="(batch_size, dim)")
    if emb.shape[1] < 1:
        raise ValueError(f"{name} has width 0 (shape {tuple(emb.shape)}): embeddings need dim >= 1.")
    if dim is not None and emb.shape[1] != dim:
        raise ValueError(f"{name} must have dim {dim}, got shape {tuple(emb.shape)}.")
    if emb.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows, got shape {tuple(emb.shape)}.")
    if finite:
        check_finite([(name, emb)])
    return emb


def check_views(
    views: Sequence[object],
    min_views: int = 2,
    min_batch: int = 2,
    loss_name: Optional[str] = None,
    labelled_alternative: Optional[str] = None,
) -> List[torch.Tensor]:
    """Normalise ``forward(*views)`` and ``forward(list_of_views)`` to a checked list.

    Every view must be a finite floating (B, D) tensor with D >= 1, all of the same
    shape, with B >= ``min_batch``. The error names the view (and row) at fault.

    Args:
        views: the positional arguments of ``forward``.
        min_views: fewest views accepted.
        min_batch: fewest images per view (2: an image needs another as negative).
        loss_name, labelled_alternative: when given, a call that looks like
            ``loss(views, labels)`` is answered with "``loss_name`` takes no labels; for
            labelled data use ``labelled_alternative``".
    """
    looks_labelled = len(views) == 2 and isinstance(views[0], (list, tuple))
    if not looks_labelled and len(views) >= 2:
        last = views[-1]
        looks_labelled = isinstance(last, torch.Tensor) and last.dim() == 1 and not last.is_floating_point()
        looks_labelled = looks_labelled or (
            isinstance(last, (list, tuple)) and all(isinstance(v, numbers.Integral) for v in last)
        )
    if looks_labelled and loss_name is not None:
        alternative = f"; for labelled data use {labelled_alternative}" if labelled_alternative else ""
        raise TypeError(
            f"{loss_name} takes no labels: call loss(view0, view1, ...) or loss([view0, view1, ...]) with "
            f"views of shape (batch_size, dim){alternative}."
        )
    if len(views) == 1 and isinstance(views[0], (list, tuple)):
        views = tuple(views[0])
    if len(views) < min_views:
        raise ValueError(
            f"Expected at least {min_views} views, each of shape (batch_size, dim), "
            f"got {len(views)}. Call loss(view0, view1, ...) or loss([view0, view1, ...])."
        )
    checked: List[torch.Tensor] = []
    for index, view in enumerate(views):
        view = check_tensor(view, f"View {index}", dims=(2,), shape_hint="(batch_size, dim)")
        if checked and view.shape != checked[0].shape:
            raise ValueError(
                f"All views must have the same shape; view 0 is {tuple(checked[0].shape)} "
                f"but view {index} is {tuple(view.shape)}."
            )
        checked.append(view)
    if checked[0].shape[1] < 1:
        raise ValueError(f"Views have width 0 (shape {tuple(checked[0].shape)}): embeddings need dim >= 1.")
    if checked[0].shape[0] < min_batch:
        raise ValueError(f"A batch of {checked[0].shape[0]} image(s) has no negatives; use at least {min_batch}.")
    check_finite([(f"View {index}", view) for index, view in enumerate(checked)])
    return checked


def check_labels(
    labels: object,
    name: str = "labels",
    length: Optional[int] = None,
    num_classes: Optional[int] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """``labels`` as a 1-D ``int64`` tensor: any integer dtype (int8, uint8, ...) or a
    Python sequence of integers is accepted and converted.

    Args:
        length: the number of rows the labels must match.
        num_classes: when given, every label must lie in ``[0, num_classes)``.
        device: move the result there.

    Raises:
        TypeError: not integers (floats, bools, strings). ValueError: wrong shape or range.
    """
    if isinstance(labels, torch.Tensor):
        if labels.is_meta:
            check_tensor(labels, name, floating=False)
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"{name} must be integer class indices, got a tensor of dtype {labels.dtype}.")
    elif isinstance(labels, (list, tuple, range)) or type(labels).__module__ == "numpy":
        try:
            as_tensor = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a sequence of integer class indices; {exc}") from None
        if as_tensor.is_floating_point() or as_tensor.is_complex() or as_tensor.dtype == torch.bool:
            raise TypeError(f"{name} must be integer class indices, got values of dtype {as_tensor.dtype}.")
        labels = as_tensor
    else:
        raise TypeError(f"{name} must be a 1-D tensor or sequence of integer class indices, got {describe(labels)}.")
    expected = f"({length},)" if length is not None else "(batch_size,)"
    if labels.dim() != 1:
        raise ValueError(f"{name} must have shape {expected}, one label per row, got {tuple(labels.shape)}.")
    if length is not None and labels.shape[0] != length:
        raise ValueError(
            f"{name} must have shape {expected}, one label per row: it has {labels.shape[0]} entries "
            f"but there are {length} rows."
        )
    labels = labels.to(dtype=torch.long, device=device if device is not None else labels.device)
    if num_classes is not None and labels.numel():
        if checks_lazily(labels):
            _raise_ready()
            message = (
                f"{name} must lie in [0, {num_classes}) for num_classes={num_classes}; some labels are out "
                "of range (found by a lazy check, raised at the next validated call: see RANKSSL_VALIDATE)."
            )
            bounds = labels.aminmax()  # one reduction for both bounds
            _defer_values(
                [bounds.min, bounds.max], lambda codes: message if codes[0] < 0 or codes[1] >= num_classes else None
            )
            return labels
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            row = int(torch.nonzero((labels < 0) | (labels >= num_classes))[0])
            raise ValueError(
                f"{name} must lie in [0, {num_classes}) for num_classes={num_classes}, got values in "
                f"[{low}, {high}] (first out of range: row {row}, value {int(labels[row])})."
            )
    return labels


def check_indices_tuple(indices_tuple: object, num_rows: int, num_ref: int) -> Tuple[torch.Tensor, ...]:
    """Validate a miner's ``indices_tuple`` as pytorch-metric-learning defines it.

    Either triplets ``(anchors, positives, negatives)`` or pairs ``(anchors_p, positives,
    anchors_n, negatives)``: 1-D integer tensors (or sequences), anchors indexing the
    ``num_rows`` embeddings, the others the ``num_ref`` reference rows, no negative
    index (which would silently wrap around), matching lengths within a triplet or pair.

    Returns the indices as ``int64`` tensors.
    """
    if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) not in (3, 4):
        got = f"length {len(indices_tuple)}" if isinstance(indices_tuple, (tuple, list)) else describe(indices_tuple)
        raise ValueError(
            "indices_tuple must be (anchors, positives, negatives) triplets or (anchors_p, positives, "
            f"anchors_n, negatives) pairs, as pytorch-metric-learning miners return; got {got}."
        )
    names = (
        ("anchors", "positives", "negatives")
        if len(indices_tuple) == 3
        else ("anchors_p", "positives", "anchors_n", "negatives")
    )
    out: List[torch.Tensor] = []
    for part, part_name in zip(indices_tuple, names, strict=True):
        name = f"indices_tuple[{len(out)}] ({part_name})"
        if not isinstance(part, torch.Tensor):
            try:
                part = torch.as_tensor(part)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(
                    f"{name} must be a 1-D tensor or sequence of integer indices, got {describe(part)}."
                ) from None
        if part.is_floating_point() or part.is_complex() or part.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer indices, got dtype {part.dtype}.")
        if part.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(part.shape)}.")
        limit = num_rows if part_name.startswith("anchors") else num_ref
        what = "embeddings" if part_name.startswith("anchors") else "reference embeddings"
        if part.numel() and checks_lazily(part):
            defer_check(
                ((part < 0) | (part >= limit)).any(),
                f"{name} must index the {limit} {what}, i.e. lie in [0, {limit}); some indices are out of "
                "range (found by a lazy check, raised at the next validated call: see RANKSSL_VALIDATE).",
            )
        elif part.numel() and (int(part.min()) < 0 or int(part.max()) >= limit):
            raise ValueError(
                f"{name} must index the {limit} {what}, i.e. lie in [0, {limit}); got values in "
                f"[{int(part.min())}, {int(part.max())}] (negative indices are refused, not wrapped)."
            )
        out.append(part.long())
    groups = [(0, 1, 2)] if len(out) == 3 else [(0, 1), (2, 3)]
    for group in groups:
        lengths = {out[i].shape[0] for i in group}
        if len(lengths) > 1:
            raise ValueError(
                f"indices_tuple parts {', '.join(names[i] for i in group)} must have equal lengths, got "
                f"{', '.join(str(out[i].shape[0]) for i in group)}."
            )
    return tuple(out)


# ---------------------------------------------------------------------------------------
# Numerics


def safe_normalize(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """L2-normalise along ``dim`` without overflow or underflow.

    Each vector is first divided by its largest absolute entry (a constant for autograd),
    so the squares summed by the norm stay in [0, D] whatever the input's magnitude
    (1e30 overflows float32 squares; 1e-30 underflows them). Normalising is scale
    invariant, so the result and its gradient equal those of the rescaled input:
    ``safe_normalize(c * x)`` is ``normalize(x)`` and its gradient with respect to
    ``c * x`` is that with respect to ``x`` divided by ``c``.
    """
    # A zero row stays zero (divided by the clamp); a subnormal one is scaled up to ~1e-2.
    scale = torch.linalg.vector_norm(x.detach(), ord=float("inf"), dim=dim, keepdim=True).clamp_min(
        torch.finfo(x.dtype).tiny
    )
    return torch.nn.functional.normalize(x / scale, dim=dim)
