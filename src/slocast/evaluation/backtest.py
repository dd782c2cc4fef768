"""Time-ordered backtest: train on the past, calibrate on the next slice, test on the future.

Online methods see an outcome only once it would really be known (``known_at``: the job's end),
never at submit time. Rows are replayed in time order: before each batch of jobs is predicted,
every job that has finished by then is passed to ``observe``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from slocast.datasets import Dataset
from slocast.errors import ConfigError, EmptyDataError
from slocast.evaluation.metrics import MethodMetrics, compute_metrics, per_group_coverage
from slocast.features import group_keys
from slocast.models.base import Bounds, Forecaster
from slocast.models.quantile import MIN_TRAIN_ROWS
from slocast.schema import DomainSpec

__all__ = [
    "EvaluationResult",
    "MethodResult",
    "TimeSplit",
    "replay",
    "request_until_known",
    "run_backtest",
    "time_split",
]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TimeSplit:
    """``train`` outcomes are all known before calibration starts; ``pending`` are calibration
    rows that finish only during the test period (known later, to online methods only)."""

    train: pd.DataFrame
    calibration: pd.DataFrame
    pending: pd.DataFrame
    test: pd.DataFrame

    def require_outcomes(self, min_train: int = MIN_TRAIN_ROWS) -> TimeSplit:
        """This split, or a clear error when too few outcomes are known in time to train on or
        to calibrate with (a short trace whose jobs all overlap)."""
        if len(self.train) < min_train:
            raise EmptyDataError(
                f"only {len(self.train)} jobs finished before the calibration period starts "
                f"(a model needs {min_train}): the trace is too short, or its jobs overlap too "
                "much, for a time-ordered split; use a longer trace",
                field="dataset",
            )
        if self.calibration.empty:
            raise EmptyDataError(
                f"none of the {len(self.pending)} calibration jobs finished before the test "
                "period starts, so nothing can be calibrated honestly; use a longer trace",
                field="dataset",
            )
        return self


def time_split(
    frame: pd.DataFrame, spec: DomainSpec, test_fraction: float, calibration_fraction: float
) -> TimeSplit:
    if not 0 < test_fraction < 1 or not 0 < calibration_fraction < 1:
        raise ConfigError("test and calibration fractions must be in (0, 1)", field="test_fraction")
    n = len(frame)
    n_test = max(1, round(n * test_fraction))
    n_cal = max(1, round((n - n_test) * calibration_fraction))
    n_train = n - n_test - n_cal
    if n_train < MIN_TRAIN_ROWS:
        raise EmptyDataError(f"{n} rows are too few to split into train, calibration and test")
    train, calibration, test = (
        frame.iloc[:n_train],
        frame.iloc[n_train:-n_test],
        frame.iloc[-n_test:],
    )
    cal_start, test_start = calibration[spec.time].iloc[0], test[spec.time].iloc[0]
    # A job still running when the period ends has no outcome yet: it cannot be learned from.
    train = train[train[spec.known_at] < cal_start]
    known = calibration[spec.known_at] < test_start
    return TimeSplit(train, calibration[known], calibration[~known], test)


def replay(
    forecaster: Forecaster,
    pending: pd.DataFrame,
    test: pd.DataFrame,
    spec: DomainSpec,
    min_release: int = 1,
) -> Bounds:
    """Serve ``test`` in time order, feeding finished jobs (pending or test) to ``observe``.

    Outcomes are handed over in batches of at least ``min_release`` jobs (as a deployment's
    trainer would), never earlier than they are known. Forecasters that declare
    ``online = False`` learn nothing after fitting: one batch serves them all.
    """
    if not getattr(forecaster, "online", True):
        return forecaster.predict(test)
    test_times = test[spec.time].to_numpy(np.float64)
    # The jobs keep their own index: the forecaster matches outcomes to what it served by it.
    events = pd.concat([pending, test])
    if not events.index.is_unique:
        raise ValueError("replay needs jobs with a unique index (pending and test overlap)")
    served_upper = np.full(len(events), np.nan)
    served_point = np.full(len(events), np.nan)
    known = _known_times(events, spec)
    order = np.argsort(known, kind="stable")
    known_sorted = known[order]
    offset = len(pending)
    released = 0
    start = 0
    while start < len(test):
        # Everything finished strictly before this job's submit time is known now.
        until = int(np.searchsorted(known_sorted, test_times[start], side="left"))
        if until - released >= min_release:
            idx = order[released:until]
            forecaster.observe(events.iloc[idx], Bounds(served_point[idx], served_upper[idx]))
            released = until
        # Serve every job submitted before the next outcome arrives in one batch.
        ready = released + min_release - 1
        next_known = known_sorted[ready] if ready < len(known_sorted) else np.inf
        stop = max(start + 1, int(np.searchsorted(test_times, next_known, side="right")))
        bounds = forecaster.predict(test.iloc[start:stop])
        served_point[offset + start : offset + stop] = bounds.point
        served_upper[offset + start : offset + stop] = bounds.upper
        start = stop
    return Bounds(served_point[offset:], served_upper[offset:])


@dataclass(frozen=True)
class MethodResult:
    name: str
    bounds: Bounds
    metrics: MethodMetrics
    per_group: dict[str, dict[str, float]]
    seconds: float
    # How far past the user's request its bounds may reach (None: not capped at the request).
    request_grace: float | None = None


@dataclass(frozen=True)
class EvaluationResult:
    dataset: str
    spec: DomainSpec
    rows: int
    split: TimeSplit
    target_coverage: float
    methods: dict[str, MethodResult] = field(default_factory=dict)
    # Not methods: yardsticks scored on the same test slice (see request_until_known).
    references: dict[str, MethodMetrics] = field(default_factory=dict)

    @property
    def y_test(self) -> np.ndarray:
        return self.split.test[self.spec.target].to_numpy(np.float64)

    def to_json(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "domain": self.spec.name,
            "rows": self.rows,
            "train_rows": len(self.split.train),
            "calibration_rows": len(self.split.calibration) + len(self.split.pending),
            "test_rows": len(self.split.test),
            "target_coverage": self.target_coverage,
            "methods": {name: m.metrics.to_dict() for name, m in self.methods.items()},
            "per_group_coverage": {name: m.per_group for name, m in self.methods.items()},
            "references": {name: m.to_dict() for name, m in self.references.items()},
            "seconds": {name: round(m.seconds, 3) for name, m in self.methods.items()},
            "request_grace": {
                name: m.request_grace
                for name, m in self.methods.items()
                if m.request_grace is not None
            },
        }


def run_backtest(
    dataset: Dataset,
    methods: Sequence[Forecaster],
    coverage: float,
    test_fraction: float,
    calibration_fraction: float,
    under_cost_ratio: float = 5.0,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Fit every method on the same past, replay the same future, score them side by side.

    Methods with a ``conformalize`` step get the calibration slice after fitting.
    """
    spec = dataset.spec
    split = time_split(dataset.frame, spec, test_fraction, calibration_fraction)
    split.require_outcomes()
    result = EvaluationResult(dataset.source, spec, dataset.rows, split, coverage)
    y = split.test[spec.target].to_numpy(np.float64)
    floor = request_until_known(split, spec)
    if floor is not None:
        result.references[REQUEST_UNTIL_KNOWN] = compute_metrics(
            y, floor, coverage, under_cost_ratio
        )
    groups = group_keys(split.test, spec)
    for method in methods:
        if progress:
            progress(method.name)
        started = time.perf_counter()
        method.fit(split.train)
        conformalize = getattr(method, "conformalize", None)
        if callable(conformalize):
            conformalize(split.calibration)
        else:
            method.observe(split.calibration, _unserved(len(split.calibration)))
        # ~500 calibration updates over the test period, or one per job on short traces.
        bounds = replay(method, split.pending, split.test, spec, max(1, len(split.test) // 500))
        result.methods[method.name] = MethodResult(
            method.name,
            bounds,
            compute_metrics(y, bounds.upper, coverage, under_cost_ratio),
            per_group_coverage(y, bounds.upper, groups),
            time.perf_counter() - started,
            getattr(method, "cap_grace", None),
        )
    return result


REQUEST_UNTIL_KNOWN = "request_until_known"


def request_until_known(split: TimeSplit, spec: DomainSpec) -> np.ndarray | None:
    """An oracle's allocations: the job's own outcome once its group has a finished job on
    record at its submit time, its request before that (None without requests or groups).

    No method that serves the request to a group nothing is known of can score better on the
    test slice; where most of the request's waste sits in the first jobs of new groups (a
    workflow submits a new process's samples together), this floor shows how much of it any
    such method can remove.
    """
    if spec.user_request is None or spec.group is None:
        return None
    events = pd.concat([split.train, split.calibration, split.pending, split.test])
    first_known = pd.Series(_known_times(events, spec)).groupby(group_keys(events, spec)).min()
    test = split.test
    first = first_known.reindex(group_keys(test, spec)).to_numpy(np.float64)
    on_record = first < test[spec.time].to_numpy(np.float64)
    return np.where(
        on_record,
        test[spec.target].to_numpy(np.float64),
        test[spec.user_request].to_numpy(np.float64),
    )


def _known_times(jobs: pd.DataFrame, spec: DomainSpec) -> np.ndarray:
    """When each job's outcome is known: never before it was submitted (clock skew in traces)."""
    known: np.ndarray = np.maximum(
        jobs[spec.known_at].to_numpy(np.float64), jobs[spec.time].to_numpy(np.float64)
    )
    return known


def _unserved(n: int) -> Bounds:
    return Bounds(np.full(n, np.nan), np.full(n, np.nan))
