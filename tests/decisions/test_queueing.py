"""Erlang C and the M/M/c formulas against known values and a Monte Carlo queue."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest

from slocast.decisions.queueing import (
    erlang_c,
    mean_response,
    mean_wait,
    replicas_for_slo,
    response_tail,
)
from slocast.errors import ConfigError


@pytest.mark.parametrize(
    ("c", "a", "expected"),
    [
        (1, 0.5, 0.5),  # M/M/1: P_wait = rho
        (2, 1.0, 1 / 3),
        (3, 2.0, 4 / 9),
        (10, 8.0, 0.4092),  # standard call-centre table value
    ],
)
def test_erlang_c_known_values(c: int, a: float, expected: float) -> None:
    assert erlang_c(c, a) == pytest.approx(expected, abs=1e-4)


def test_mean_wait_is_p_wait_over_spare_capacity_not_times_lambda() -> None:
    # c = 2, lambda = 1, mu = 1: W_q = (1/3) / (2 - 1) = 1/3 (the reference code had x lambda).
    assert mean_wait(2, 1.0, 1.0) == pytest.approx(1 / 3)
    assert mean_wait(2, 1.5, 1.0) == pytest.approx(erlang_c(2, 1.5) / 0.5)
    assert mean_response(2, 1.0, 1.0) == pytest.approx(1 / 3 + 1)


def test_overload_is_infinite() -> None:
    assert math.isinf(mean_wait(2, 2.0, 1.0))
    assert math.isinf(mean_response(3, 4.0, 1.0))
    assert response_tail(2, 2.5, 1.0, 100.0) == 1.0


def _simulate_mmc(c: int, lam: float, mu: float, n: int, seed: int = 0) -> np.ndarray:
    """Response times of an FCFS M/M/c queue (earliest-free-server recursion)."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / lam, n))
    services = rng.exponential(1 / mu, n)
    free = [0.0] * c
    out = np.empty(n)
    for i, (t, s) in enumerate(zip(arrivals, services, strict=True)):
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + s)
        out[i] = start + s - t
    return out[n // 10 :]  # drop the warm-up


@pytest.mark.parametrize(("c", "lam", "mu"), [(1, 0.7, 1.0), (4, 3.2, 1.0), (8, 6.0, 1.0)])
def test_formulas_match_a_simulated_queue(c: int, lam: float, mu: float) -> None:
    times = _simulate_mmc(c, lam, mu, 200_000)
    assert times.mean() == pytest.approx(mean_response(c, lam, mu), rel=0.05)
    for t in (1.0, 3.0):
        assert (times > t).mean() == pytest.approx(response_tail(c, lam, mu, t), abs=0.01)


def test_replicas_for_slo_is_the_smallest_that_meets_it() -> None:
    c = replicas_for_slo(50.0, 20.0, slo=0.25, percentile=0.99)
    assert response_tail(c, 50.0, 20.0, 0.25) <= 0.01
    assert response_tail(c - 1, 50.0, 20.0, 0.25) > 0.01
    # More traffic never needs fewer replicas.
    sizes = [replicas_for_slo(lam, 20.0, 0.25, 0.99) for lam in range(0, 400, 25)]
    assert sizes == sorted(sizes)


def test_unreachable_slo_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        replicas_for_slo(10.0, 1.0, slo=0.1, percentile=0.99)  # service alone is too slow
    with pytest.raises(ConfigError):
        erlang_c(0, 1.0)
