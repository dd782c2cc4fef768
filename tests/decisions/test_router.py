"""Routers: baselines' rules, SLO-aware choice, shedding and headroom-spread."""

from __future__ import annotations

from collections import Counter

import pytest

from slocast.decisions.router import (
    SHED,
    LeastLoaded,
    LeastWork,
    PrefixAware,
    ReplicaState,
    RoundRobin,
    SLOAwareRouter,
)
from slocast.errors import ConfigError
from slocast.schema import Prediction


def state(waiting: int, running: int = 0, prefix: float = 0.0) -> ReplicaState:
    return ReplicaState(waiting, running, 0.0, prefix, 0.0, 0.0)


def by_waiting(rows):  # median and bound grow with the queue: 0.25 s and 0.5 s per request
    return [
        Prediction(0.1 + 0.25 * w, 0.2 + 0.5 * w, 0.9, "t")
        for w in (float(r["num_request_waiting"]) for r in rows)
    ]


def test_baselines_follow_their_rules() -> None:
    replicas = [state(3), state(1, 1), state(0, 5, prefix=0.9)]
    rr = RoundRobin()
    assert [rr.route(replicas, 10) for _ in range(4)] == [0, 1, 2, 0]
    assert LeastLoaded().route(replicas, 10) == 1
    assert PrefixAware().route(replicas, 10) == 2  # prefix hit first, then load


def test_least_work_counts_prompt_tokens_queued_not_requests() -> None:
    # One long prompt queued outweighs three short ones; equal work goes to the lesser load.
    replicas = [
        ReplicaState(1, 0, 0.0, 0.0, 8000.0, 0.0),
        ReplicaState(3, 0, 0.0, 0.0, 600.0, 0.0),
        ReplicaState(2, 2, 0.0, 0.0, 600.0, 900.0),
    ]
    assert LeastLoaded().route(replicas, 10) == 0
    assert LeastWork().route(replicas, 10) == 1


def test_slo_aware_takes_most_headroom_and_sheds_only_when_told() -> None:
    replicas = [state(4), state(1), state(3)]
    assert SLOAwareRouter(by_waiting, slo_s=2.0).route(replicas, 10) == 1
    hopeless = [state(10), state(9)]
    assert SLOAwareRouter(by_waiting, slo_s=1.0).route(hopeless, 10) == 1  # best effort
    assert SLOAwareRouter(by_waiting, slo_s=1.0, shed=True).route(hopeless, 10) == SHED
    # Medians of 2.35 s and 2.6 s against a 1 s SLO: shed past 2x the SLO, served below 3x.
    assert SLOAwareRouter(by_waiting, 1.0, shed=True, shed_above=2).route(hopeless, 10) == SHED
    assert SLOAwareRouter(by_waiting, 1.0, shed=True, shed_above=3).route(hopeless, 10) == 1
    # A request likelier to meet the SLO than not somewhere is served, whatever its bound:
    # bound 1.2 s, median 0.6 s.
    assert SLOAwareRouter(by_waiting, 1.0, shed=True).route([state(2), state(5)], 10) == 0
    for bad in (0.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="shed_above"):
            SLOAwareRouter(by_waiting, 1.0, shed=True, shed_above=bad)


def test_spread_draws_feasible_replicas_in_proportion_to_headroom() -> None:
    replicas = [state(0), state(1), state(9)]  # headroom 1.8, 1.3, none (bound 4.7 > 2)
    router = SLOAwareRouter(by_waiting, slo_s=2.0, spread=True, seed=0)
    counts = Counter(router.route(replicas, 10) for _ in range(3000))
    assert counts[2] == 0
    assert abs(counts[0] / 3000 - 1.8 / 3.1) < 0.03

    def draws(seed: int) -> list[int]:
        seeded = SLOAwareRouter(by_waiting, slo_s=2.0, spread=True, seed=seed)
        return [seeded.route(replicas, 10) for _ in range(50)]

    assert draws(1) == draws(1) != draws(2)
    # It draws among the replicas the router would choose from: a prompt cached on a replica
    # that meets the SLO stays there.
    cached = SLOAwareRouter(by_waiting, slo_s=2.0, spread=True, seed=0)
    assert {cached.route([state(2, prefix=0.9), state(0)], 10) for _ in range(50)} == {0}


def test_slo_aware_keeps_the_prompt_where_it_is_cached_among_good_enough_replicas() -> None:
    cached, free = state(2, prefix=0.9), state(0)  # bounds 1.2 s and 0.2 s
    assert SLOAwareRouter(by_waiting, slo_s=2.0).route([cached, free], 10) == 0
    # Good enough means meeting the SLO or within the margin of the lowest bound, no more.
    far = state(5, prefix=0.9)  # 2.7 s: over the SLO and over 1.5 x 0.2 s
    assert SLOAwareRouter(by_waiting, slo_s=2.0).route([far, free], 10) == 1
    # When none meets the SLO, the margin alone decides (cached: 0.7 s against 0.2 s).
    overloaded = [state(1, prefix=0.9), state(0)]
    assert SLOAwareRouter(by_waiting, slo_s=0.1).route(overloaded, 10) == 1
    assert SLOAwareRouter(by_waiting, slo_s=0.1, margin=3.0).route(overloaded, 10) == 0
    # A hit within the prefix tolerance of the best is a hit: then the lower bound wins.
    close = [state(1, prefix=0.9), state(0, prefix=0.85)]
    assert SLOAwareRouter(by_waiting, slo_s=2.0).route(close, 10) == 1
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="margin"):
            SLOAwareRouter(by_waiting, slo_s=2.0, margin=bad)
