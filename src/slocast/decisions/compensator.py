"""CPU compensation: when a stage loses replicas, give each remaining replica more CPU.

The incremental algorithm: each round adds ``max(0.5, 0.25 × (C_pred − C_cur))`` cores, where
``C_pred`` is the per-replica CPU the fewer replicas should need (e.g. the old total spread over
the new count); at most ``max_rounds`` rounds; it stops when a round improves latency by less
than ``min_gain`` (5 %) -- that last increment is not kept, since it bought too little -- and
never leaves ``[min_cores, max_cores]``.

>>> def latency(cores):          # a stage whose latency falls with CPU, down to a floor
...     return 0.1 + 1.0 / cores
>>> out = compensate_cpu(current_cores=2.0, predicted_cores=6.0, latency_at=latency)
>>> out.cores, out.rounds
(5.3125, 5)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slocast.errors import ConfigError

__all__ = ["Compensation", "compensate_cpu"]


@dataclass(frozen=True)
class Compensation:
    cores: float
    rounds: int
    latencies: tuple[float, ...]  # latency before, then after each round tried


def compensate_cpu(
    current_cores: float,
    predicted_cores: float,
    latency_at: Callable[[float], float],
    max_rounds: int = 5,
    min_gain: float = 0.05,
    min_cores: float = 1.0,
    max_cores: float = 16.0,
) -> Compensation:
    """Raise per-replica CPU step by step while it still pays (see the module docstring)."""
    if not 0 < min_cores <= max_cores:
        raise ConfigError("need 0 < min_cores <= max_cores", field="min_cores")
    cores = min(max_cores, max(min_cores, current_cores))
    latencies = [latency_at(cores)]
    rounds = 0
    while rounds < max_rounds and cores < max_cores:
        step = max(0.5, 0.25 * (predicted_cores - cores))
        trial = min(max_cores, cores + step)
        latency = latency_at(trial)
        latencies.append(latency)
        rounds += 1
        if latencies[-2] <= 0 or (latencies[-2] - latency) / latencies[-2] < min_gain:
            break
        cores = trial
    return Compensation(cores, rounds, tuple(latencies))
