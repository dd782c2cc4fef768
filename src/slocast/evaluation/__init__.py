"""Time-ordered backtests, metrics and reports."""

from slocast.evaluation.backtest import (
    EvaluationResult,
    MethodResult,
    TimeSplit,
    run_backtest,
    time_split,
)
from slocast.evaluation.methods import standard_methods
from slocast.evaluation.metrics import (
    MethodMetrics,
    compute_metrics,
    per_group_coverage,
    rolling_coverage,
)
from slocast.evaluation.report import write_report

__all__ = [
    "EvaluationResult",
    "MethodMetrics",
    "MethodResult",
    "TimeSplit",
    "compute_metrics",
    "per_group_coverage",
    "rolling_coverage",
    "run_backtest",
    "standard_methods",
    "time_split",
    "write_report",
]
