"""Placement scenario: requests for many base models on a few GPU servers with a model cache.

Each request (Alibaba GenAI trace: arrival, base model, execution time) must run on a server
holding its base model. Servers keep loaded models in a :class:`KeysManager` (LRU, at most 85 %
of memory); a request sent to a server without its model waits for a cold load first. Servers
serve one request at a time (a GPU pipeline), FCFS. Arrivals can be compressed by ``load``.
Latency = queueing + cold load (if any) + execution.

Policies: ``round-robin``, ``least-loaded`` (shortest queue), ``random`` (seeded), and
``cache-aware``: the least-loaded server already holding the model unless its queue is
``spill`` requests longer than the least-loaded one; otherwise the model is placed by KL
dispersion (popular "critical" models spread by capacity) or on the emptiest server.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import simpy

from slocast.decisions.placement import KeysManager, kl_dispersed_choice
from slocast.errors import require_fields, require_positive
from slocast.sim.results import PolicyResult

__all__ = ["PlaceScenario", "PlacementRequests", "simulate_place"]


@dataclass(frozen=True)
class PlacementRequests:
    arrival_s: np.ndarray
    model: np.ndarray  # base model id per request
    exec_s: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> PlacementRequests:
        """From an ``alibaba-lora`` dataset frame (seconds since the first request)."""
        return cls(
            (frame["time"] - frame["time"].min()).to_numpy(np.float64),
            frame["checkpoint_model_version_id"].astype(str).to_numpy(),
            frame["exec_time_seconds"].to_numpy(np.float64),
        )


@dataclass(frozen=True)
class PlaceScenario:
    servers: int = 8
    memory_gb: float = 40.0
    model_gb: float = 10.0
    load_s: float = 20.0  # cold load of one base model
    load: float = 1.0  # arrival-rate multiplier (the trace is bursty: 1.0 already queues)
    slo_s: float = 90.0
    spill: int = 3  # queue-length gap that justifies a cold load elsewhere
    critical_top: int = 4  # the most requested models count as critical (spread by KL)
    seed: int = 0

    def __post_init__(self) -> None:
        require_fields(self, lambda v: v >= 1, ">= 1", "servers")
        require_positive(self, "memory_gb", "model_gb", "load", "slo_s")
        require_fields(self, lambda v: v >= 0, ">= 0", "load_s", "spill", "critical_top")


class _Server:
    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.queue: deque[tuple[int, float]] = deque()
        self.wake: simpy.Event | None = None

    @property
    def load(self) -> int:
        return len(self.queue)

    def submit(self, index: int) -> None:
        self.queue.append((index, self.env.now))
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()


class _Policy:
    def __init__(self, name: str, scenario: PlaceScenario, critical: set[str]) -> None:
        self.name = name
        self.scenario = scenario
        self.critical = critical
        self.next = 0
        self.rng = np.random.default_rng(scenario.seed)
        self.counts: Counter[str] = Counter()

    def choose(self, model: str, servers: list[_Server], keys: KeysManager) -> int:
        n = len(servers)
        if self.name == "round-robin":
            self.next += 1
            return (self.next - 1) % n
        if self.name == "random":
            return int(self.rng.integers(n))
        least = min(range(n), key=lambda i: servers[i].load)
        if self.name == "least-loaded":
            return least
        warm = [i for i in range(n) if keys.has(str(i), model)]
        if warm:
            best = min(warm, key=lambda i: servers[i].load)
            if servers[best].load - servers[least].load < self.scenario.spill:
                return best
        if model in self.critical:
            idle = [str(i) for i in range(n) if servers[i].load <= servers[least].load]
            capacity = {str(i): 1.0 for i in range(n)}
            return int(kl_dispersed_choice(self.counts, capacity, idle))
        return least


def simulate_place(
    requests: PlacementRequests, policy_name: str, scenario: PlaceScenario
) -> PolicyResult:
    env = simpy.Environment()
    result = PolicyResult(policy_name, scenario.slo_s)
    keys = KeysManager({str(i): scenario.memory_gb for i in range(scenario.servers)})
    servers = [_Server(env) for _ in range(scenario.servers)]
    popular = Counter(requests.model.tolist()).most_common(scenario.critical_top)
    policy = _Policy(policy_name, scenario, {m for m, _ in popular})
    cold = 0

    def serve(number: int, server: _Server) -> Any:
        nonlocal cold
        while True:
            if not server.queue:
                server.wake = env.event()
                yield server.wake
                server.wake = None
                continue
            index, arrived = server.queue[0]
            model = str(requests.model[index])
            if not keys.has(str(number), model):
                cold += 1
                yield env.timeout(scenario.load_s)
            keys.load(str(number), model, scenario.model_gb)
            yield env.timeout(float(requests.exec_s[index]))
            server.queue.popleft()
            result.latencies.append(env.now - arrived)
            result.served += 1

    def arrivals() -> Any:
        times = requests.arrival_s / scenario.load
        for index in range(len(times)):
            yield env.timeout(max(0.0, times[index] - env.now))
            model = str(requests.model[index])
            chosen = policy.choose(model, servers, keys)
            if model in policy.critical and not keys.has(str(chosen), model):
                policy.counts[str(chosen)] += 1
            result.arrived += 1
            servers[chosen].submit(index)

    for number, server in enumerate(servers):
        env.process(serve(number, server))
    env.process(arrivals())
    env.run()
    result.replica_seconds = scenario.servers * env.now
    result.extra["cold_loads"] = float(cold)
    result.extra["evictions"] = float(keys.evictions)
    return result
