"""Request routing across model-server replicas: SLO-aware, and today's baselines.

A router sees, for each replica, what an llm-d style gateway scrapes: requests waiting and
running, KV-cache use, this request's prefix-cache hit on that replica, and tokens in flight.
The SLO-aware router asks a predictor for a TTFT upper bound on every replica. Every replica
whose bound meets the SLO, or comes within a margin of the lowest bound, is good enough for
the request; among those it keeps the prompt where it is cached (llm-d's prefix rule), then
takes the lowest bound. When no replica can meet the SLO it may shed the request instead.

The predictor is any callable from feature dicts (the ``llm-ttft`` domain's inputs) to
:class:`~slocast.schema.Prediction` -- a loaded bundle, an in-process forecaster, a remote
prediction server -- so this module never depends on a model class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from slocast.errors import ConfigError
from slocast.schema import Prediction

__all__ = [
    "SHED",
    "LeastLoaded",
    "LeastWork",
    "PrefixAware",
    "ReplicaState",
    "RoundRobin",
    "SLOAwareRouter",
    "check_router_options",
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


class LeastWork:
    """Fewest prompt tokens waiting or in prefill (ties: fewest requests).

    A request count weighs a 100-token prompt and a 10,000-token one alike; the prompt tokens
    queued ahead are the prefill the next prompt waits for, and an llm-d gateway scrapes them
    (tokens in flight). It knows nothing of the prefix cache or of the decode slots.
    """

    name = "least-work"

    def route(self, replicas: Sequence[ReplicaState], input_tokens: float) -> int:
        return min(
            range(len(replicas)),
            key=lambda i: (replicas[i].prefill_tokens_in_flight, replicas[i].load),
        )


# How much less of the prompt a replica may have cached than the best one and still count
# as a prefix hit (llm-d's prefix scorer).
PREFIX_TOLERANCE = 0.1


def _cached(
    replicas: Sequence[ReplicaState], candidates: Sequence[int], tolerance: float
) -> list[int]:
    """The candidates whose prefix-cache hit is within ``tolerance`` of the best one's."""
    best = max(replicas[i].prefix_score for i in candidates)
    return [i for i in candidates if replicas[i].prefix_score >= best - tolerance]


class PrefixAware:
    """llm-d's default scoring: the best prefix-cache hit first, then the least load among
    replicas within ``tolerance`` of that hit."""

    name = "prefix-aware"

    def __init__(self, tolerance: float = PREFIX_TOLERANCE) -> None:
        self.tolerance = tolerance

    def route(self, replicas: Sequence[ReplicaState], input_tokens: float) -> int:
        hits = _cached(replicas, range(len(replicas)), self.tolerance)
        return min(hits, key=lambda i: replicas[i].load)


Predictor = Callable[[Sequence[Mapping[str, object]]], Sequence[Prediction]]


def check_router_options(margin: float, shed_above: float) -> None:
    """A ConfigError when :class:`SLOAwareRouter`'s ``margin`` is not a finite number >= 0 or
    ``shed_above`` not a finite number > 0; callers run it before a long warm-up, too."""
    if not 0.0 <= margin < math.inf:
        raise ConfigError(
            f"router margin must be a finite number >= 0, got {margin}", field="margin"
        )
    if not 0.0 < shed_above < math.inf:
        raise ConfigError(
            f"shed-above must be a finite number > 0, got {shed_above}", field="shed_above"
        )


class SLOAwareRouter:
    """The prompt kept where it is cached among the replicas good enough by predicted TTFT
    upper bound (meeting the SLO, or within ``margin`` of the lowest bound), then the lowest
    bound (or, with ``spread``, one of them drawn by its headroom under the SLO); shed when
    told to and the predicted median TTFT exceeds ``shed_above`` times the SLO on every
    replica (1: wherever it goes, the request is likelier to miss the SLO than to meet it).

    Sending a conversation's next turn wherever its own bound is lowest prefills the whole
    prompt again on another replica: that work delays every later request there, and near
    saturation the cache hits given up are the capacity the fleet lacks (on Mooncake's
    conversations at 1.1x their rate, attainment fell to 11-26 %, against llm-d's prefix rule's
    56 %). A replica that meets the SLO serves this request well enough; bounds within
    ``margin`` of the lowest are not told apart (a 90 % bound of one request is estimated from
    the tail). Without prefixes (no hit anywhere) it is the replica with the lowest bound.

    Shedding looks at the median, not the bound: a request whose 90 % bound is past the SLO
    may still meet it most of the time. On 8,000 Mooncake requests at 1.0x and 1.1x their
    rate, shedding on the bound turned away 10.9 % and 14.3 % of them and kept 88.7 % and 85.4 %
    within the SLO; on the median, 7.8 % and 11.1 %, keeping 90.9 % and 88.0 %. A predictor
    without medians (NaN points) sheds on its bound.

    >>> from slocast.schema import Prediction
    >>> fake = lambda rows: [Prediction(0.05 * r["num_request_waiting"],
    ...                                 0.1 * r["num_request_waiting"], 0.9, "t") for r in rows]
    >>> router = SLOAwareRouter(fake, slo_s=0.25)
    >>> free = ReplicaState(0, 0, 0.0, 0.0, 0.0, 0.0)
    >>> busy = ReplicaState(3, 4, 0.5, 0.0, 0.0, 0.0)
    >>> router.route([busy, free], 100.0)
    1
    >>> SLOAwareRouter(fake, slo_s=0.05, shed=True).route([busy, busy], 100.0)
    -1
    >>> SLOAwareRouter(fake, slo_s=0.05, shed=True, shed_above=4.0).route([busy, busy], 100.0)
    0
    >>> cached = ReplicaState(1, 4, 0.5, 0.9, 0.0, 0.0)  # bound 0.1, within the SLO
    >>> router.route([cached, free], 100.0)
    0
    """

    name = "slo-aware"

    def __init__(
        self,
        predictor: Predictor,
        slo_s: float,
        shed: bool = False,
        spread: bool = False,
        seed: int = 0,
        margin: float = 0.5,
        shed_above: float = 1.0,
    ) -> None:
        check_router_options(margin, shed_above)
        self.predictor = predictor
        self.slo_s = slo_s
        self.shed = shed
        self.shed_above = shed_above
        self.margin = margin
        # spread: among the chosen-from replicas (good enough, prompt cached), draw one with
        # probability ∝ its headroom under the SLO instead of always the lowest bound --
        # near-equal bounds then do not herd every request onto one replica between two
        # state updates.
        self.spread = spread
        self.rng = np.random.default_rng(seed)
        self.last_bounds: list[float] = []
        self.name = "slo-aware" + ("-spread" if spread else "") + ("-shed" if shed else "")

    def route(self, replicas: Sequence[ReplicaState], input_tokens: float) -> int:
        predictions = self.predictor([r.features(input_tokens) for r in replicas])
        bounds = [p.upper for p in predictions]
        self.last_bounds = bounds
        lowest = min(bounds)
        if self.shed:
            medians = [p.point if p.point == p.point else p.upper for p in predictions]
            if min(medians) > self.slo_s * self.shed_above:
                return SHED
        enough = max(self.slo_s, lowest * (1.0 + self.margin))
        good = [i for i, bound in enumerate(bounds) if bound <= enough]
        hits = _cached(replicas, good, PREFIX_TOLERANCE)
        if self.spread:
            headroom = np.array([max(self.slo_s - bounds[i], 0.0) for i in hits])
            if headroom.sum() > 0:
                return hits[int(self.rng.choice(len(hits), p=headroom / headroom.sum()))]
        return min(hits, key=lambda i: (bounds[i], replicas[i].load))
