"""Pipeline smoothing: propagate load variability along the stage graph and blend each stage's
corrected replicas with its neighbours' by how bursty its input is.

- Variability propagates downstream: a stage fed by several upstream stages sees the merge of
  their output streams, whose squared coefficient of variation is the rate-weighted mean of the
  inputs' (the superposition approximation of queueing-network analysis); a stage's own arrival
  variability adds to it.
- ``β(CV) = a + (1 − a) · σ(CV / CV_th − 1)``: a bursty stage (CV above the threshold) keeps
  its own correction (β → 1); a smooth one is pulled towards its neighbours (β → a), which
  damps replica swings that one stage's noisy measurement would cause.

>>> round(beta(0.0, a=0.3, cv_threshold=1.0), 3), round(beta(1.0, 0.3, 1.0), 3)
(0.488, 0.65)
>>> graph = {"ingest": ["model"], "model": ["post"], "post": []}
>>> cvs = propagate_cv(graph, {"ingest": 2.0, "model": 0.2, "post": 0.1},
...                    {"ingest": 10.0, "model": 10.0, "post": 10.0})
>>> round(cvs["model"], 3), round(cvs["post"], 3)
(2.01, 2.012)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["beta", "propagate_cv", "smooth_replicas"]


def beta(cv: float, a: float = 0.3, cv_threshold: float = 1.0) -> float:
    """Weight of a stage's own replica correction; see the module docstring."""
    return a + (1.0 - a) / (1.0 + math.exp(-(cv / cv_threshold - 1.0)))


def _topological(graph: Mapping[str, Sequence[str]]) -> list[str]:
    indegree = {node: 0 for node in graph}
    for targets in graph.values():
        for target in targets:
            indegree[target] = indegree.get(target, 0) + 1
    ready = [n for n, d in indegree.items() if d == 0]
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for target in graph.get(node, ()):
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    if len(order) != len(indegree):
        raise ValueError("the stage graph has a cycle")
    return order


def propagate_cv(
    graph: Mapping[str, Sequence[str]],
    own_cv: Mapping[str, float],
    rates: Mapping[str, float],
) -> dict[str, float]:
    """Each stage's arrival CV: own variability combined with the merged upstream streams."""
    upstream: dict[str, list[str]] = {node: [] for node in graph}
    for source, targets in graph.items():
        for target in targets:
            upstream.setdefault(target, []).append(source)
    cv: dict[str, float] = {}
    for node in _topological(graph):
        sources = upstream.get(node, [])
        total = sum(rates.get(s, 0.0) for s in sources)
        merged = sum(rates.get(s, 0.0) * cv[s] ** 2 for s in sources) / total if total > 0 else 0.0
        cv[node] = math.sqrt(own_cv.get(node, 0.0) ** 2 + merged)
    return cv


def smooth_replicas(
    graph: Mapping[str, Sequence[str]],
    corrected: Mapping[str, float],
    cvs: Mapping[str, float],
    a: float = 0.3,
    cv_threshold: float = 1.0,
) -> dict[str, int]:
    """Blend each stage's corrected replicas with the mean of its graph neighbours'."""
    neighbours: dict[str, set[str]] = {node: set() for node in corrected}
    for source, targets in graph.items():
        for target in targets:
            neighbours.setdefault(source, set()).add(target)
            neighbours.setdefault(target, set()).add(source)
    out = {}
    for node, replicas in corrected.items():
        near = [corrected[n] for n in neighbours.get(node, ()) if n in corrected]
        weight = beta(cvs.get(node, 0.0), a, cv_threshold)
        blended = replicas if not near else weight * replicas + (1 - weight) * sum(near) / len(near)
        out[node] = max(1, math.ceil(blended - 1e-9))
    return out
