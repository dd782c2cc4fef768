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

With ``level_bins`` > 1 the taxonomy also splits by the model's own upper quantile (its
*level*, binned at quantiles of the calibration slice's levels): each score also joins its
group's cell and the pooled cell of its bin, and a job takes the first of (group, bin), group,
(all, bin), all that holds ``min_group_size`` scores. A group whose jobs come in two sizes
(a user's 25 s tests and 7,000 s runs) misses by a lot only where the model predicts the
small size; one offset for the whole group lands that miss on the jobs predicted large too.

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
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable

import numpy as np

from slocast.errors import LifecycleError
from slocast.schema import POOLED

__all__ = ["POOLED", "ConformalUpper", "conformal_quantile", "pinball_loss"]

# Joins a group and a level bin into one window's key (no group key contains it).
_CELL = "\x1f"


def _check_decay(decay: float) -> float:
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    return decay


def _age_weights(n: int, decay: float) -> np.ndarray:
    """Weights of ``n`` scores, oldest first: ``decay ** age``, the newest aged 1 (the new job
    itself weighs 1)."""
    return np.asarray(decay ** np.arange(n, 0, -1, dtype=np.float64), dtype=np.float64)


def pinball_loss(residual: np.ndarray, level: float) -> np.ndarray:
    """Pinball loss of a ``level`` quantile, per ``residual`` (outcome minus quantile): the
    proper scoring rule for that quantile (a miss costs ``level`` per unit, a margin
    ``1 - level``).

    >>> pinball_loss(np.array([2.0, -2.0]), 0.9).round(2).tolist()
    [1.8, 0.2]
    """
    return np.maximum(level * residual, (level - 1.0) * residual)


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

    def __init__(
        self,
        min_group_size: int = 30,
        window: int = 2000,
        decay: float = 1.0,
        level_bins: int = 1,
        level_edges: Iterable[float] = (),
    ) -> None:
        if min_group_size < 1 or window < 1 or level_bins < 1:
            raise ValueError("min_group_size, window and level_bins must be >= 1")
        self.min_group_size = min_group_size
        self.window = window
        self.decay = _check_decay(decay)
        self.level_bins = level_bins
        # Set by ``conformalize`` (or restored): empty means one bin, no level cells.
        self.level_edges = np.asarray(list(level_edges), dtype=np.float64)
        self._scores: dict[str, deque[float]] = {}
        # Offsets per (window key, coverage) until the next update: serving asks the same ones.
        self._memo: dict[tuple[str, float], float] = {}
        # Per (group, coverage): each level bin's offset and the floor under it, as above.
        self._tables: dict[tuple[str, float], tuple[list[float], list[float]]] = {}
        self._conformalized = False

    def conformalize(
        self,
        scores: np.ndarray,
        groups: Iterable[object] | None = None,
        levels: np.ndarray | None = None,
    ) -> ConformalUpper:
        """Start from the scores of a calibration slice (time-ordered, oldest first);
        ``levels``: the model's upper quantile for each (needed for ``level_bins`` > 1)."""
        self._scores = {POOLED: deque(maxlen=self.window)}
        self._conformalized = True
        self.level_edges = np.empty(0)
        if self.level_bins > 1 and levels is not None and len(levels):
            inner = np.linspace(0.0, 1.0, self.level_bins + 1)[1:-1]
            self.level_edges = np.unique(np.quantile(np.asarray(levels, np.float64), inner))
        self.update(scores, groups, levels)
        if not self._scores[POOLED]:
            raise LifecycleError("conformalize needs at least one calibration score")
        return self

    def _chain(self, key: str, level_bin: int | None) -> tuple[str, ...]:
        """A job's window keys, most specific first, the pooled window last."""
        if level_bin is None:
            return (POOLED,) if key == POOLED else (key, POOLED)
        pooled_cell = f"{POOLED}{_CELL}{level_bin}"
        if key == POOLED:
            return (pooled_cell, POOLED)
        return (f"{key}{_CELL}{level_bin}", key, pooled_cell, POOLED)

    def _cells(
        self, n: int, groups: Iterable[object] | None, levels: np.ndarray | None
    ) -> list[tuple[str, int | None]]:
        """Each job's (group key, level bin); the bin is None without level cells."""
        keys = [str(g) for g in groups] if groups is not None else [POOLED] * n
        if not self.level_edges.size or levels is None:
            return [(key, None) for key in keys]
        bins = np.searchsorted(self.level_edges, np.asarray(levels, np.float64)).tolist()
        return list(zip(keys, bins, strict=True))

    def update(
        self,
        scores: np.ndarray,
        groups: Iterable[object] | None = None,
        levels: np.ndarray | None = None,
    ) -> None:
        """Add scores of jobs whose outcomes became known (oldest first)."""
        if not self._conformalized:
            raise LifecycleError("update called before conformalize")
        scores = np.asarray(scores, dtype=np.float64)
        self._memo.clear()
        self._tables.clear()
        cells = self._cells(len(scores), groups, levels)
        for score, cell in zip(scores.tolist(), cells, strict=True):
            for key in self._chain(*cell):
                window = self._scores.get(key)
                if window is None:
                    window = self._scores[key] = deque(maxlen=self.window)
                window.append(score)

    def _window(self, chain: tuple[str, ...]) -> deque[float]:
        """The first window in ``chain`` with ``min_group_size`` scores; else the pooled one."""
        for key in chain[:-1]:
            scores = self._scores.get(key)
            if scores is not None and len(scores) >= self.min_group_size:
                return scores
        return self._scores[POOLED]

    def exceedance(
        self, scores: np.ndarray, groups: Iterable[object], levels: np.ndarray | None = None
    ) -> np.ndarray:
        """For each new score, the share of its window's calibration scores at or above it
        ((1 + count) / (n + 1)): the largest miscoverage at which its bound would still have
        covered it -- what adaptive conformal learners score themselves on."""
        if not self._conformalized:
            raise LifecycleError("exceedance called before conformalize")
        scores = np.asarray(scores)
        out = np.empty(len(scores))
        rows_of: dict[tuple[str, int | None], list[int]] = {}
        for i, cell in enumerate(self._cells(len(scores), groups, levels)):
            rows_of.setdefault(cell, []).append(i)
        for cell, rows in rows_of.items():
            held = np.fromiter(self._window(self._chain(*cell)), dtype=np.float64)
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

    def _quantile(self, cell: tuple[str, int | None], coverage: float) -> float:
        chain = self._chain(*cell)
        key = (chain[0], coverage)
        cached = self._memo.get(key)
        if cached is None:
            scores = self._window(chain)
            cached = conformal_quantile(np.fromiter(scores, dtype=np.float64), coverage, self.decay)
            self._memo[key] = cached
        return cached

    def offset(self, coverage: float, group: object = POOLED) -> float:
        """Offset for one group (pooled when the group is thinner than ``min_group_size``),
        over all levels."""
        if not self._conformalized:
            raise LifecycleError("offset called before conformalize")
        return self._quantile((str(group), None), coverage)

    def _level_table(self, key: str, coverage: float) -> tuple[list[float], list[float]]:
        """A group's offset in each level bin and the floor under each bin's bounds: the
        highest bound at the top of a lower bin (-inf for the lowest)."""
        cached = self._tables.get((key, coverage))
        if cached is None:
            table = [self._quantile((key, b), coverage) for b in range(self.level_edges.size + 1)]
            floor, highest = [-math.inf], -math.inf
            for edge, offset in zip(self.level_edges.tolist(), table, strict=False):
                highest = max(highest, edge + offset)
                floor.append(highest)
            cached = self._tables[(key, coverage)] = (table, floor)
        return cached

    def offsets(
        self, groups: np.ndarray, coverage: float, levels: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-row offsets for a batch (``levels``: the model's upper quantile per row, for the
        level cells); each distinct window's quantile is computed once.

        With level cells a job's bound never falls below the bound at the top of a lower bin
        of its group: a cell with a smaller offset than the one below it would otherwise give
        a job predicted a little larger a smaller bound, and whatever ranks jobs or replicas
        by their bounds (a router) would rank them backwards across that edge.
        """
        if not self._conformalized:
            raise LifecycleError("offsets called before conformalize")
        keys = groups.tolist()
        if not self.level_edges.size:
            levels = None
        if len(keys) == 1:  # one job (the serving hot path): plain floats, no array work
            key = str(keys[0])
            if levels is None:
                return np.array([self._quantile((key, None), coverage)])
            level = float(levels[0])
            table, floor = self._level_table(key, coverage)
            cell = bisect_left(self.level_edges.tolist(), level)
            return np.array([max(table[cell], floor[cell] - level)])
        out = np.empty(len(keys), dtype=np.float64)
        if len(set(keys)) == 1:  # one group (or none): every row at once
            rows_of: dict[str, slice | np.ndarray] = {str(keys[0]): slice(None)}
        else:
            lists: dict[str, list[int]] = {}
            for i, key in enumerate(keys):
                lists.setdefault(str(key), []).append(i)
            rows_of = {key: np.asarray(rows) for key, rows in lists.items()}
        if levels is None:
            for key, at in rows_of.items():
                out[at] = self._quantile((key, None), coverage)
            return out
        levels = np.asarray(levels, dtype=np.float64)
        bins = np.searchsorted(self.level_edges, levels)
        for key, at in rows_of.items():
            table, floor = self._level_table(key, coverage)
            b = bins[at]
            out[at] = np.maximum(np.asarray(table)[b], np.asarray(floor)[b] - levels[at])
        return out

    @property
    def conformalized(self) -> bool:
        return self._conformalized

    @property
    def groups(self) -> list[str]:
        return [g for g in self._scores if g != POOLED and _CELL not in g]

    def state(self) -> dict[str, list[float]]:
        """Serializable scores per window (pooled and level cells included), for bundles;
        :attr:`level_edges` goes alongside."""
        return {k: list(v) for k, v in self._scores.items()}

    @classmethod
    def from_state(
        cls,
        state: dict[str, list[float]],
        min_group_size: int = 30,
        window: int = 2000,
        decay: float = 1.0,
        level_edges: Iterable[float] = (),
    ) -> ConformalUpper:
        edges = list(level_edges)
        cal = cls(min_group_size, window, decay, len(edges) + 1, edges)
        cal._scores = {k: deque(v, maxlen=window) for k, v in state.items()}
        cal._memo = {}
        cal._scores.setdefault(POOLED, deque(maxlen=window))
        cal._conformalized = bool(cal._scores[POOLED])
        return cal
