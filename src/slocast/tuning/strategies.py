"""Allocation strategies: named operating points on the Pareto front of (under %, over %).

Every evaluated candidate is a point (under-allocation %, over-allocation %) measured by
cross-validation. The front is the set no other point beats on both. Operators pick from it by
name:

- ``balanced``: the lowest business score (under-allocation weighted by the cost ratio, 5:1 by
  default) -- what the search optimises;
- ``small-waste``: the lowest score when a failed job costs no more than its waste (1:1), i.e.
  accept more retries to hold less idle memory;
- ``tiny-under-alloc``: the least waste among points with under-allocation at most 1 %
  (the least under-allocated point when none reaches 1 %).

>>> pts = [Point("a", 10.0, 20.0), Point("b", 1.0, 90.0), Point("c", 2.0, 40.0),
...        Point("d", 12.0, 60.0)]
>>> [p.key for p in pareto_front(pts)]
['b', 'c', 'a']
>>> {k: v.key for k, v in choose_strategies(pts, 5.0).items()}
{'balanced': 'c', 'small-waste': 'a', 'tiny-under-alloc': 'b'}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["STRATEGIES", "Point", "choose_strategies", "pareto_front"]

STRATEGIES = ("balanced", "small-waste", "tiny-under-alloc")
TINY_UNDER_PCT = 1.0


@dataclass(frozen=True)
class Point:
    key: str  # which candidate (e.g. "lightgbm#12": family and trial number)
    under_alloc_pct: float
    over_alloc_pct: float

    def score(self, under_cost_ratio: float) -> float:
        return under_cost_ratio * self.under_alloc_pct + self.over_alloc_pct


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """Non-dominated points, by increasing under-allocation."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.under_alloc_pct, p.over_alloc_pct)):
        if not front or p.over_alloc_pct < front[-1].over_alloc_pct:
            front.append(p)
    return front


def choose_strategies(points: Sequence[Point], under_cost_ratio: float) -> dict[str, Point]:
    front = pareto_front(points)
    if not front:
        return {}
    tiny = [p for p in front if p.under_alloc_pct <= TINY_UNDER_PCT]
    return {
        "balanced": min(front, key=lambda p: p.score(under_cost_ratio)),
        "small-waste": min(front, key=lambda p: p.score(1.0)),
        "tiny-under-alloc": min(tiny, key=lambda p: p.over_alloc_pct) if tiny else front[0],
    }
