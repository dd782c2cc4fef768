"""Resource sizing workbench: Optuna search on business cost, strategies, retry costs."""

from slocast.tuning.cache import preprocess
from slocast.tuning.space import TASK_TYPES, Candidate
from slocast.tuning.strategies import STRATEGIES, Point, choose_strategies, pareto_front
from slocast.tuning.study import SearchConfig
from slocast.tuning.workbench import FamilyOutcome, TuneResult, tune

__all__ = [
    "STRATEGIES",
    "TASK_TYPES",
    "Candidate",
    "FamilyOutcome",
    "Point",
    "SearchConfig",
    "TuneResult",
    "choose_strategies",
    "pareto_front",
    "preprocess",
    "tune",
]
