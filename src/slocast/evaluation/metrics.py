"""Metrics of upper bounds: coverage, width, pinball loss and the business cost of sizing.

Business score = ``under_cost_ratio`` x under-allocation % + over-allocation %, where
under-allocation % is the share of jobs whose bound is below the actual value and
over-allocation % is the total excess (bound - actual) over the total actual, on covered jobs.

>>> import numpy as np
>>> m = compute_metrics(np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 3.0]), coverage=0.9)
>>> round(m.coverage, 3), round(m.under_alloc_pct, 1), round(m.over_alloc_pct, 1)
(0.667, 33.3, 33.3)
>>> round(m.business_score, 1)
200.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from slocast.calibration.conformal import pinball_loss

__all__ = ["MethodMetrics", "compute_metrics", "per_group_coverage", "rolling_coverage"]


@dataclass(frozen=True)
class MethodMetrics:
    coverage: float
    mean_bound: float
    pinball_loss: float
    under_alloc_pct: float
    over_alloc_pct: float
    business_score: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def compute_metrics(
    y: np.ndarray, upper: np.ndarray, coverage: float, under_cost_ratio: float = 5.0
) -> MethodMetrics:
    """Metrics of ``upper`` against outcomes ``y``; a missing (NaN) bound counts as 0."""
    y = np.asarray(y, dtype=np.float64)
    upper = np.nan_to_num(np.asarray(upper, dtype=np.float64), nan=0.0)
    if len(y) == 0:
        raise ValueError("no rows to score")
    covered = upper >= y
    under_pct = 100.0 * (1.0 - covered.mean())
    actual_covered = y[covered].sum()
    over_pct = (
        100.0 * (upper[covered] - y[covered]).sum() / actual_covered if actual_covered > 0 else 0.0
    )
    pinball = np.mean(pinball_loss(y - upper, coverage))
    return MethodMetrics(
        coverage=float(covered.mean()),
        mean_bound=float(upper.mean()),
        pinball_loss=float(pinball),
        under_alloc_pct=float(under_pct),
        over_alloc_pct=float(over_pct),
        business_score=float(under_cost_ratio * under_pct + over_pct),
    )


def per_group_coverage(
    y: np.ndarray, upper: np.ndarray, groups: np.ndarray, top: int = 20
) -> dict[str, dict[str, float]]:
    """Coverage and row count of the ``top`` largest groups."""
    keys = np.asarray([str(g) for g in groups], dtype=object)
    names, counts = np.unique(keys, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    covered = np.nan_to_num(upper, nan=0.0) >= y
    return {
        str(names[i]): {"coverage": float(covered[keys == names[i]].mean()), "rows": int(counts[i])}
        for i in order
    }


def rolling_coverage(y: np.ndarray, upper: np.ndarray, window: int) -> np.ndarray:
    """Share of covered jobs over the last ``window`` jobs (shorter at the start)."""
    covered = (np.nan_to_num(upper, nan=0.0) >= y).astype(np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(covered)])
    idx = np.arange(1, len(covered) + 1)
    start = np.maximum(idx - window, 0)
    return np.asarray((cumulative[idx] - cumulative[start]) / (idx - start), dtype=np.float64)
