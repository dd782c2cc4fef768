"""Autoscaling scenario: a replicated service behind one FCFS queue, replayed with simpy.

Arrivals follow a per-second rate trace (each second's requests spread uniformly over it, the
same draws for every policy). Service times are exponential with mean ``1/service_rate``
(seeded, identical per policy). Every ``sync_s`` the policy sees the last period's arrival rate,
latency percentile, replicas and utilisation, and sets a replica count; new replicas serve only
after ``startup_s`` (and cost from the moment they are requested), removed ones finish their
request first. A request that waited ``timeout_s`` is dropped (the client gave up). After the
trace ends, the queue drains, so every request is either served or dropped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from slocast.decisions.autoscaler import Observation
from slocast.decisions.queueing import replicas_for_slo
from slocast.errors import require_fields, require_positive
from slocast.sim.results import PolicyResult

__all__ = ["AutoscaleScenario", "simulate_autoscale"]


@dataclass(frozen=True)
class AutoscaleScenario:
    service_rate: float = 10.0  # requests per second one replica serves (mean 100 ms)
    slo_s: float = 1.0
    percentile: float = 0.99
    sync_s: float = 15.0
    startup_s: float = 20.0
    timeout_s: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive(self, "service_rate", "slo_s", "sync_s", "timeout_s")
        require_fields(self, lambda v: 0 <= v < math.inf, ">= 0 and finite", "startup_s")
        require_fields(self, lambda v: 0 < v < 1, "in (0, 1)", "percentile")


def _exponential_draws(seed: int, mean: float, chunk: int = 65_536) -> Iterator[float]:
    """An endless seeded stream of service times, drawn a chunk at a time."""
    rng = np.random.default_rng(seed)
    while True:
        yield from rng.exponential(mean, chunk).tolist()


class _Service:
    """The queue, the replicas and the books of one simulated run."""

    def __init__(
        self, env: simpy.Environment, scenario: AutoscaleScenario, result: PolicyResult
    ) -> None:
        self.env = env
        self.scenario = scenario
        self.result = result
        self.queue: deque[float] = deque()
        self.idle: deque[simpy.Event] = deque()
        self.ready = 0
        self.starting = 0
        self.retire = 0  # replicas asked to stop at their next idle moment
        self.busy = 0.0
        self.last_change = 0.0
        self.service_times = _exponential_draws(scenario.seed + 1, 1.0 / scenario.service_rate)

    @property
    def provisioned(self) -> int:
        return self.ready + self.starting - self.retire

    def _account(self) -> None:
        now = self.env.now
        self.result.replica_seconds += (self.ready + self.starting) * (now - self.last_change)
        self.last_change = now

    def arrive(self) -> None:
        self.queue.append(self.env.now)
        self.result.arrived += 1
        if self.idle:
            self.idle.popleft().succeed()

    def replica(self) -> Any:
        self.ready += 1
        while True:
            if self.retire > 0:
                self._account()
                self.retire -= 1
                self.ready -= 1
                return
            if not self.queue:
                wake = self.env.event()
                self.idle.append(wake)
                yield wake
                continue
            submitted = self.queue.popleft()
            if self.env.now - submitted > self.scenario.timeout_s:
                self.result.dropped += 1
                continue
            service = next(self.service_times)
            self.busy += service
            yield self.env.timeout(service)
            self.result.latencies.append(self.env.now - submitted)
            self.result.served += 1

    def boot(self) -> Any:
        yield self.env.timeout(self.scenario.startup_s)
        self._account()
        self.starting -= 1
        self.env.process(self.replica())

    def scale_to(self, target: int) -> None:
        change = target - self.provisioned
        if change == 0:
            return
        self._account()
        self.result.scale_events += 1
        if change > 0:
            cancel = min(change, self.retire)  # keep replicas that were about to stop
            self.retire -= cancel
            for _ in range(change - cancel):
                self.starting += 1
                self.env.process(self.boot())
        else:
            self.retire += -change
            # Idle replicas see the order at once; busy ones after their current request.
            for _ in range(min(self.retire, len(self.idle))):
                self.idle.popleft().succeed()
        self.result.timeline.append((self.env.now, target))


def simulate_autoscale(
    rates: np.ndarray,
    policy: Any,
    scenario: AutoscaleScenario,
    progress: Callable[[float], None] | None = None,
    history: np.ndarray | None = None,
) -> PolicyResult:
    """Replay ``rates`` (requests per second) under ``policy``; see the module docstring.

    ``history``: the rates of the seconds before ``rates``, on record when the replay starts. A
    policy that reads the series (``decide_with_series``) sees them in front of what the
    replay has shown so far, and one with a ``prime`` method replays them first."""
    env = simpy.Environment()
    result = PolicyResult(getattr(policy, "name", type(policy).__name__), scenario.slo_s)
    service = _Service(env, scenario, result)
    counts = np.rint(rates).astype(np.int64)
    past = np.rint(history).astype(np.int64) if history is not None else counts[:0]
    # What a series-reading policy sees: the record, then the replay up to now.
    series = np.concatenate([past, counts]).astype(np.float64)
    prime = getattr(policy, "prime", None)
    if prime is not None and len(past):
        prime(series[: len(past)])
    rng = np.random.default_rng(scenario.seed)
    offsets = [np.sort(rng.random(n)) for n in counts]
    first_minute = float(counts[:60].mean()) if len(counts) else 0.0
    initial = replicas_for_slo(
        first_minute, scenario.service_rate, scenario.slo_s, scenario.percentile
    )
    for _ in range(initial):
        env.process(service.replica())
    result.timeline.append((0.0, initial))
    horizon = float(len(counts))

    def arrivals() -> Any:
        for second, seconds_offsets in enumerate(offsets):
            for offset in seconds_offsets.tolist():
                yield env.timeout(second + offset - env.now)
                service.arrive()

    # A policy may run its own control loop period (the HPA's is the scenario's, 15 s).
    sync_s = float(getattr(policy, "sync_s", scenario.sync_s))

    def controller() -> Any:
        seen_latencies, seen_arrivals, seen_busy = 0, 0, 0.0
        while env.now + sync_s <= horizon:
            yield env.timeout(sync_s)
            window = result.latencies[seen_latencies:]
            latency = float(np.percentile(window, 100 * scenario.percentile)) if window else np.nan
            busy = service.busy - seen_busy
            obs = Observation(
                arrival_rate=(result.arrived - seen_arrivals) / sync_s,
                latency=latency,
                replicas=max(service.provisioned, 1),
                utilisation=busy / max(service.ready, 1) / sync_s,
                queued=len(service.queue),
            )
            seen_latencies, seen_arrivals, seen_busy = (
                len(result.latencies),
                result.arrived,
                service.busy,
            )
            with_series = getattr(policy, "decide_with_series", None)
            if with_series is not None:
                target = with_series(env.now, obs, series[: len(past) + int(env.now)])
            else:
                target = policy.decide(env.now, obs)
            service.scale_to(int(target))
            if progress:
                progress(env.now / horizon)

    env.process(arrivals())
    env.process(controller())
    # Runs until nothing is scheduled: the trace is over and the queue has drained (each
    # request served, or dropped once it waited past the client timeout).
    env.run()
    service._account()
    return result
