"""Autoscaler controllers: PID sign and anti-windup, cooldown, HPA rules, the rate forecaster."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slocast.decisions.autoscaler import (
    HPA,
    PID,
    Observation,
    PredictiveAutoscaler,
    RateForecaster,
    ReplicaCorrector,
    ScalingLimits,
)
from slocast.errors import ConfigError


def obs(rate: float, latency: float, replicas: int = 5, util: float = 0.5) -> Observation:
    return Observation(rate, latency, replicas, util)


def test_pid_adds_when_latency_is_above_target_and_removes_below() -> None:
    pid = PID(kp=1.0, ki=0.1, kd=0.0, integral_limit=5.0)
    assert pid.update(error=0.5, dt=1.0) > 0  # e = latency - target > 0: too slow
    pid = PID(kp=1.0, ki=0.1, kd=0.0, integral_limit=5.0)
    assert pid.update(error=-0.5, dt=1.0) < 0


def test_pid_integral_is_clamped_and_recovers_quickly() -> None:
    pid = PID(kp=0.0, ki=1.0, kd=0.0, integral_limit=3.0)
    for _ in range(100):  # a long overload
        pid.update(error=5.0, dt=1.0)
    assert pid.integral == 3.0
    # Once latency is back under target, the trim falls within a few periods, not 100.
    outputs = [pid.update(error=-1.0, dt=1.0) for _ in range(4)]
    assert outputs[-1] < 0


def test_corrector_scales_up_with_latency_and_respects_cooldown() -> None:
    limits = ScalingLimits(min_replicas=1, max_replicas=100, cooldown_s=60.0)
    corrector = ReplicaCorrector(service_rate=20.0, slo_s=0.25, limits=limits)
    calm = corrector.decide(0.0, obs(100.0, 0.1))
    assert calm >= corrector.base_replicas(100.0) * 0.7
    slow = corrector.decide(15.0, obs(100.0, 1.0))
    assert slow > calm  # latency far above target: more replicas at once
    # Traffic drops, but the last change was 15 s ago: no scale-down before the cooldown.
    assert corrector.decide(30.0, obs(10.0, 0.05)) == slow
    assert corrector.decide(90.0, obs(10.0, 0.05)) < slow


def test_setpoint_sits_above_the_latency_no_replica_count_can_lower() -> None:
    # 50 ms exponential service: its own p99 is 230 ms, just under a 250 ms SLO. A setpoint at
    # 0.8 x SLO (200 ms) would read as "too slow" forever and double the replicas for nothing.
    corrector = ReplicaCorrector(service_rate=20.0, slo_s=0.25)
    floor = -math.log(0.01) / 20.0
    assert floor < corrector.setpoint < 0.25
    base = corrector.base_replicas(100.0)
    decisions = [corrector.decide(15.0 * k, obs(100.0, floor * 1.02)) for k in range(200)]
    assert set(decisions) == {base}


def test_trim_only_adds_replicas_and_backs_off_once_latency_recovers() -> None:
    limits = ScalingLimits(cooldown_s=0.0)
    corrector = ReplicaCorrector(service_rate=10.0, slo_s=1.0, limits=limits)
    base = corrector.base_replicas(60.0)
    # Long calm: latency far under the setpoint never takes replicas below the Erlang-C base.
    assert {corrector.decide(15.0 * k, obs(60.0, 0.3, base)) for k in range(100)} == {base}
    slow = [corrector.decide(1500.0 + 15.0 * k, obs(60.0, 2.0, base)) for k in range(5)]
    assert slow[-1] > base
    calm = [corrector.decide(1600.0 + 15.0 * k, obs(60.0, 0.3, slow[-1])) for k in range(100)]
    assert calm[-1] == base


def test_backlog_adds_the_replicas_that_drain_it_as_it_will_be_when_they_serve() -> None:
    limits = ScalingLimits(cooldown_s=0.0)
    corrector = ReplicaCorrector(
        service_rate=10.0, slo_s=1.0, limits=limits, drain_s=10.0, startup_s=20.0
    )
    base = corrector.base_replicas(200.0)
    # 1000 queued and 10 replicas serving 100/s of 200/s: in the 20 s new replicas take to
    # serve, the queue grows by 2000; draining 3000 in 10 s takes 30 replicas more.
    first = corrector.decide(0.0, Observation(200.0, 0.3, 10, 1.0, queued=1000))
    assert first == math.ceil(base + 3000 / (10.0 * 10.0))


def test_backlog_counts_the_replicas_already_on_their_way() -> None:
    limits = ScalingLimits(cooldown_s=0.0)
    corrector = ReplicaCorrector(
        service_rate=10.0, slo_s=1.0, limits=limits, drain_s=10.0, startup_s=20.0
    )
    ordered = corrector.decide(0.0, Observation(200.0, 0.3, 10, 1.0, queued=1000))
    # 15 s later the queue has grown as foreseen, but the replicas ordered at 0 serve in 5 s
    # and clear it before anything ordered now could: nothing more to drain.
    later = corrector.decide(15.0, Observation(200.0, 0.3, ordered, 1.0, queued=2500))
    # (Sized from the queue's growth alone, 100/s over the 20 s start-up, it would order
    # (2500 + 2000) / 100 = 45 replicas more, for a backlog that will be gone.)
    assert later == corrector.base_replicas(200.0)


def test_limits_bound_every_decision() -> None:
    limits = ScalingLimits(min_replicas=3, max_replicas=8, cooldown_s=0.0)
    corrector = ReplicaCorrector(20.0, 0.25, limits=limits)
    assert corrector.decide(0.0, obs(1000.0, 5.0)) == 8
    assert corrector.decide(100.0, obs(0.0, 0.01)) == 3


def test_hpa_follows_utilisation_with_tolerance_and_stabilisation() -> None:
    hpa = HPA(target_utilisation=0.5, stabilisation_s=300.0)
    assert hpa.decide(0.0, obs(0, 0, replicas=10, util=0.52)) == 10  # within 10 %
    assert hpa.decide(15.0, obs(0, 0, replicas=10, util=1.0)) == 20
    # Utilisation collapses: the recommendation is 4, but 20 was recommended 15 s ago.
    assert hpa.decide(30.0, obs(0, 0, replicas=20, util=0.1)) == 20
    assert hpa.decide(400.0, obs(0, 0, replicas=20, util=0.1)) == 4


def test_rate_forecaster_bound_covers_what_it_promises() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(20_000)
    series = rng.poisson(50 + 30 * np.sin(t / 2000.0))  # diurnal-like swing with noise
    forecaster = RateForecaster(coverage=0.9, window=60, horizon=60)
    hits = []
    for now in range(600, len(series) - 60, 60):
        recent = series[:now].astype(float)
        upper, point = forecaster.upper(recent), forecaster.point(recent)
        realised = float(series[now : now + 60].mean())
        if len(forecaster.ratios) >= 20:
            hits.append(realised <= upper)
        forecaster.observe(point, realised)
    assert 0.85 <= np.mean(hits) <= 0.97


def test_rate_forecaster_carries_a_rise_forward_but_not_a_fall() -> None:
    forecaster = RateForecaster(window=60)
    rising = np.concatenate([np.full(60, 50.0), np.full(60, 75.0)])
    assert forecaster.point(rising) == pytest.approx(75.0 * 1.5)
    assert forecaster.point(rising[::-1]) == pytest.approx(50.0)


def test_predictive_autoscaler_scores_each_forecast_once_its_window_passed() -> None:
    scaler = PredictiveAutoscaler(service_rate=20.0, slo_s=0.25)
    series = np.full(600, 40.0)
    for now in range(120, 600, 15):
        replicas = scaler.decide_with_series(float(now), obs(40.0, 0.1), series[:now])
    assert len(scaler.forecaster.ratios) == len(range(120, 600 - 60, 15))
    assert all(math.isclose(r, 0.0, abs_tol=1e-9) for r in scaler.forecaster.ratios)
    assert replicas >= scaler.corrector.base_replicas(40.0) * 0.7


@pytest.mark.parametrize("bad", [(0, 5), (6, 5)])
def test_bad_limits_are_rejected(bad: tuple[int, int]) -> None:
    with pytest.raises(ConfigError):
        ScalingLimits(*bad)
