"""M/M/c queueing: Erlang C, waiting and response times, and the replicas an SLO needs.

With arrival rate ``λ``, service rate ``μ`` per replica and ``c`` replicas (offered load
``a = λ/μ``, utilisation ``ρ = a/c``):

- ``P_wait = C(c, a)``, the Erlang C probability that a request waits;
- ``W_q = P_wait / (c·μ − λ)``, the mean wait; ``T = W_q + 1/μ`` the mean response time;
- the wait is 0 with probability ``1 − P_wait`` and otherwise exponential with rate
  ``θ = c·μ − λ``, so the response-time tail is closed-form (wait + an exponential service).

Everything is infinite when ``λ ≥ c·μ``: the queue grows without bound.

>>> round(erlang_c(2, 1.0), 6)   # the textbook value: 1/3
0.333333
>>> round(mean_wait(2, 1.0, 1.0), 6), round(mean_response(2, 1.0, 1.0), 6)
(0.333333, 1.333333)
>>> mean_wait(2, 2.0, 1.0)
inf
"""

from __future__ import annotations

import math

from slocast.errors import ConfigError

__all__ = [
    "erlang_c",
    "mean_response",
    "mean_wait",
    "replicas_for_slo",
    "response_tail",
]


def erlang_c(c: int, a: float) -> float:
    """Probability that an arriving request waits, for ``c`` servers and offered load ``a``.

    Computed through the Erlang B recursion (numerically stable for thousands of servers).
    """
    if c < 1:
        raise ConfigError("need at least one replica", field="replicas")
    if a < 0:
        raise ConfigError("offered load must be non-negative", field="load")
    if a == 0:
        return 0.0
    if a >= c:
        return 1.0
    blocking = 1.0
    for k in range(1, c + 1):
        blocking = a * blocking / (k + a * blocking)
    rho = a / c
    return blocking / (1.0 - rho + rho * blocking)


def mean_wait(c: int, arrival_rate: float, service_rate: float) -> float:
    """``W_q``: the mean time a request waits before service starts."""
    capacity = c * service_rate
    if arrival_rate >= capacity:
        return math.inf
    return erlang_c(c, arrival_rate / service_rate) / (capacity - arrival_rate)


def mean_response(c: int, arrival_rate: float, service_rate: float) -> float:
    """``T = W_q + 1/μ``."""
    return mean_wait(c, arrival_rate, service_rate) + 1.0 / service_rate


def response_tail(c: int, arrival_rate: float, service_rate: float, t: float) -> float:
    """``P(T > t)``: the share of requests slower than ``t``.

    >>> round(response_tail(1, 0.5, 1.0, 2.0), 6)   # M/M/1: T ~ Exp(μ − λ)
    0.367879
    """
    capacity = c * service_rate
    if arrival_rate >= capacity:
        return 1.0
    mu = service_rate
    p_wait = erlang_c(c, arrival_rate / mu)
    theta = capacity - arrival_rate
    no_wait = math.exp(-mu * t)
    if math.isclose(theta, mu):
        waited = (1.0 + mu * t) * math.exp(-mu * t)
    else:  # tail of Exp(theta) + Exp(mu)
        waited = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
    return (1.0 - p_wait) * no_wait + p_wait * waited


def replicas_for_slo(
    arrival_rate: float,
    service_rate: float,
    slo: float,
    percentile: float = 0.99,
    max_replicas: int = 10_000,
) -> int:
    """The smallest ``c`` whose response time meets ``slo`` for ``percentile`` of requests.

    >>> replicas_for_slo(10.0, 1.0, slo=5.0, percentile=0.9)
    11
    """
    if not 0 < percentile < 1:
        raise ConfigError("percentile must be in (0, 1)", field="percentile")
    if service_rate <= 0 or slo <= 0:
        raise ConfigError("service rate and SLO must be positive", field="slo")
    if math.exp(-service_rate * slo) > 1 - percentile:
        # Even with no waiting, service alone misses the SLO that often: more replicas can't help.
        raise ConfigError(
            f"service time alone exceeds the SLO for more than {100 * (1 - percentile):g}% "
            "of requests",
            field="slo",
        )
    c = max(1, math.floor(arrival_rate / service_rate) + 1)
    while response_tail(c, arrival_rate, service_rate, slo) > 1 - percentile:
        c += 1
        if c > max_replicas:
            raise ConfigError(f"more than {max_replicas} replicas needed", field="max_replicas")
    return c
