"""The phase forecaster: it reserves ahead of steps that recur at a phase, and only there."""

from __future__ import annotations

import numpy as np
import pytest

from slocast.decisions.autoscaler import Observation, PredictiveAutoscaler, RateForecaster
from slocast.decisions.recurring import PhaseForecaster
from slocast.errors import ConfigError

SPAN = 43_200  # 12 h of traffic: 24 half hours
ONSET = 120  # seconds into each half hour


def traffic(onsets: np.ndarray, seconds: int = SPAN, seed: int = 0) -> np.ndarray:
    """Poisson traffic at 50 req/s with 5-minute steps to 200 req/s from each onset."""
    rate = np.full(seconds, 50.0)
    for onset in onsets:
        rate[onset : onset + 300] = 200.0
    return np.random.default_rng(seed).poisson(rate).astype(np.float64)


def half_hourly(seed: int = 0) -> np.ndarray:
    """Steps at second 120 of a random 40 % of half hours, a few seconds late at times."""
    rng = np.random.default_rng(seed)
    cycles = np.flatnonzero(rng.random(SPAN // 1800) < 0.4)
    return traffic(cycles * 1800 + ONSET + rng.integers(0, 8, len(cycles)), seed=seed)


def replay(series: np.ndarray, phase: PhaseForecaster, step: int = 5) -> np.ndarray:
    """Decision times at which the forecaster reserved for a step (100 req/s above the
    point forecast or more; noise alone adds a few)."""
    point = RateForecaster()
    reserved = []
    for end in range(step, len(series) + 1, step):
        now = point.point(series[:end])
        reserve = phase.reservation(series[:end], now)
        if reserve is not None and reserve > now + 100.0:
            reserved.append(end)
    return np.array(reserved, dtype=np.int64)


def test_steps_at_a_half_hour_phase_are_reserved_for_ahead_and_only_there() -> None:
    phase = PhaseForecaster(lead_s=20, span_s=5)
    reserved = replay(half_hourly(), phase)
    assert phase.phase is not None and phase.period == 1800
    jitter = phase.phase[1]
    learned = reserved[reserved >= SPAN // 2]  # the second half of the span
    # A decision reserves for its window 20-25 s ahead and onsets wander by the jitter: from
    # about 35 s before the onset, until the point forecast has caught up with the step.
    assert (learned % 1800).min() >= ONSET - 20 - 5 - jitter
    assert (learned % 1800).max() <= ONSET + 60
    # Every half hour reserves, step or not: which ones have one is not foreseeable.
    assert len(np.unique(learned // 1800)) == SPAN // 2 // 1800


def test_steps_at_random_times_reserve_nothing() -> None:
    rng = np.random.default_rng(1)
    onsets = np.sort(rng.choice(SPAN - 400, size=20, replace=False))
    phase = PhaseForecaster(lead_s=20, span_s=5)
    reserved = replay(traffic(onsets, seed=1), phase)
    assert phase.period is None
    # A period may lead after the first few steps, by chance; it does not last.
    assert len(reserved) < 0.03 * SPAN / 5
    assert not (reserved > SPAN // 2).any()


def test_the_autoscaler_holds_replicas_for_a_step_and_frees_them_when_none_comes() -> None:
    series = half_hourly(seed=2)
    scaler = PredictiveAutoscaler(service_rate=10.0, slo_s=1.0, startup_s=20.0)
    scaler.prime(series[: SPAN - 1800])  # everything but the last half hour
    assert scaler.phase is not None and scaler.phase.period == 1800
    start = SPAN - 1800
    calm = Observation(arrival_rate=50.0, latency=0.3, replicas=8, utilisation=0.6)
    decided = {}
    for now in range(start + 5, start + 300, 5):
        window = series[:now].copy()
        window[start:] = np.random.default_rng(now).poisson(50.0, now - start)  # no step
        decided[now - start] = scaler.decide_with_series(float(now), calm, window)
    ahead = decided[ONSET - 20]
    assert ahead >= scaler.corrector.base_replicas(150.0)  # the step's rate, 20 s ahead
    assert decided[60] <= scaler.corrector.base_replicas(80.0)  # nothing reserved far ahead
    # No step came: the next decisions past the phase release the reservation at once,
    # where the cooldown would hold a scale-down for a minute.
    assert decided[ONSET + 40] <= scaler.corrector.base_replicas(80.0)


def test_recurring_can_be_switched_off() -> None:
    scaler = PredictiveAutoscaler(service_rate=10.0, slo_s=1.0, recurring=False)
    assert scaler.phase is None
    scaler.prime(half_hourly()[:7200])
    assert len(scaler.forecaster.ratios) > 0


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"periods": (30,)}, "periods"),  # not longer than lead + span + jitter
        ({"coverage": 1.0}, "coverage"),
        ({"span_s": 0}, "span_s"),
        ({"lead_s": -1}, "lead_s"),
        ({"jitters": ()}, "jitters"),
    ],
)
def test_bad_settings_are_rejected_naming_the_field(bad: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as error:
        PhaseForecaster(**bad)  # type: ignore[arg-type]
    assert error.value.field == field
