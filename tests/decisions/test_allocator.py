"""Retry policy accounting: failed attempts are paid for, and the request caps the retries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slocast.decisions import RetryPolicy, simulate_retries
from slocast.errors import ConfigError


def test_enough_memory_costs_allocation_times_runtime() -> None:
    out = simulate_retries(np.array([1.0, 2.0]), np.array([4.0, 2.0]), np.array([3.0, 5.0]),
                           RetryPolicy())  # fmt: skip
    assert out.allocation_time == 4 * 3 + 2 * 5
    assert out.ideal_allocation_time == 1 * 3 + 2 * 5
    assert out.attempts == 2 and out.retried_jobs == 0 and out.failed_jobs == 0


def test_failures_are_charged_and_retries_reach_the_request() -> None:
    policy = RetryPolicy(multiplier=1.5, max_attempts=3, failed_runtime_fraction=0.5)
    out = simulate_retries(
        np.array([10.0]), np.array([2.0]), np.array([1.0]), policy, request=np.array([12.0])
    )
    # 2 fails (half the runtime), then the request (12 > 3) fits.
    assert out.allocation_time == pytest.approx(2 * 0.5 + 12)
    assert out.attempts == 2 and out.retried_jobs == 1 and out.failed_jobs == 0


def test_jobs_still_failing_after_the_last_attempt_are_counted() -> None:
    policy = RetryPolicy(multiplier=2.0, max_attempts=2, retry_at_request=False)
    out = simulate_retries(np.array([100.0]), np.array([1.0]), np.array([1.0]), policy)
    assert out.failed_jobs == 1 and out.attempts == 2
    assert out.allocation_time == pytest.approx(1 + 2)


@given(
    st.lists(st.floats(0.1, 100), min_size=1, max_size=30),
    st.floats(0.2, 3.0),
)
def test_cost_is_never_below_exact_sizing(actual: list[float], scale: float) -> None:
    y = np.array(actual)
    out = simulate_retries(y, y * scale, np.ones_like(y), RetryPolicy(max_attempts=10))
    assert out.failed_jobs == 0
    assert out.allocation_time >= out.ideal_allocation_time * (1 - 1e-12)


@pytest.mark.parametrize(
    "options", [{"multiplier": 1.0}, {"max_attempts": 0}, {"failed_runtime_fraction": 2.0}]
)
def test_bad_policy_is_a_config_error(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_time_limits_charge_killed_attempts_their_limit_and_success_its_run() -> None:
    policy = RetryPolicy(multiplier=2.0, max_attempts=4, retry_at_request=False)
    out = simulate_retries(np.array([25.0, 5.0]), np.array([10.0, 10.0]), np.array([25.0, 5.0]),
                           policy, charge="used")  # fmt: skip
    # job 0: killed at 10 and 20, then runs 25; job 1 runs 5 under its 10 s limit.
    assert out.allocation_time == pytest.approx(10 + 20 + 25 + 5)
    assert out.ideal_allocation_time == pytest.approx(30) and out.retried_jobs == 1
