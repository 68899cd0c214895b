"""Hyper-parameter selection with the same budget for every method (the benchmark protocol's).

Pure logic, no training: :func:`select` calls a ``score(config) -> float`` function
(validation kNN accuracy in ``protocol.py``, a fake function in the tests) and returns
the chosen configuration with a record of every grid and where each winner fell.

The search, identical for every method and baseline:

1. learning rate: a grid of ``lr_steps`` (>= 4) values spaced x2 around the recipe's
   base rate, at the method's default parameter and weight decay; while the best value
   sits on an edge, one more value is added beyond that edge (up to ``max_widen``
   times), so the winner ends strictly inside the grid;
2. the method's own main parameter (temperature, steepness, bins), at that rate; a
   winner on an edge that beats its neighbour gets one more value beyond that edge, one
   grid step out (the ratio of the two outermost values: 0.2, 0.5 -> 0.08), up to
   ``max_widen`` times; a winner tied with its neighbour is marked 'flat edge';
3. weight decay, at that rate and parameter, widened the same way in x10 steps;
   a winner tied with its neighbour is left there and marked 'flat edge' (the score is
   flat across the edge, so nothing points beyond it);
4. the learning rate again, bracketed the same way around the rate of step 1 with the
   chosen parameter and weight decay (configurations already scored are not re-run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["SearchSpace", "Selection", "lr_grid", "bracket", "widen_past_edges", "select", "edge_position"]


@dataclass(frozen=True)
class SearchSpace:
    """What one method tunes: its base learning rate, main parameter and weight decays."""

    base_lr: float
    param_name: str
    param_values: Tuple = ()
    default_param: object = None
    weight_decays: Tuple[float, ...] = (1e-6, 1e-5, 1e-4)
    default_weight_decay: float = 1e-6

    def __post_init__(self) -> None:
        if not self.base_lr > 0:
            raise ValueError(f"base_lr must be positive, got {self.base_lr!r}.")
        if self.default_param not in self.param_values:
            raise ValueError(f"default_param {self.default_param!r} must be one of param_values {self.param_values}.")
        if self.default_weight_decay not in self.weight_decays:
            raise ValueError(f"default_weight_decay {self.default_weight_decay!r} must be one of {self.weight_decays}.")


@dataclass
class Selection:
    """The chosen configuration and the evidence for it."""

    lr: float
    param: object
    weight_decay: float
    score: float
    lr_grid: List[float]  # learning rates scored at the chosen parameter and weight decay
    lr_position: str  # 'inside', 'lower edge' or 'upper edge' (the widening limit was reached)
    param_position: str
    weight_decay_position: str  # as lr_position, or 'flat edge' (tied with its neighbour: not widened)
    trials: List[Dict] = field(default_factory=list)  # every configuration scored, in order
    weight_decay_grid: List[float] = field(default_factory=list)  # decays scored at the chosen lr and parameter
    param_grid: List = field(default_factory=list)  # parameter values scored at the rate of step 1

    @property
    def edges(self) -> List[str]:
        """Names of the hyper-parameters whose winner lies on an edge of its grid."""
        positions = {"lr": self.lr_position, "param": self.param_position,
                     "weight_decay": self.weight_decay_position}
        return [name for name, where in positions.items() if where not in ("inside", "untuned", "flat edge")]


def lr_grid(center: float, steps: int = 4) -> List[float]:
    """``steps`` learning rates spaced x2 with ``center`` among them: 4 -> center x (1/4, 1/2, 1, 2).

    Powers of two keep the values exact, so a rate reached twice is the same float.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}.")
    return [center * 2.0 ** k for k in range(-(steps // 2), steps - steps // 2)]


def edge_position(winner, values: Sequence) -> str:
    """'inside', 'lower edge' or 'upper edge' of the sorted ``values``; a one-value grid is 'untuned'."""
    ordered = sorted(values)
    if len(ordered) < 2:
        return "untuned"
    if winner == ordered[0]:
        return "lower edge"
    if winner == ordered[-1]:
        return "upper edge"
    return "inside"


def bracket(score: Callable[[float], float], initial: Sequence[float], max_widen: int = 3,
            prefetch: Optional[Callable[[List[float]], None]] = None) -> Tuple[float, Dict[float, float], str]:
    """Score the rates of ``initial``; extend the grid x2 beyond the edge the winner sits on until it is inside.

    Returns the winner, the score of every rate tried, and the winner's position
    ('inside' unless ``max_widen`` extensions did not suffice).
    """
    return widen_past_edges(score, initial, factor=2.0, max_widen=max_widen, stop_on_tie=False, prefetch=prefetch)


def widen_past_edges(score: Callable[[float], float], initial: Sequence[float], factor: Optional[float] = 10.0,
                     max_widen: int = 3, stop_on_tie: bool = True,
                     prefetch: Optional[Callable[[List[float]], None]] = None) -> Tuple[float, Dict[float, float], str]:
    """Score ``initial``; while the winner sits on an edge, add one value ``factor`` beyond that edge.

    ``factor=None`` steps by the grid's own outermost ratio at that edge (0.2, 0.5, ... -> 0.08;
    bins 20, 40, ... -> 10); a grid of integers stays integer and stops at 1. With
    ``stop_on_tie``, a winner tied with its neighbour ends the search as 'flat edge': the
    scores give no reason to look further out. Returns the winner (a tie goes to the smaller
    value), every score, and the winner's position. ``prefetch(values)``, when given, is first
    handed all the values of a round that are about to be scored, so that a caller can train
    them side by side; the search itself, and so its result, does not change.
    """
    scores: Dict[float, float] = {}
    pending = sorted(initial)
    for _ in range(max_widen + 1):
        if prefetch is not None:
            prefetch([value for value in pending if value not in scores])
        for value in pending:
            if value not in scores:
                scores[value] = score(value)
        ordered = sorted(scores)
        best = max(ordered, key=lambda v: scores[v])
        position = edge_position(best, ordered)
        if position in ("inside", "untuned"):
            return best, scores, position
        lower = position == "lower edge"
        if stop_on_tie and scores[ordered[1] if lower else ordered[-2]] == scores[best]:
            return best, scores, "flat edge"
        beyond = _one_step_beyond(ordered, lower, factor)
        if beyond is None:
            return best, scores, position
        pending = [beyond]
    return best, scores, position


def _one_step_beyond(ordered: Sequence, lower: bool, factor: Optional[float]):
    """The next value past the lower or upper end of the sorted grid ``ordered`` (None: nothing valid there)."""
    step = factor if factor is not None else (ordered[1] / ordered[0] if lower else ordered[-1] / ordered[-2])
    beyond = ordered[0] / step if lower else ordered[-1] * step
    if all(isinstance(v, int) and not isinstance(v, bool) for v in ordered):
        beyond = int(round(beyond))
        return beyond if beyond >= 1 and beyond not in ordered else None
    # 12 significant digits: 1e-4 * 10 becomes 0.001, not 0.0010000000000000002; x2 steps stay exact
    return float(f"{beyond:.12g}")


def select(space: SearchSpace, score: Callable[[Dict], float], lr_steps: int = 4, max_widen: int = 3,
           prefetch: Optional[Callable[[List[Dict]], None]] = None) -> Selection:
    """Coordinate search of learning rate, main parameter and weight decay (module docstring).

    ``prefetch(configs)``, when given, receives each round's configurations not scored yet
    before ``score`` is called on them one by one (a round: a grid, or one value beyond an
    edge), so that they can be trained in parallel; the selection does not depend on it.
    """
    if lr_steps < 4:
        raise ValueError(f"lr_steps must be >= 4 (the protocol's smallest grid), got {lr_steps}.")
    cache: Dict[Tuple, float] = {}
    trials: List[Dict] = []

    def config(lr: float, param, weight_decay: float) -> Dict:
        return {"lr": lr, space.param_name: param, "weight_decay": weight_decay}

    def trial(lr: float, param, weight_decay: float) -> float:
        key = (lr, param, weight_decay)
        if key not in cache:
            cache[key] = score(config(*key))
            trials.append({**config(*key), "score": cache[key]})
        return cache[key]

    def along(make_key: Callable[[object], Tuple]) -> Dict:
        """One coordinate of the search: ``make_key(value)`` -> (lr, param, weight_decay); its score and prefetch."""
        ahead = None if prefetch is None else (
            lambda values: prefetch([config(*make_key(v)) for v in values if make_key(v) not in cache]))
        return {"score": lambda value: trial(*make_key(value)), "prefetch": ahead}

    param, weight_decay = space.default_param, space.default_weight_decay
    lr, _, _ = bracket(initial=lr_grid(space.base_lr, lr_steps), max_widen=max_widen,
                       **along(lambda r: (r, param, weight_decay)))
    param, param_scores, param_position = widen_past_edges(
        initial=space.param_values, factor=None, max_widen=max_widen, **along(lambda p: (lr, p, weight_decay)))
    weight_decay, decay_scores, decay_position = widen_past_edges(
        initial=space.weight_decays, factor=10.0, max_widen=max_widen, **along(lambda w: (lr, param, w)))
    lr, lr_scores, lr_position = bracket(initial=lr_grid(lr, lr_steps), max_widen=max_widen,
                                         **along(lambda r: (r, param, weight_decay)))
    return Selection(
        lr=lr, param=param, weight_decay=weight_decay, score=cache[(lr, param, weight_decay)],
        lr_grid=sorted(lr_scores), lr_position=lr_position,
        param_position=param_position,
        weight_decay_position=decay_position,
        trials=trials, weight_decay_grid=sorted(decay_scores), param_grid=sorted(param_scores),
    )
