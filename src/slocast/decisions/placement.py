"""Cache-aware placement of pipeline stages / model shards on servers.

- :class:`KeysManager`: what each server has loaded (parameter keys with sizes), LRU, never
  above ``cap`` (85 %) of the server's memory: loading a key evicts the least recently used
  ones until it fits. A stage placed where its parameters are already loaded starts without a
  load.
- :func:`kl_dispersed_choice`: critical stages spread in proportion to server capacity. For
  each candidate server, the share of critical stages per server after placing there is
  compared with the capacity-weighted uniform distribution by KL divergence; the lowest
  divergence wins (``deterministic``), or servers are sampled with probability ∝ exp(−KL/T)
  from a seeded generator.

>>> km = KeysManager({"a": 100.0, "b": 100.0})
>>> km.load("a", "llama-shard-0", 50.0), km.load("a", "llama-shard-1", 30.0)
(True, True)
>>> km.load("a", "vit", 20.0)          # 50 + 30 + 20 > 85: evicts the least recent (shard 0)
True
>>> sorted(km.keys("a"))
['llama-shard-1', 'vit']
>>> kl_dispersed_choice({"a": 2, "b": 0}, {"a": 1.0, "b": 1.0})
'b'
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from slocast.errors import ConfigError

__all__ = ["KeysManager", "kl_dispersed_choice", "kl_divergence", "place_stage"]


class KeysManager:
    def __init__(self, capacity: Mapping[str, float], cap: float = 0.85) -> None:
        if not 0 < cap <= 1:
            raise ConfigError("memory cap must be in (0, 1]", field="cap")
        self.capacity = dict(capacity)
        self.cap = cap
        self._loaded: dict[str, OrderedDict[str, float]] = {s: OrderedDict() for s in capacity}
        self.evictions = 0

    def keys(self, server: str) -> list[str]:
        return list(self._loaded[server])

    def used(self, server: str) -> float:
        return sum(self._loaded[server].values())

    def has(self, server: str, key: str) -> bool:
        return key in self._loaded[server]

    def load(self, server: str, key: str, size: float) -> bool:
        """Make ``key`` resident on ``server`` (a hit refreshes it); False if it can never fit."""
        loaded = self._loaded[server]
        if key in loaded:
            loaded.move_to_end(key)
            return True
        limit = self.cap * self.capacity[server]
        if size > limit:
            return False
        while loaded and self.used(server) + size > limit:
            loaded.popitem(last=False)
            self.evictions += 1
        loaded[key] = size
        return True


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) over servers; zero-probability terms of p contribute nothing."""
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def kl_dispersed_choice(
    critical_counts: Mapping[str, int],
    capacity: Mapping[str, float],
    candidates: Sequence[str] | None = None,
    deterministic: bool = True,
    temperature: float = 0.1,
    rng: np.random.Generator | None = None,
) -> str:
    """The server for the next critical stage (see the module docstring)."""
    servers = list(capacity)
    allowed = list(candidates) if candidates is not None else servers
    if not allowed:
        raise ConfigError("no candidate server", field="candidates")
    q = np.array([capacity[s] for s in servers], dtype=np.float64)
    q /= q.sum()
    counts = np.array([critical_counts.get(s, 0) for s in servers], dtype=np.float64)
    scores = []
    for server in allowed:
        after = counts.copy()
        after[servers.index(server)] += 1
        scores.append(kl_divergence(after / after.sum(), q))
    if deterministic:
        return allowed[int(np.argmin(scores))]
    generator = rng if rng is not None else np.random.default_rng(0)
    weights = np.exp(-(np.array(scores) - min(scores)) / temperature)
    return allowed[int(generator.choice(len(allowed), p=weights / weights.sum()))]


def place_stage(
    keys: KeysManager,
    key: str,
    size: float,
    critical: bool,
    critical_counts: dict[str, int],
    deterministic: bool = True,
    rng: np.random.Generator | None = None,
) -> str:
    """Place one stage: a server already holding its parameters if any (no load), else --
    for critical stages -- the KL-dispersed choice, else the server with the most free memory.
    The choice is recorded in ``keys`` and ``critical_counts``."""
    fits = [s for s in keys.capacity if size <= keys.cap * keys.capacity[s]]
    if not fits:
        raise ConfigError(f"no server can hold {key!r} ({size:g})", field="size")
    warm = [s for s in fits if keys.has(s, key)]
    if warm:
        server = min(warm, key=lambda s: critical_counts.get(s, 0))
    elif critical:
        server = kl_dispersed_choice(
            critical_counts, keys.capacity, fits, deterministic=deterministic, rng=rng
        )
    else:
        server = max(fits, key=lambda s: keys.cap * keys.capacity[s] - keys.used(s))
    keys.load(server, key, size)
    if critical:
        critical_counts[server] = critical_counts.get(server, 0) + 1
    return server
