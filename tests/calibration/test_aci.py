from __future__ import annotations

import numpy as np
import pytest

from slocast.calibration import AdaptiveConformal, ConformalUpper
from slocast.schema import POOLED


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
        if aci is not None:
            # What each expert learns from: the miscoverage this outcome needed.
            excess = np.array([value - cal.offset(aci.max_level)])
            needed = aci.needed(cal.exceedance(np.array([value]), [POOLED]), excess)
            aci.update([value > bound], needed)
        cal.update(np.array([value]))
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
    with_aci = _run(y, AdaptiveConformal(0.9, step=0.02, overflow_gain=20.0))
    assert without.mean() < 0.6
    assert with_aci.mean() == pytest.approx(0.9, abs=0.03)


def test_level_is_clamped_and_overflow_engages_only_beyond_it() -> None:
    aci = AdaptiveConformal(0.9, step=0.05, max_level=0.99, overflow_gain=20.0)
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


@pytest.mark.parametrize("coverage", [0.999, 0.9999])
def test_a_promise_above_the_usual_ceiling_is_served_at_its_level_or_above(
    coverage: float,
) -> None:
    """The clamp keeps a quantile of the scores finite; it must not lower a promise of 0.999
    to 0.995 (nor fail to build, as it did)."""
    aci = AdaptiveConformal(coverage, step=0.05)
    assert aci.level == coverage
    for _ in range(50):
        aci.update([True])
    assert coverage < aci.level < 1.0
    usual = AdaptiveConformal(0.9, step=0.05)
    assert usual.max_level == 0.995
    assert usual.level_for(coverage) >= coverage  # asked per request of a 0.9 model


def test_a_burst_of_misses_is_damped() -> None:
    single, burst = AdaptiveConformal(0.9, 0.005), AdaptiveConformal(0.9, 0.005)
    for _ in range(10):
        single.update([True])
    burst.update([True] * 100)  # 100 correlated misses at once weigh sqrt(100) = 10 misses
    assert single.level == pytest.approx(burst.level)
    assert burst.observed == 100 and burst.observed_coverage == 0.0


def test_a_round_weighs_by_its_groups_when_they_are_given() -> None:
    one_user, many_users, per_job = (AdaptiveConformal(0.9, 0.005) for _ in range(3))
    one_user.update([True] * 100, groups=["u1"] * 100)  # one user's jobs: one piece of evidence
    many_users.update([True] * 100, groups=[f"u{i}" for i in range(100)])
    per_job.update([True] * 100)
    single = AdaptiveConformal(0.9, 0.005)
    single.update([True])
    assert one_user.level == pytest.approx(single.level)
    assert many_users.level == pytest.approx(per_job.level)
    assert many_users.level > one_user.level
    assert one_user.observed == 100 and one_user.misses == 100  # counts stay per job


def test_state_round_trip() -> None:
    aci = AdaptiveConformal(0.9, 0.02)
    aci.update([True, False])
    copy = AdaptiveConformal(0.9, 0.02)
    copy.restore(aci.state())
    assert copy.level == aci.level and copy.observed == 2


def test_experts_hold_coverage_on_steady_data() -> None:
    y = np.random.default_rng(2).normal(size=4300)
    covered = _run(y, AdaptiveConformal(0.9, step=0.02, experts=7))
    assert covered.mean() == pytest.approx(0.9, abs=0.02)


def test_experts_learn_the_step_a_shift_needs() -> None:
    """A slow single step lags a level shift; experts around it hand the level to their fast
    members and recover sooner, then hold the promise."""
    rng = np.random.default_rng(3)
    y = rng.normal(size=3300)
    y[1300:] += 3.0
    slow = _run(y, AdaptiveConformal(0.9, step=0.002))
    experts = AdaptiveConformal(0.9, step=0.002, experts=7)
    learned = _run(y, experts)
    recovery = slice(1000, 1300)  # the 300 steps after the shift
    assert learned[recovery].mean() > slow[recovery].mean() + 0.05  # measured: 0.87 vs 0.77
    assert learned[1300:].mean() == pytest.approx(0.9, abs=0.04)


def test_expert_state_round_trips_and_old_states_still_load() -> None:
    aci = AdaptiveConformal(0.9, 0.02, experts=5)
    aci.update([True, False, True], [0.0, 0.5, 0.01])
    copy = AdaptiveConformal(0.9, 0.02, experts=5)
    copy.restore(aci.state())
    assert copy.level == aci.level and copy.state() == aci.state()
    legacy = {k: v for k, v in aci.state().items() if k not in ("alphas", "weights")}
    older = AdaptiveConformal(0.9, 0.02, experts=5)
    older.restore(legacy)
    assert older.level == pytest.approx(aci.level)
