"""The baselines people run today: the user's request, a VPA-like recommender, the last value.

All are online: ``observe`` feeds them outcomes as jobs finish, exactly like the calibrated
model, so the comparison is fair.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd

from slocast.errors import ConfigError
from slocast.features import group_keys
from slocast.models.base import Bounds
from slocast.schema import POOLED, DomainSpec

__all__ = ["DecayingHistogram", "LastValueBaseline", "UserRequestBaseline", "VPABaseline"]


def _groups(frame: pd.DataFrame, spec: DomainSpec) -> list[str]:
    return group_keys(frame, spec).tolist()  # type: ignore[no-any-return]


class UserRequestBaseline:
    """Allocate exactly what the user asked for (requested memory, requested wall time)."""

    name = "user_request"
    online = False

    def __init__(self, spec: DomainSpec) -> None:
        if spec.user_request is None:
            raise ConfigError(
                f"domain {spec.name} has no user-request column", field="user_request"
            )
        self.column = spec.user_request

    def fit(self, train: pd.DataFrame) -> None:
        """Nothing to learn."""

    def predict(self, frame: pd.DataFrame) -> Bounds:
        request = frame[self.column].to_numpy(np.float64)
        return Bounds(request.copy(), request)

    def observe(self, done: pd.DataFrame, served: Bounds) -> None:
        """Nothing to learn."""


class DecayingHistogram:
    """Kubernetes VPA's histogram: exponential buckets (5% wide), weights halving per half-life.

    >>> h = DecayingHistogram(half_life=10.0)
    >>> for t, v in enumerate([100.0] * 9 + [200.0]):
    ...     h.add(v, float(t))
    >>> 100.0 <= h.percentile(0.5) <= 105.0
    True
    """

    def __init__(self, half_life: float, first_bucket: float = 1e-3, growth: float = 1.05) -> None:
        self.half_life = half_life
        self.first_bucket = first_bucket
        self.log_growth = math.log(growth)
        self.weights: dict[int, float] = defaultdict(float)
        self.reference: float | None = None

    def add(self, value: float, time: float) -> None:
        if self.reference is None:
            self.reference = time
        exponent = (time - self.reference) / self.half_life
        if exponent > 60:  # renormalize before the weights overflow, as VPA does
            scale = 2.0 ** (-exponent)
            for key in self.weights:
                self.weights[key] *= scale
            self.reference, exponent = time, 0.0
        bucket = max(
            0, int(math.log(max(value, self.first_bucket) / self.first_bucket) / self.log_growth)
        )
        self.weights[bucket] += 2.0**exponent

    def percentile(self, q: float) -> float:
        """Upper edge of the bucket holding the weighted ``q`` quantile (NaN when empty)."""
        if not self.weights:
            return float("nan")
        keys = sorted(self.weights)
        cumulative = np.cumsum([self.weights[k] for k in keys])
        index = int(np.searchsorted(cumulative, q * cumulative[-1]))
        return self.first_bucket * math.exp((keys[min(index, len(keys) - 1)] + 1) * self.log_growth)


class VPABaseline:
    """Per-group decaying-histogram p90 plus VPA's 15% safety margin (pooled for new groups)."""

    name = "vpa_p90"

    def __init__(
        self,
        spec: DomainSpec,
        percentile: float = 0.9,
        margin: float = 0.15,
        half_life: float | None = None,
    ) -> None:
        self.spec = spec
        self.percentile = percentile
        self.margin = margin
        # VPA's default half-life is 24 h; a trace timed in rows decays over 500 rows instead.
        self.half_life = half_life or (500.0 if spec.time_unit == "row" else 86400.0)
        self.histograms: dict[str, DecayingHistogram] = {}

    def _add(self, frame: pd.DataFrame) -> None:
        values = frame[self.spec.target].to_numpy(np.float64)
        times = frame[self.spec.known_at].to_numpy(np.float64)
        for group, value, time in zip(_groups(frame, self.spec), values, times, strict=True):
            for key in {group, POOLED}:
                hist = self.histograms.setdefault(key, DecayingHistogram(self.half_life))
                hist.add(float(value), float(time))

    def fit(self, train: pd.DataFrame) -> None:
        self.histograms = {}
        self._add(train)

    def predict(self, frame: pd.DataFrame) -> Bounds:
        cache: dict[str, float] = {}
        for group in set(_groups(frame, self.spec)):
            hist = self.histograms.get(group) or self.histograms.get(POOLED)
            cache[group] = np.nan if hist is None else hist.percentile(self.percentile)
        upper = np.array([cache[g] for g in _groups(frame, self.spec)]) * (1.0 + self.margin)
        return Bounds(upper / (1.0 + self.margin), upper)

    def observe(self, done: pd.DataFrame, served: Bounds) -> None:
        self._add(done)


class LastValueBaseline:
    """Bound = the group's most recent known outcome (pooled last value for new groups)."""

    name = "last_value"

    def __init__(self, spec: DomainSpec) -> None:
        self.spec = spec
        self.last: dict[str, float] = {}

    def fit(self, train: pd.DataFrame) -> None:
        self.last = {}
        self.observe(train, Bounds(np.zeros(0), np.zeros(0)))

    def predict(self, frame: pd.DataFrame) -> Bounds:
        pooled = self.last.get(POOLED, np.nan)
        upper = np.array(
            [self.last.get(g, pooled) for g in _groups(frame, self.spec)], dtype=np.float64
        )
        return Bounds(upper.copy(), upper)

    def observe(self, done: pd.DataFrame, served: Bounds) -> None:
        ordered = done.sort_values(self.spec.known_at, kind="stable")
        for group, value in zip(
            _groups(ordered, self.spec), ordered[self.spec.target], strict=True
        ):
            self.last[group] = float(value)
            self.last[POOLED] = float(value)
