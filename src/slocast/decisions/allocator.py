"""Memory (or time-limit) allocation with a retry policy, and what it really costs.

A job given less than it needs fails (out of memory, over its time limit) and is retried with a
larger allocation, as Nextflow's ``errorStrategy 'retry'`` with ``memory { base * task.attempt }``
or a Slurm requeue does. What an operator pays is the allocation held over time by every
attempt, failed ones included -- not just the first allocation:

    cost = sum over attempts of allocation x runtime of that attempt

A failed attempt runs ``failed_runtime_fraction`` of the job's runtime before it is killed
(1.0 by default: peaks often come late, so charge the whole run).

For time limits (``charge="used"``: the allocation *is* a duration, e.g. an HPC job's wall-time
limit) a failed attempt runs until it is killed at its limit and the attempt that fits uses
only its actual run time, so the cost is job-seconds: the limits of the killed attempts plus
the actual run time.

>>> import numpy as np
>>> policy = RetryPolicy(multiplier=2.0, max_attempts=3)
>>> out = simulate_retries(np.array([3.0, 1.0]), np.array([2.0, 2.0]), np.array([10.0, 10.0]),
...                        policy)
>>> out.allocation_time, out.attempts, out.failed_jobs   # job 0: 2 fails, 4 fits
(80.0, 3, 0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from slocast.errors import ConfigError

__all__ = ["Charge", "RetryOutcome", "RetryPolicy", "simulate_retries"]

Charge = Literal["held", "used"]


@dataclass(frozen=True)
class RetryPolicy:
    """Multiply the allocation after each failure, up to ``max_attempts`` attempts.

    With ``retry_at_request`` a failed job is retried at what the user requested (when that is
    more than the multiplied allocation): the safe fallback when the request is a known limit.
    """

    multiplier: float = 2.0
    max_attempts: int = 4
    retry_at_request: bool = True
    failed_runtime_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.multiplier <= 1.0:
            raise ConfigError("retry multiplier must be above 1", field="multiplier")
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1", field="max_attempts")
        if not 0.0 <= self.failed_runtime_fraction <= 1.0:
            raise ConfigError(
                "failed_runtime_fraction must be in [0, 1]", field="failed_runtime_fraction"
            )


@dataclass(frozen=True)
class RetryOutcome:
    allocation_time: float  # sum of allocation x runtime over all attempts
    ideal_allocation_time: float  # what exact sizing (allocation = actual) would cost
    attempts: int  # attempts over all jobs
    retried_jobs: int  # jobs that needed more than one attempt
    failed_jobs: int  # jobs still failing after the last attempt

    @property
    def overhead_pct(self) -> float:
        """Cost above exact sizing, in percent of it."""
        return 100.0 * (self.allocation_time / max(self.ideal_allocation_time, 1e-300) - 1.0)

    def to_dict(self) -> dict[str, float]:
        return {**{k: float(v) for k, v in asdict(self).items()}, "overhead_pct": self.overhead_pct}


def simulate_retries(
    actual: np.ndarray,
    first: np.ndarray,
    runtime: np.ndarray,
    policy: RetryPolicy,
    request: np.ndarray | None = None,
    charge: Charge = "held",
) -> RetryOutcome:
    """Replay each job's attempts from its first allocation ``first`` until one fits.

    >>> policy = RetryPolicy(multiplier=2.0, max_attempts=3, retry_at_request=False)
    >>> simulate_retries(np.array([30.0]), np.array([10.0]), np.array([30.0]), policy,
    ...                  charge="used").allocation_time     # killed at 10 s and 20 s, runs 30 s
    60.0
    """
    actual = np.asarray(actual, dtype=np.float64)
    allocation = np.nan_to_num(np.asarray(first, dtype=np.float64), nan=0.0)
    runtime = np.maximum(np.asarray(runtime, dtype=np.float64), 0.0)
    if not (len(actual) == len(allocation) == len(runtime)):
        raise ConfigError("actual, allocation and runtime must have the same length", field="rows")
    cost = 0.0
    attempts = 0
    running = np.ones(len(actual), dtype=bool)
    retried = np.zeros(len(actual), dtype=bool)
    for attempt in range(policy.max_attempts):
        fits = running & (allocation >= actual)
        fails = running & ~fits
        if charge == "used":
            cost += float(actual[fits].sum()) + float(allocation[fails].sum())
        else:
            cost += float((allocation[fits] * runtime[fits]).sum())
            cost += (
                float((allocation[fails] * runtime[fails]).sum()) * policy.failed_runtime_fraction
            )
        attempts += int(running.sum())
        running = fails
        if not running.any() or attempt == policy.max_attempts - 1:
            break
        retried |= running
        grown = np.maximum(allocation * policy.multiplier, 1e-9)
        if policy.retry_at_request and request is not None:
            grown = np.where(np.isfinite(request), np.maximum(grown, request), grown)
        allocation = np.where(running, grown, allocation)
    ideal = actual if charge == "used" else actual * runtime
    return RetryOutcome(
        allocation_time=cost,
        ideal_allocation_time=float(ideal.sum()),
        attempts=attempts,
        retried_jobs=int(retried.sum()),
        failed_jobs=int(running.sum()),
    )
