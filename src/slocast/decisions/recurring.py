"""Recurring surges: traffic that jumps at the same phase of a wall-clock period.

Cron jobs and scheduled exports fire at fixed times (every half hour, at the top of the hour),
and their traffic takes the rate from its base to several times it within seconds. A forecast
that extrapolates the recent rate sees such a step only once it began, and the replicas then
ordered serve a start-up time later: under FCFS every request in between waits behind the
backlog. Only foresight helps there, and the phase of the period is what foresees these steps.

:class:`PhaseForecaster` bounds the rate in the window that replicas ordered now will serve,
``[t + lead, t + lead + span)``, as the point forecast made at ``t`` plus a conformal quantile
of past *excesses* (a window's realised rate minus the point forecast made for it), taken over
one of these partitions of the past decisions:

- all of them (pooled): the bound any step-blind forecaster gives;
- for each candidate period ``P`` and jitter ``J``: the decisions at the same phase of the
  last cycles (``t - k·P``, within ``± J`` seconds), raised to at least the pooled bound.

Every partition's bound is scored, once its window has passed, by the pinball loss at
``coverage`` (the proper scoring rule for that quantile), discounted over time, and the
forecaster follows the partition that scored best. A period wins only where its phase foresees
excesses the pooled bound misses more than it costs in false alarms: on traffic without
recurring steps the pooled bound keeps winning, and nothing is reserved.

Excesses, not rates, are what the phase remembers: a surge's first seconds are what the point
forecast cannot see, while in a surge's body the point has caught up and the excess is small,
so the phase raises the bound at the onset alone.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from slocast.calibration.conformal import conformal_quantile, pinball_loss
from slocast.errors import ConfigError

__all__ = ["PhaseForecaster"]

# Wall-clock periods scheduled jobs use: 5, 10, 15, 30 minutes, 1 and 2 hours, a day.
CRON_PERIODS_S = (300, 600, 900, 1800, 3600, 7200, 86400)


@dataclass
class PhaseForecaster:
    """Upper bound of the rate when replicas ordered now serve, from the phase of past periods.

    ``lead_s``: how long ordered replicas take to serve (their start-up time); ``span_s``: the
    control period (the next decision's replicas take over after it); ``jitters``: how far a
    step's onset may wander around its phase from one cycle to the next, in control periods
    (a phase is sampled at the decisions within that many periods of it, two or more on each
    side) -- each period is tried with each jitter (a wider one reserves earlier and longer),
    and the scores choose; ``memory_s``: how far back cycles and scores count (the loss
    half-life is half of it), at most ``max_cycles`` cycles of a period; ``min_cycles``: the
    fewest past cycles a phase needs before its bound counts.
    """

    lead_s: int = 20
    span_s: int = 5
    coverage: float = 0.95
    periods: tuple[int, ...] = CRON_PERIODS_S
    jitters: tuple[int, ...] = (2, 4, 8)
    memory_s: int = 86_400
    max_cycles: int = 48
    min_cycles: int = 2
    jitters_s: list[int] = field(init=False)  # the jitters in seconds, narrowest first
    # The partitions after the pooled one: every (period, jitter in seconds).
    phases: list[tuple[int, int]] = field(init=False)
    _excess: np.ndarray = field(init=False, repr=False)  # a ring, by second of the series
    _remembered: int = field(default=-1, init=False, repr=False)  # the newest second in it
    _pooled: np.ndarray = field(init=False, repr=False)  # a ring of the latest excesses
    _pooled_seen: int = field(default=0, init=False, repr=False)
    _behind: list[np.ndarray] = field(init=False, repr=False)
    _pending: deque[tuple[int, float, np.ndarray]] = field(init=False, repr=False)
    _losses: np.ndarray = field(init=False, repr=False)
    _scored_at: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.coverage < 1.0:
            raise ConfigError("coverage must be in (0, 1)", field="coverage")
        if self.lead_s < 0:
            raise ConfigError("lead_s must be >= 0", field="lead_s")
        if self.span_s < 1:
            raise ConfigError("span_s must be >= 1", field="span_s")
        if min(self.jitters, default=-1) < 0:
            raise ConfigError("jitters must be one or more counts >= 0", field="jitters")
        self.jitters_s = sorted(j * self.span_s for j in self.jitters)
        widest = self.jitters_s[-1]
        if any(p <= self.lead_s + self.span_s + widest for p in self.periods):
            raise ConfigError(
                "every period must be longer than lead + span + the widest jitter",
                field="periods",
            )
        self.phases = [(p, j) for p in self.periods for j in self.jitters_s]
        self._pooled = np.empty(max(1, self.memory_s // self.span_s))
        # Per period: how far behind a decision its cycles' samples lie (cycle x offset, the
        # offsets of the widest jitter; a narrower one is the middle columns).
        offsets = np.arange(-widest, widest + 1)
        self._behind = [
            np.arange(1, min(self.max_cycles, self.memory_s // p) + 1)[:, None] * p
            - offsets[None, :]
            for p in self.periods
        ]
        # Every sample a bound reads lies within the memory and the widest jitter of now.
        self._excess = np.full(self.memory_s + widest + self.lead_s + self.span_s + 1, np.nan)
        self._pending = deque()
        self._losses = np.zeros(1 + len(self.phases))

    @property
    def _best(self) -> int:
        """Index of the best-scoring partition (0: pooled; ties go to it, first)."""
        return int(np.argmin(self._losses))

    @property
    def phase(self) -> tuple[int, int] | None:
        """The (period, jitter) whose phase the bound follows now (None: the pooled bound)."""
        best = self._best
        return None if best == 0 else self.phases[best - 1]

    @property
    def period(self) -> int | None:
        """The period whose phase the bound follows now (None: the pooled bound)."""
        phase = self.phase
        return None if phase is None else phase[0]

    def losses(self) -> dict[str, float]:
        """Discounted pinball loss of each partition ("pooled", "PERIOD±JITTER" in seconds)."""
        names = ["pooled", *(f"{p}±{j}" for p, j in self.phases)]
        return dict(zip(names, self._losses.tolist(), strict=True))

    def reservation(self, series: np.ndarray, point: float) -> float | None:
        """The rate to hold replicas for at ``t = len(series)``, when the best partition is a
        period's phase and its bound is above the pooled one (None otherwise).

        ``series``: requests per second so far; ``point``: the point forecast made now. Call
        once per decision: it also scores the earlier decisions whose window has passed."""
        self._settle(series)
        t = len(series)
        bounds = self._bounds(t, point)
        self._pending.append((t, point, bounds))
        best = self._best
        if best == 0 or not np.isfinite(bounds[best]) or bounds[best] <= bounds[0]:
            return None
        return float(bounds[best])

    def _settle(self, series: np.ndarray) -> None:
        now = len(series)
        while self._pending and self._pending[0][0] + self.lead_s + self.span_s <= now:
            t, point, bounds = self._pending.popleft()
            start = t + self.lead_s
            excess = float(series[start : start + self.span_s].mean()) - point
            self._remember(t, excess)
            if not np.isfinite(bounds[0]):
                continue
            # A partition without enough cycles yet served the pooled bound.
            bounds = np.where(np.isfinite(bounds), bounds, bounds[0])
            self._losses *= 0.5 ** ((t - self._scored_at) / (self.memory_s / 2))
            self._losses += pinball_loss((point + excess) - bounds, self.coverage)
            self._scored_at = t

    def _remember(self, t: int, excess: float) -> None:
        # The seconds since the last decision had none: clear what the ring held for them.
        size = len(self._excess)
        skipped = np.arange(max(self._remembered + 1, t - size + 1), t)
        self._excess[skipped % size] = np.nan
        self._excess[t % size] = excess
        self._remembered = t
        self._pooled[self._pooled_seen % len(self._pooled)] = excess
        self._pooled_seen += 1

    def _bounds(self, t: int, point: float) -> np.ndarray:
        """Each partition's bound for the window of a decision at ``t`` (NaN: too few data)."""
        bounds = np.full(1 + len(self.phases), np.nan)
        if self._pooled_seen < math.ceil(1.0 / (1.0 - self.coverage)):
            return bounds
        pooled = self._pooled[: min(self._pooled_seen, len(self._pooled))]
        bounds[0] = point + conformal_quantile(pooled, self.coverage)
        size, widest = len(self._excess), self.jitters_s[-1]
        i = 1
        for behind in self._behind:
            index = t - behind
            kept = (index >= 0) & (index <= self._remembered)
            every = np.where(kept, self._excess[index % size], np.nan)
            for jitter in self.jitters_s:
                samples = every[:, widest - jitter : widest + jitter + 1]
                seen = np.isfinite(samples)
                if seen.any(axis=1).sum() >= self.min_cycles:
                    phase = point + conformal_quantile(samples[seen], self.coverage)
                    bounds[i] = max(bounds[0], phase)
                i += 1
        return bounds
