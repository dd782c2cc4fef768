"""Time-series cross-validation of a sizing candidate: expanding windows, never shuffled.

The development rows (everything before the final test slice) are cut into ``folds + 1`` equal
blocks by time. Fold ``k`` trains and calibrates on blocks ``0..k`` and is scored on block
``k + 1`` -- replayed in time order exactly as the final test is, so online calibration gets the
outcomes only when they would have been known.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from slocast.errors import ConfigError, EmptyDataError
from slocast.evaluation.backtest import TimeSplit, replay, time_split
from slocast.evaluation.metrics import MethodMetrics, compute_metrics
from slocast.schema import DomainSpec
from slocast.tuning.space import Candidate

__all__ = ["FoldScore", "cv_folds", "evaluate_cv", "scorable_folds", "score_fold"]


@dataclass(frozen=True)
class FoldScore:
    metrics: MethodMetrics
    fit_seconds: float
    predict_seconds: float
    rows: int


def cv_folds(frame: pd.DataFrame, folds: int) -> Iterator[pd.DataFrame]:
    """Expanding prefixes of ``frame``; the last block of each is the fold's validation slice."""
    if folds < 1:
        raise ConfigError("folds must be at least 1", field="folds")
    block = len(frame) // (folds + 1)
    if block < 20:
        raise EmptyDataError(f"{len(frame)} rows are too few for {folds} time-ordered folds")
    for k in range(1, folds + 1):
        yield frame.iloc[: block * (k + 1)]


def scorable_folds(
    frame: pd.DataFrame, spec: DomainSpec, folds: int, calibration_fraction: float
) -> list[TimeSplit]:
    """Each fold split into train / calibration / validation, keeping only the folds whose
    calibration slice has outcomes known before validation starts.

    A workflow submits tasks in bursts: when every task of a fold's calibration slice is still
    running as its validation slice begins, that fold cannot be calibrated honestly and is left
    out (using those outcomes early would leak the future).
    """
    validation_rows = len(frame) // (folds + 1)
    splits = (
        time_split(prefix, spec, validation_rows / len(prefix), calibration_fraction)
        for prefix in cv_folds(frame, folds)
    )
    usable = [split for split in splits if len(split.calibration) > 0]
    if not usable:
        raise EmptyDataError(
            f"none of the {folds} folds has calibration outcomes known before its validation "
            "slice (jobs still running): use fewer folds or more history",
            field="folds",
        )
    return usable


def score_fold(
    candidate: Candidate, split: TimeSplit, spec: DomainSpec, under_cost_ratio: float
) -> FoldScore:
    """Fit on the fold's past, calibrate, replay its validation slice in time order."""
    forecaster = candidate.forecaster(spec)
    started = time.perf_counter()
    forecaster.fit(split.train)
    forecaster.conformalize(split.calibration)
    fitted = time.perf_counter()
    bounds = replay(forecaster, split.pending, split.test, spec, max(1, len(split.test) // 200))
    y = split.test[spec.target].to_numpy(np.float64)
    return FoldScore(
        compute_metrics(y, bounds.upper, candidate.coverage, under_cost_ratio),
        fitted - started,
        time.perf_counter() - fitted,
        len(split.test),
    )


def evaluate_cv(
    candidate: Candidate,
    dev: pd.DataFrame,
    spec: DomainSpec,
    folds: int,
    calibration_fraction: float,
    under_cost_ratio: float,
) -> list[FoldScore]:
    """Score one candidate on every fold (no search: the defaults' cross-validated numbers)."""
    return [
        score_fold(candidate, split, spec, under_cost_ratio)
        for split in scorable_folds(dev, spec, folds, calibration_fraction)
    ]
