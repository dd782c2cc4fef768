"""Request routing across model-server replicas: SLO-aware, and today's baselines.

A router sees, for each replica, what an llm-d style gateway scrapes: requests waiting and
running, KV-cache use, this request's prefix-cache hit on that replica, and tokens in flight.
The SLO-aware router asks a predictor for a TTFT upper bound on every replica and sends the
request where the bound leaves the most headroom under the SLO; when no replica can meet it,
it sends the request where the bound is lowest, or sheds it when told to.

The predictor is any callable from feature dicts (the ``llm-ttft`` domain's inputs) to
:class:`~slocast.schema.Prediction` -- a loaded bundle, an in-process forecaster, a remote
prediction server -- so this module never depends on a model class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from slocast.schema import Prediction

__all__ = [
    "SHED",
    "LeastLoaded",
    "PrefixAware",
    "ReplicaState",
    "RoundRobin",
    "SLOAwareRouter",
]

SHED = -1  # route() result: the request is rejected


@dataclass(frozen=True)
class ReplicaState:
    waiting: int
    running: int
    kv_cache_pct: float
    prefix_score: float  # share of this request's prompt already cached on the replica
    prefill_tokens_in_flight: float
    decode_tokens_in_flight: float

    def features(self, input_tokens: float) -> dict[str, float]:
        """The llm-ttft domain's inputs for this request on this replica."""
        return {
            "kv_cache_percentage": self.kv_cache_pct,
            "input_token_length": input_tokens,
            "num_request_waiting": float(self.waiting),
            "num_request_running": float(self.running),
            "num_tokens_generated": 0.0,
            "prefix_cache_score": self.prefix_score,
            "prefill_tokens_in_flight": self.prefill_tokens_in_flight,
            "decode_tokens_in_flight": self.decode_tokens_in_flight,
        }

    @property
    def load(self) -> int:
        return self.waiting + self.running


class RoundRobin:
    name = "round-robin"

    def __init__(self) -> None:
        self.next = 0

    def route(self, replicas: Sequence[ReplicaState], input_tokens: float) -> int:
        chosen = self.next % len(replicas)
        self.next += 1
        return chosen


class LeastLoaded:
    """Fewest waiting + running requests (ties: the first)."""

    name = "least-loaded"

    def route(self, replicas: Sequence[ReplicaState], input_tokens: float) -> int:
        return min(range(len(replicas)), key=lambda i: replicas[i].load)


class PrefixAware:
    """llm-d's default scoring: the best prefix-cache hit first, then the least load among
    replicas within ``tolerance`` of that hit."""

    name = "prefix-aware"

    def __init__(self, tolerance: float = 0.1) -> None:
        self.tolerance = tolerance

    def route(self, replicas: Sequence[ReplicaState], input_tokens: float) -> int:
        best = max(r.prefix_score for r in replicas)
        candidates = [i for i, r in enumerate(replicas) if r.prefix_score >= best - self.tolerance]
        return min(candidates, key=lambda i: replicas[i].load)


Predictor = Callable[[Sequence[Mapping[str, object]]], Sequence[Prediction]]


class SLOAwareRouter:
    """Most headroom under the SLO by predicted TTFT upper bound; shed or best-effort when none.

    >>> from slocast.schema import Prediction
    >>> fake = lambda rows: [Prediction(0.0, 0.1 * r["num_request_waiting"], 0.9, "t")
    ...                      for r in rows]
    >>> router = SLOAwareRouter(fake, slo_s=0.25)
    >>> free = ReplicaState(0, 0, 0.0, 0.0, 0.0, 0.0)
    >>> busy = ReplicaState(3, 4, 0.5, 0.0, 0.0, 0.0)
    >>> router.route([busy, free], 100.0)
    1
    >>> SLOAwareRouter(fake, slo_s=0.05, shed=True).route([busy, busy], 100.0)
    -1
    """

    name = "slo-aware"

    def __init__(
        self,
        predictor: Predictor,
        slo_s: float,
        shed: bool = False,
        spread: bool = False,
        seed: int = 0,
    ) -> None:
        self.predictor = predictor
        self.slo_s = slo_s
        self.shed = shed
        # spread: among replicas that meet the SLO, draw one with probability ∝ its headroom
        # instead of always the largest -- near-equal bounds then do not herd every request
        # onto one replica between two state updates.
        self.spread = spread
        self.rng = np.random.default_rng(seed)
        self.last_bounds: list[float] = []
        if spread:
            self.name = "slo-aware-spread"

    def route(self, replicas: Sequence[ReplicaState], input_tokens: float) -> int:
        predictions = self.predictor([r.features(input_tokens) for r in replicas])
        bounds = [p.upper for p in predictions]
        self.last_bounds = bounds
        best = min(range(len(replicas)), key=lambda i: (bounds[i], replicas[i].load))
        if bounds[best] > self.slo_s:
            return SHED if self.shed else best
        if not self.spread:
            return best
        headroom = np.array([max(self.slo_s - b, 0.0) for b in bounds])
        return int(self.rng.choice(len(replicas), p=headroom / headroom.sum()))
