from __future__ import annotations

import numpy as np
import pytest

from slocast.calibration import AdaptiveConformal, ConformalUpper


def _run(y: np.ndarray, aci: AdaptiveConformal | None, window: int = 500) -> np.ndarray:
    """Serve y[t] one step at a time with a constant model (0) and online conformal offsets."""
    cal = ConformalUpper(window=window).conformalize(y[:300])
    if aci is not None:
        aci.set_scale(y[:300])
    covered = []
    for value in y[300:]:
        level = aci.level if aci is not None else 0.9
        bound = cal.offset(level) + (aci.overflow if aci is not None else 0.0)
        covered.append(value <= bound)
        cal.update(np.array([value]))
        if aci is not None:
            aci.update([value > bound])
    return np.array(covered)


def test_aci_recovers_after_a_shift() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=3300)
    y[1300:] += 2.0  # level shift after 1,000 served steps
    covered = _run(y, AdaptiveConformal(0.9, step=0.02))
    after = covered[1500:]  # from 500 steps after the shift on
    assert after.mean() == pytest.approx(0.9, abs=0.03)


def test_aci_keeps_long_run_coverage_on_a_ramp_where_windows_alone_fail() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(2300)
    y = rng.normal(size=t.size) + np.where(t > 300, (t - 300) * 0.01, 0.0)  # a load ramp
    without = _run(y, None)
    with_aci = _run(y, AdaptiveConformal(0.9, step=0.02))
    assert without.mean() < 0.6
    assert with_aci.mean() == pytest.approx(0.9, abs=0.03)


def test_level_is_clamped_and_overflow_engages_only_beyond_it() -> None:
    aci = AdaptiveConformal(0.9, step=0.05, max_level=0.99)
    aci.update([True])  # alpha 0.1 -> 0.055: still inside the clamp
    assert aci.level == pytest.approx(0.945)
    assert aci.overflow == 0.0
    for _ in range(50):
        aci.update([True])
    assert aci.level == 0.99
    assert aci.overflow > 0
    for _ in range(1000):
        aci.update([False])
    assert aci.level == aci.min_level  # hits lower it, but never below the clamp
    aci.update([True])
    assert aci.level > aci.min_level  # and no wind-up: one miss moves it straight back up


def test_a_burst_of_misses_is_damped() -> None:
    single, burst = AdaptiveConformal(0.9, 0.005), AdaptiveConformal(0.9, 0.005)
    for _ in range(10):
        single.update([True])
    burst.update([True] * 100)  # 100 correlated misses at once weigh sqrt(100) = 10 misses
    assert single.level == pytest.approx(burst.level)
    assert burst.observed == 100 and burst.observed_coverage == 0.0


def test_state_round_trip() -> None:
    aci = AdaptiveConformal(0.9, 0.02)
    aci.update([True, False])
    copy = AdaptiveConformal(0.9, 0.02)
    copy.restore(aci.state())
    assert copy.level == aci.level and copy.observed == 2
