"""Split conformalized quantile regression with signed, one-sided scores (optionally per group).

The score of a calibration job is ``y - upper_hat`` (signed: negative when the model's upper
quantile already covers it). Adding the conformal quantile of the scores to a new job's
``upper_hat`` gives a bound that covers with probability >= the target coverage on exchangeable
data -- one-sided, so the bound is not widened for a lower tail nobody asked about.

With groups (Mondrian conformal prediction) each group with at least ``min_group_size`` scores
gets its own quantile, so the promise holds per group; thinner groups use the pooled scores.
Each group keeps only its latest ``window`` scores, so :meth:`ConformalUpper.update` with newly
known outcomes lets the offsets follow drift. With ``decay`` < 1 the scores in a window are
also weighted by age (the i-th newest by ``decay ** i``, as in nonexchangeable conformal
prediction, Barber et al. 2023): a window still full of scores from before a change weighs
less than the outcomes since, in both directions -- too wide as well as too narrow.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.normal(size=2000)
>>> cal = ConformalUpper().conformalize(y[:1000] - 0.0)
>>> bound = 0.0 + cal.offset(coverage=0.9)
>>> print(f"coverage on new data: {np.mean(y[1000:] <= bound):.3f}")
coverage on new data: 0.887
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import numpy as np

from slocast.errors import LifecycleError
from slocast.schema import POOLED

__all__ = ["POOLED", "ConformalUpper", "conformal_quantile"]


def _check_decay(decay: float) -> float:
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    return decay


def _age_weights(n: int, decay: float) -> np.ndarray:
    """Weights of ``n`` scores, oldest first: ``decay ** age``, the newest aged 1 (the new job
    itself weighs 1)."""
    return np.asarray(decay ** np.arange(n, 0, -1, dtype=np.float64), dtype=np.float64)


def conformal_quantile(scores: np.ndarray, coverage: float, decay: float = 1.0) -> float:
    """The ``ceil((n + 1) * coverage)``-th smallest score (finite-sample valid split quantile).

    With ``decay`` < 1 (``scores`` oldest first), the smallest score whose age-weighted share
    reaches ``coverage``, the new job counting with weight 1; ``decay = 1`` is the plain rank.
    When ``n`` is too small for the requested coverage the largest score is returned, so bounds
    stay finite; callers that need the guarantee must keep ``n >= 1 / (1 - coverage) - 1``.

    >>> conformal_quantile(np.arange(1.0, 10.0), 0.9)
    9.0
    >>> conformal_quantile(np.arange(1.0, 20.0), 0.9)
    18.0
    >>> conformal_quantile(np.array([9.0] * 50 + [1.0] * 50), 0.8, decay=0.9)  # the recent 1s
    1.0
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    _check_decay(decay)
    n = len(scores)
    if n == 0:
        raise LifecycleError("no conformity scores to take a quantile of")
    if decay == 1.0:
        k = min(math.ceil((n + 1) * coverage), n)
        return float(np.partition(scores, k - 1)[k - 1])
    weights = _age_weights(n, decay)
    order = np.argsort(scores, kind="stable")
    share = np.cumsum(weights[order]) / (weights.sum() + 1.0)
    k = int(np.searchsorted(share, coverage, side="left"))
    return float(scores[order[min(k, n - 1)]])


