"""Replica autoscaling: the Erlang-C replica corrector with a PID trim, today's reactive
baselines (Kubernetes HPA, a KEDA-like RPS threshold) and the predictive autoscaler.

Every autoscaler is a small stateful controller with one method,
``decide(now, observation) -> replicas``, called at its own sync period by whoever runs it
(the simulator, or a control loop in production). ``observation`` is what a real controller can
see: the arrival rate and latency measured over the last period, and the replicas running.

The PID error is ``e = latency − target``: latency above target is a positive error and adds
replicas (the reference design had the sign inverted, removing replicas when latency was too
high). The integral is clamped (anti-windup) so a long overload does not keep the trim high
long after it ended.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from slocast.decisions.queueing import replicas_for_slo
from slocast.decisions.recurring import PhaseForecaster
from slocast.errors import ConfigError

__all__ = [
    "HPA",
    "PID",
    "KedaRps",
    "Observation",
    "PredictiveAutoscaler",
    "RateForecaster",
    "ReplicaCorrector",
    "ScalingLimits",
]


@dataclass(frozen=True)
class Observation:
    """What a controller measured over the last sync period."""

    arrival_rate: float  # requests per second
    latency: float  # the tracked latency percentile, seconds (NaN when nothing finished)
    replicas: int
    utilisation: float  # busy replica-seconds / replica-seconds
    queued: int = 0  # requests waiting for a replica at the end of the period


@dataclass(frozen=True)
class ScalingLimits:
    min_replicas: int = 1
    max_replicas: int = 1000
    cooldown_s: float = 30.0  # least time between two scale-downs (scale-ups are never held)

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ConfigError("need 1 <= min_replicas <= max_replicas", field="min_replicas")

    def clamp(self, replicas: float) -> int:
        return int(min(self.max_replicas, max(self.min_replicas, math.ceil(replicas))))


@dataclass
class PID:
    """PID on ``e = measured − target`` with a clamped integral (anti-windup).

    >>> pid = PID(kp=1.0, ki=0.5, kd=0.0, integral_limit=2.0)
    >>> pid.update(error=1.0, dt=1.0), pid.update(error=1.0, dt=1.0)   # latency too high: +
    (1.5, 2.0)
    >>> [round(pid.update(error=10.0, dt=1.0), 2) for _ in range(3)]   # integral stops at 2
    [11.0, 11.0, 11.0]
    """

    kp: float
    ki: float
    kd: float
    integral_limit: float
    integral: float = 0.0
    previous: float | None = None

    def update(self, error: float, dt: float) -> float:
        if not math.isfinite(error):
            return self.ki * self.integral  # nothing measured: hold the integral's trim
        self.integral = max(
            -self.integral_limit, min(self.integral_limit, self.integral + error * dt)
        )
        derivative = 0.0 if self.previous is None or dt <= 0 else (error - self.previous) / dt
        self.previous = error
        return self.kp * error + self.ki * self.integral + self.kd * derivative


class _Cooldown:
    """Scale up at once; scale down only after ``cooldown_s`` since the last change."""

    def __init__(self, limits: ScalingLimits) -> None:
        self.limits = limits
        self.last_change = -math.inf
        self.current: int | None = None

    def apply(self, now: float, desired: float) -> int:
        target = self.limits.clamp(desired)
        if (
            self.current is None
            or target > self.current
            or (target < self.current and now - self.last_change >= self.limits.cooldown_s)
        ):
            self.current, self.last_change = target, now
        return self.current


class ReplicaCorrector:
    """Erlang-C replicas for the SLO percentile from the measured rate, trimmed by a PID on the
    latency error ``e = (latency − setpoint) / setpoint``: replicas = base × (1 + u), plus the
    replicas that drain the measured backlog.

    - The setpoint sits below the SLO (``headroom``) but above the *floor*: the percentile of
      the service time alone, which no number of replicas lowers (−ln(1 − p)/μ for exponential
      service). A setpoint under the floor is an error no trim can close: the integral would sit
      at its limit and double the replicas for nothing.
    - The trim is relative to the Erlang-C base and bounded (``trim_range``): the queueing model
      does the sizing, the PID corrects its bias (service-time shape, burstiness). By default it
      only adds: with integer replicas the measured percentile sits below any setpoint most of
      the time, and a trim allowed to go negative winds down until the SLO breaks.
    - The error is clipped to [−1, ``max_error``]: a backlog makes the measured latency many
      times the SLO, and an unclipped error would order replicas that arrive (after their
      start-up time) only once the backlog is gone -- the overshoot then swings back. The
      backlog is sized directly instead: projected to when replicas ordered now serve
      (``startup_s``, :meth:`projected_backlog`), and ``backlog / (μ · drain_s)`` more
      replicas clear that in about ``drain_s``. Under FCFS every request behind a backlog waits
      for it, so the sooner it is gone the fewer requests miss. The projection counts the
      replicas already on their way: sized from the queue's growth over the last period
      alone, a backlog was ordered its drain again at every decision while the first order
      was still booting, and the surplus was paid for a whole scale-down cooldown.
    """

    name = "erlang-pid"

    def __init__(
        self,
        service_rate: float,
        slo_s: float,
        percentile: float = 0.99,
        limits: ScalingLimits = ScalingLimits(),
        pid: PID | None = None,
        max_error: float = 2.0,
        headroom: float = 0.8,
        trim_range: tuple[float, float] = (0.0, 1.0),
        drain_s: float = 10.0,
        startup_s: float = 20.0,
    ) -> None:
        floor = -math.log(1.0 - percentile) / service_rate
        self.max_error = max_error
        self.setpoint = floor + headroom * max(slo_s - floor, 0.0)
        self.trim_range = trim_range
        self.drain_s = drain_s
        self.startup_s = startup_s
        self.last_queued = 0
        # This controller's own orders, oldest first: (decided at, replicas). Replicas someone
        # else holds beyond them (a reservation for a foreseen step) serve a load that the
        # backlog's projection does not include, so they do not count as draining it.
        self.orders: deque[tuple[float, int]] = deque()
        self.service_rate = service_rate
        self.slo_s = slo_s
        self.percentile = percentile
        # Gains per unit of relative error; the integral is in error-seconds.
        self.pid = pid or PID(kp=0.4, ki=0.01, kd=0.0, integral_limit=20.0)
        self.gate = _Cooldown(limits)
        self.last_time: float | None = None

    def base_replicas(self, arrival_rate: float) -> int:
        return replicas_for_slo(arrival_rate, self.service_rate, self.slo_s, self.percentile)

    def projected_backlog(
        self, now: float, queued: int, arrival_rate: float, growth: float = 0.0
    ) -> float:
        """The queue when replicas ordered at ``now`` start serving: a fluid queue fed at
        ``arrival_rate`` and served, second by second until then, by the replicas up in that
        second -- those on order at a decision ``startup_s`` or more before it, never more than
        are on order now (a removal takes effect at once). Reads the orders :meth:`decide`
        records. ``growth``: the queue's measured growth per second. A queue that did not
        shrink says at least as much came in as the replicas up now serve, whatever the mean
        rate says (bursts within the period); that inflow feeds the projection then.

        >>> c = ReplicaCorrector(service_rate=10.0, slo_s=1.0, startup_s=20.0)
        >>> c.orders.extend([(-math.inf, 10), (0.0, 30)])  # 20 more ordered at t = 0
        >>> c.projected_backlog(0.0, 1000, 200.0)   # 10 serve 100/s of 200/s for 20 s
        3000.0
        >>> c.projected_backlog(15.0, 1000, 200.0)  # 5 s more, then 30 serve 300/s
        0.0
        >>> c.orders.clear(); c.orders.append((-math.inf, 5))  # 5 replicas serve 50/s
        >>> [c.projected_backlog(0.0, 100, 40.0, growth) for growth in (-10.0, 0.0, 20.0)]
        [0.0, 100.0, 500.0]
        """
        on_order = self.orders[-1][1]

        def up(second: int) -> int:  # replicas serving from now + second on
            at_most = next(
                r for at, r in reversed(self.orders) if at + self.startup_s <= now + second
            )
            return min(at_most, on_order)

        inflow = max(arrival_rate, self.service_rate * up(0) + growth)
        backlog = float(queued)
        for second in range(math.ceil(self.startup_s)):
            backlog = max(0.0, backlog + inflow - self.service_rate * up(second))
        return backlog

    def _record(self, now: float, replicas: int) -> None:
        """Remember an order, and forget those an order that has booted by now supersedes."""
        self.orders.append((now, replicas))
        while len(self.orders) > 1 and self.orders[1][0] + self.startup_s <= now:
            self.orders.popleft()

    def decide(self, now: float, obs: Observation) -> int:
        if not self.orders:  # the replicas running at the first decision are up
            self.orders.append((-math.inf, obs.replicas))
        dt = 0.0 if self.last_time is None else now - self.last_time
        self.last_time = now
        error = (obs.latency - self.setpoint) / self.setpoint
        trim = self.pid.update(min(self.max_error, max(-1.0, error)), dt)
        low, high = self.trim_range
        factor = 1.0 + min(high, max(low, trim))
        growth = (obs.queued - self.last_queued) / dt if dt > 0 else 0.0
        self.last_queued = obs.queued
        backlog = self.projected_backlog(now, obs.queued, obs.arrival_rate, growth)
        drain = backlog / (self.service_rate * self.drain_s)
        replicas = self.gate.apply(now, self.base_replicas(obs.arrival_rate) * factor + drain)
        self._record(now, replicas)
        return replicas


class HPA:
    """Kubernetes HPA: ``desired = ceil(current × utilisation / target)``, 10 % tolerance,
    scale-down to the highest recommendation of the stabilisation window (5 minutes)."""

    name = "hpa"

    def __init__(
        self,
        target_utilisation: float = 0.6,
        limits: ScalingLimits = ScalingLimits(cooldown_s=0.0),
        stabilisation_s: float = 300.0,
        tolerance: float = 0.1,
    ) -> None:
        self.target = target_utilisation
        self.limits = limits
        self.stabilisation_s = stabilisation_s
        self.tolerance = tolerance
        self.history: deque[tuple[float, int]] = deque()

    def decide(self, now: float, obs: Observation) -> int:
        ratio = obs.utilisation / self.target
        desired = obs.replicas if abs(ratio - 1.0) <= self.tolerance else obs.replicas * ratio
        recommendation = self.limits.clamp(desired)
        self.history.append((now, recommendation))
        while self.history and self.history[0][0] < now - self.stabilisation_s:
            self.history.popleft()
        if recommendation >= obs.replicas:
            return recommendation
        return min(obs.replicas, max(r for _, r in self.history))


class KedaRps:
    """KEDA-like: one replica per ``rps_per_replica`` of measured traffic, same stabilisation."""

    name = "keda-rps"

    def __init__(
        self,
        rps_per_replica: float,
        limits: ScalingLimits = ScalingLimits(cooldown_s=300.0),
    ) -> None:
        self.rps_per_replica = rps_per_replica
        self.gate = _Cooldown(limits)

    def decide(self, now: float, obs: Observation) -> int:
        return self.gate.apply(now, obs.arrival_rate / self.rps_per_replica)


@dataclass
class RateForecaster:
    """Calibrated upper bound on the next window's arrival rate, from the recent series.

    Point forecast: the mean rate of the last ``window`` seconds, scaled up by a recent rise
    (a fall is not extrapolated).
    Upper bound: point × exp(q), where q is the ``coverage`` quantile of the log ratios
    (next window's mean rate / point) seen so far over a sliding history -- split conformal
    on the forecaster's own past errors, so the bound keeps its coverage as traffic changes.
    The mean rate is what the Erlang C sizing consumes; bursts within the window are what the
    SLO percentile and the queue absorb.
    """

    coverage: float = 0.95
    window: int = 60
    horizon: int = 60
    history: int = 500
    ratios: deque[float] = field(default_factory=deque)

    def upper(self, recent: np.ndarray) -> float:
        point = self.point(recent)
        if len(self.ratios) < 20:
            return point * 2.0  # no track record yet: a wide margin
        q = float(np.quantile(np.asarray(self.ratios), self.coverage, method="higher"))
        return point * math.exp(max(q, 0.0))

    def point(self, recent: np.ndarray) -> float:
        last = recent[-self.window :]
        if len(last) == 0:
            return 0.0
        mean = float(last.mean())
        if len(recent) >= 2 * self.window:
            before = float(recent[-2 * self.window : -self.window].mean())
            if before > 0:
                # A rise is carried forward (bounded); a fall is not: the bound is the point
                # times a quantile of realised / point, and a fall extrapolated where the rate
                # levelled off put large ratios in that record, widening every later bound.
                mean *= min(2.0, max(1.0, mean / before))
        return max(mean, 1e-9)

    def observe(self, forecast_point: float, realised_rate: float) -> None:
        if forecast_point > 0 and realised_rate > 0:
            self.ratios.append(math.log(realised_rate / forecast_point))
            while len(self.ratios) > self.history:
                self.ratios.popleft()


class PredictiveAutoscaler:
    """Replicas for the SLO at the *forecast upper bound* of the next window's rate (Erlang C),
    plus the PID trim on the measured latency and the backlog drain. Needs the per-second rate
    series seen so far.

    It decides every ``sync_s`` (5 s, where the HPA's default is 15 s): the forecast covers the
    calm minutes, and a step the forecast could not see is met by the last period's measured
    rate -- the sooner it is measured, the fewer requests arrive before new replicas serve.
    Steps that recur at the same phase of a wall-clock period (cron jobs) are foreseen by the
    :class:`~slocast.decisions.recurring.PhaseForecaster` (``recurring``): it reserves the
    replicas for them a start-up time ahead. The reservation bypasses the scale-down cooldown,
    so a step that does not come releases them at the next decision. :meth:`prime` replays the
    rates on record before the controller starts (what a deployment reads from its metrics
    store), so the phases are known from the first minute.
    """

    name = "predictive"

    def __init__(
        self,
        service_rate: float,
        slo_s: float,
        percentile: float = 0.99,
        limits: ScalingLimits = ScalingLimits(cooldown_s=60.0),
        forecaster: RateForecaster | None = None,
        sync_s: float = 5.0,
        startup_s: float = 20.0,
        recurring: bool = True,
    ) -> None:
        self.sync_s = sync_s
        self.corrector = ReplicaCorrector(
            service_rate, slo_s, percentile, limits, startup_s=startup_s
        )
        self.forecaster = forecaster or RateForecaster()
        self.phase = (
            PhaseForecaster(
                lead_s=math.ceil(startup_s),
                span_s=max(1, math.ceil(sync_s)),
                coverage=self.forecaster.coverage,
            )
            if recurring
            else None
        )
        # Forecasts whose window has not fully happened yet: (series index, point).
        self.pending: deque[tuple[int, float]] = deque()
        # Decisions where the replicas held for a recurring step were more than the rest asked.
        self.reservations = 0

    def prime(self, series: np.ndarray) -> None:
        """Replay past per-second rates through the forecasters, one control period at a time,
        as if this controller had run then (nothing is scaled)."""
        step = max(1, round(self.sync_s))
        for end in range(step, len(series) + 1, step):
            self._forecast(series[:end])

    def _forecast(self, series: np.ndarray) -> float | None:
        """Feed the windows that have passed to the forecasters and record this decision's
        point forecast; returns the rate to reserve replicas for (if any)."""
        horizon = self.forecaster.horizon
        while self.pending and len(series) - self.pending[0][0] >= horizon:
            start, point = self.pending.popleft()
            self.forecaster.observe(point, float(series[start : start + horizon].mean()))
        point = self.forecaster.point(series)
        self.pending.append((len(series), point))
        return self.phase.reservation(series, point) if self.phase is not None else None

    def decide_with_series(self, now: float, obs: Observation, series: np.ndarray) -> int:
        """``series``: requests per second observed up to ``now`` (the last entry is newest)."""
        reserve = self._forecast(series)
        # A burst the forecast did not see is already in the last period's measurement.
        rate = max(self.forecaster.upper(series), obs.arrival_rate)
        replicas = self.corrector.decide(now, replace(obs, arrival_rate=rate))
        if reserve is None:
            return replicas
        held = self.corrector.gate.limits.clamp(self.corrector.base_replicas(reserve))
        self.reservations += int(held > replicas)
        return max(replicas, held)