class ConformalUpper:
    """Conformal offsets for upper bounds, pooled and per group, over sliding windows.

    Lifecycle: ``conformalize`` (first scores) -> ``offsets`` / ``update`` in any order.
    ``offsets`` before ``conformalize`` raises :class:`LifecycleError`.
    """

    def __init__(self, min_group_size: int = 30, window: int = 2000, decay: float = 1.0) -> None:
        if min_group_size < 1 or window < 1:
            raise ValueError("min_group_size and window must be >= 1")
        self.min_group_size = min_group_size
        self.window = window
        self.decay = _check_decay(decay)
        self._scores: dict[str, deque[float]] = {}
        # Offsets per (group, coverage) until the next update: serving asks the same ones.
        self._memo: dict[tuple[str, float], float] = {}
        self._conformalized = False

    def conformalize(
        self, scores: np.ndarray, groups: Iterable[object] | None = None
    ) -> ConformalUpper:
        """Start from the scores of a calibration slice (time-ordered, oldest first)."""
        self._scores = {POOLED: deque(maxlen=self.window)}
        self._conformalized = True
        self.update(scores, groups)
        if not self._scores[POOLED]:
            raise LifecycleError("conformalize needs at least one calibration score")
        return self

    def update(self, scores: np.ndarray, groups: Iterable[object] | None = None) -> None:
        """Add scores of jobs whose outcomes became known (oldest first)."""
        if not self._conformalized:
            raise LifecycleError("update called before conformalize")
        scores = np.asarray(scores, dtype=np.float64)
        self._memo.clear()
        self._scores[POOLED].extend(scores.tolist())
        if groups is None:
            return
        for score, group in zip(scores.tolist(), groups, strict=True):
            key = str(group)
            if key not in self._scores:
                self._scores[key] = deque(maxlen=self.window)
            self._scores[key].append(score)

    def _window(self, group: str) -> deque[float]:
        scores = self._scores.get(group)
        if scores is None or len(scores) < self.min_group_size:
            return self._scores[POOLED]
        return scores

    def exceedance(self, scores: np.ndarray, groups: Iterable[object]) -> np.ndarray:
        """For each new score, the share of its group's calibration scores at or above it
        ((1 + count) / (n + 1)): the largest miscoverage at which its bound would still have
        covered it -- what adaptive conformal learners score themselves on."""
        if not self._conformalized:
            raise LifecycleError("exceedance called before conformalize")
        scores = np.asarray(scores)
        out = np.empty(len(scores))
        rows_of: dict[str, list[int]] = {}
        for i, group in enumerate(groups):
            rows_of.setdefault(str(group), []).append(i)
        for key, rows in rows_of.items():
            held = np.fromiter(self._window(key), dtype=np.float64)
            order = np.argsort(held, kind="stable")
            weights = _age_weights(len(held), self.decay)[order]
            # Weight at or above each position of the sorted window, the new job's own 1 added.
            above = np.append(np.cumsum(weights[::-1])[::-1], 0.0)
            below = np.searchsorted(held[order], scores[rows], side="left")
            out[rows] = (1.0 + above[below]) / (weights.sum() + 1.0)
        return out

    def count(self, group: object) -> int:
        """Scores currently held for ``group``."""
        return len(self._scores.get(str(group), ()))

    def offset(self, coverage: float, group: object = POOLED) -> float:
        """Offset for one group (pooled when the group is thinner than ``min_group_size``)."""
        if not self._conformalized:
            raise LifecycleError("offset called before conformalize")
        key = (str(group), coverage)
        cached = self._memo.get(key)
        if cached is None:
            scores = self._window(key[0])
            cached = conformal_quantile(np.fromiter(scores, dtype=np.float64), coverage, self.decay)
            self._memo[key] = cached
        return cached

    def offsets(self, groups: np.ndarray, coverage: float) -> np.ndarray:
        """Per-row offsets for a batch; each distinct group's quantile is computed once."""
        keys = groups.tolist()
        distinct = set(keys)
        if len(distinct) == 1:
            return np.full(len(keys), self.offset(coverage, keys[0]))
        lookup = {key: self.offset(coverage, key) for key in distinct}
        return np.array([lookup[key] for key in keys], dtype=np.float64)

    @property
    def groups(self) -> list[str]:
        return [g for g in self._scores if g != POOLED]

    def state(self) -> dict[str, list[float]]:
        """Serializable scores per group (pooled included), for bundles."""
        return {k: list(v) for k, v in self._scores.items()}

    @classmethod
    def from_state(
        cls,
        state: dict[str, list[float]],
        min_group_size: int = 30,
        window: int = 2000,
        decay: float = 1.0,
    ) -> ConformalUpper:
        cal = cls(min_group_size, window, decay)
        cal._scores = {k: deque(v, maxlen=window) for k, v in state.items()}
        cal._memo = {}
        cal._scores.setdefault(POOLED, deque(maxlen=window))
        cal._conformalized = bool(cal._scores[POOLED])
        return cal
