"""The sizing workbench: search each family, compare them on one test slice, pick strategies.

1. The latest ``test_fraction`` of rows by time is held out; everything before it is the
   development set the search cross-validates on (the test slice is never seen by a trial).
2. Each family gets an Optuna study (or, without search, its defaults); its best trial by
   cross-validated business score (meeting the under-allocation constraint) is its model,
   unless the family's defaults calibrated as plain split CQR score clearly lower on the same
   folds. The study searches slocast's calibration (per-group windows, recent scores weighed
   more, ACI, the history expert), which pays for per-group coverage and drift; on a log where
   neither pays, plain CQR can cost less than anything 30 trials find. Offered to the search
   as a choice instead, it costs the trials that draw it: on chipseq, two seeds of 30 trials
   with that choice never improved on the defaults' cross-validated 122.1, where the same
   seeds without it found 112.3 and 117.5.
3. The best model of every family, the named strategies and today's baselines (the user's
   request, a VPA-like p90 + 15 % margin) are fitted on the same past and replayed on the same
   test slice; the winner is chosen by cross-validation, not by the test numbers: the first
   family given, unless a later one scores clearly lower on the same folds
   (:mod:`slocast.tuning.selection`).
4. Each strategy's and baseline's allocations go through the retry simulation: the memory-time an
   operator pays, failed attempts included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import optuna

from slocast.datasets import Dataset
from slocast.decisions.allocator import Charge, RetryOutcome, RetryPolicy, simulate_retries
from slocast.evaluation.backtest import EvaluationResult, run_backtest, time_split
from slocast.evaluation.metrics import MethodMetrics
from slocast.features import group_keys
from slocast.models.base import Forecaster
from slocast.models.baselines import UserRequestBaseline, VPABaseline
from slocast.tuning.cv import FoldScore, evaluate_cv
from slocast.tuning.selection import Contender, chosen_index
from slocast.tuning.space import Candidate, default_candidate, plain_cqr, starting_points
from slocast.tuning.strategies import Point, choose_strategies, pareto_front
from slocast.tuning.study import (
    FOLD_SCORES,
    SearchConfig,
    best_trial,
    completed,
    cv_summary,
    run_study,
    trial_candidate,
)

__all__ = ["FamilyOutcome", "TuneResult", "choose_outcome", "metrics_summary", "tune"]

Progress = Callable[[str], None]


@dataclass
class FamilyOutcome:
    family: str
    candidate: Candidate
    cv: dict[str, float]
    trials: int = 0
    pruned: int = 0
    first_trial_score: float | None = None
    test: MethodMetrics | None = None
    # The business score of each cross-validation fold, in time order.
    fold_scores: tuple[float, ...] = ()
    # Where ``candidate`` comes from: the study's best trial ("search"), the family's defaults
    # without a search ("defaults"), or those calibrated as plain split CQR ("plain-cqr").
    source: str = "search"

    def contender(self) -> Contender:
        return Contender(self.family, self.cv["business_score"], self.fold_scores)

    def within(self, max_under_pct: float | None) -> bool:
        """Meets the under-allocation constraint in cross-validation (None: no constraint)."""
        return max_under_pct is None or self.cv["under_alloc_pct"] <= max_under_pct


def choose_outcome(outcomes: Sequence[FamilyOutcome], max_under_pct: float | None) -> FamilyOutcome:
    """The one to deploy, as a study ranks its trials (:func:`best_trial`): among those meeting
    the constraint, the first given unless a later one scores clearly lower on the same folds
    (:data:`~slocast.tuning.selection.RULE`); where none meets it, the least under-allocated."""
    feasible = [o for o in outcomes if o.within(max_under_pct)]
    if not feasible:
        return min(outcomes, key=lambda o: o.cv["under_alloc_pct"])
    return feasible[chosen_index([o.contender() for o in feasible])]


@dataclass
class TuneResult:
    dataset: str
    domain: str
    rows: int
    test_rows: int
    under_cost_ratio: float
    families: dict[str, FamilyOutcome]
    best: str
    points: list[Point]
    strategies: dict[str, tuple[Point, Candidate]]
    backtest: EvaluationResult
    retry: dict[str, RetryOutcome] = field(default_factory=dict)
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def baselines(self) -> dict[str, MethodMetrics]:
        return {
            name: self.backtest.methods[name].metrics
            for name in ("user_request", "vpa_p90")
            if name in self.backtest.methods
        }

    def per_group_waste(self, top: int = 10) -> list[dict[str, object]]:
        """Where the best model's waste and failures are, by group, largest waste first."""
        spec = self.backtest.spec
        test = self.backtest.split.test
        y = test[spec.target].to_numpy(np.float64)
        upper = self.backtest.methods[self.best].bounds.upper
        groups = group_keys(test, spec)
        excess = np.where(upper >= y, upper - y, 0.0)
        total = max(float(excess.sum()), 1e-300)
        rows = []
        for group in np.unique(groups):
            mask = groups == group
            rows.append(
                {
                    "group": str(group),
                    "jobs": int(mask.sum()),
                    "under_alloc_pct": float(100.0 * (upper[mask] < y[mask]).mean()),
                    "waste": float(excess[mask].sum()),
                    "waste_share_pct": float(100.0 * excess[mask].sum() / total),
                }
            )
        rows.sort(key=lambda r: -float(r["waste"]))  # type: ignore[arg-type]
        return rows[:top]

    def to_json(self) -> dict[str, object]:
        best = self.families[self.best]
        assert best.test is not None
        request = self.baselines.get("user_request")
        return {
            "dataset": self.dataset,
            "domain": self.domain,
            "rows": self.rows,
            "test_rows": self.test_rows,
            "under_cost_ratio": self.under_cost_ratio,
            "best": {
                "family": self.best,
                "params": best.candidate.describe(),
                **metrics_summary(best.test),
                "source": best.source,
                "score_vs_request": (
                    best.test.business_score / request.business_score
                    if request and request.business_score > 0
                    else None
                ),
                "cv": best.cv,
            },
            "baselines": {name: metrics_summary(m) for name, m in self.baselines.items()},
            "references": {
                name: metrics_summary(m) for name, m in self.backtest.references.items()
            },
            "families": {
                name: {
                    "params": f.candidate.describe(),
                    "cv": f.cv,
                    "cv_fold_scores": list(f.fold_scores),
                    "test": None if f.test is None else metrics_summary(f.test),
                    "trials": f.trials,
                    "pruned": f.pruned,
                    "first_trial_score": f.first_trial_score,
                    "source": f.source,
                }
                for name, f in self.families.items()
            },
            "strategies": {
                name: {
                    "point": point.key,
                    "cv_under_alloc_pct": point.under_alloc_pct,
                    "cv_over_alloc_pct": point.over_alloc_pct,
                    "test": metrics_summary(self.backtest.methods[name].metrics),
                    "params": candidate.describe(),
                }
                for name, (point, candidate) in self.strategies.items()
            },
            "retry": {
                "policy": self.retry_policy.__dict__,
                "results": {name: r.to_dict() for name, r in self.retry.items()},
            },
            "pareto_front": [p.__dict__ for p in pareto_front(self.points)],
            "per_group_waste": self.per_group_waste(),
        }


def metrics_summary(m: MethodMetrics) -> dict[str, float]:
    """The four numbers sizing compares: score, under %, over %, coverage."""
    return {
        "business_score": m.business_score,
        "under_alloc_pct": m.under_alloc_pct,
        "over_alloc_pct": m.over_alloc_pct,
        "coverage": m.coverage,
    }


def _cross_validated(
    family: str,
    candidate: Candidate,
    scores: list[FoldScore],
    under_cost_ratio: float,
    source: str,
) -> FamilyOutcome:
    """A family's outcome from one candidate's scores on the folds (no study)."""
    return FamilyOutcome(
        family,
        candidate,
        cv_summary(scores, under_cost_ratio),
        fold_scores=tuple(s.metrics.business_score for s in scores),
        source=source,
    )


def _add_point(
    points: list[Point], candidates: dict[str, Candidate], key: str, outcome: FamilyOutcome
) -> None:
    points.append(Point(key, outcome.cv["under_alloc_pct"], outcome.cv["over_alloc_pct"]))
    candidates[key] = outcome.candidate


def _search_family(
    data: Dataset,
    dev_rows: int,
    family: str,
    search: SearchConfig,
    points: list[Point],
    candidates: dict[str, Candidate],
    step: Progress,
    coverage: float,
) -> FamilyOutcome:
    spec = data.spec
    dev = data.frame.iloc[:dev_rows]

    def on_trial(trial: optuna.trial.FrozenTrial) -> None:
        value = "pruned" if trial.value is None else f"{trial.value:.1f}"
        step(f"{family}: trial {trial.number} -> {value}")

    start = starting_points(family, coverage, search.bins)
    study = run_study(dev, spec, family, search, on_trial, start)
    for trial in completed(study):
        key = f"{family}#{trial.number}"
        points.append(
            Point(key, trial.user_attrs["under_alloc_pct"], trial.user_attrs["over_alloc_pct"])
        )
        candidates[key] = trial_candidate(trial, family, spec, search)
    best = best_trial(study, search.max_under_pct)
    first = completed(study)[0]
    searched = FamilyOutcome(
        family,
        trial_candidate(best, family, spec, search),
        {k: float(v) for k, v in best.user_attrs.items() if k != FOLD_SCORES},
        trials=len(study.trials),
        pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        first_trial_score=first.value,
        # Studies saved before fold scores were kept have none: their means are compared.
        fold_scores=tuple(best.user_attrs.get(FOLD_SCORES, ())),
    )
    step(f"{family}: cross-validating plain CQR")
    candidate = plain_cqr(
        default_candidate(family, spec, coverage, search.threads, search.under_cost_ratio)
    )
    scores = evaluate_cv(
        candidate, dev, spec, search.folds, search.calibration_fraction, search.under_cost_ratio
    )
    plain = _cross_validated(family, candidate, scores, search.under_cost_ratio, "plain-cqr")
    _add_point(points, candidates, f"{family}#plain-cqr", plain)
    # The study's best defends: plain CQR replaces it where it scores clearly lower, or where
    # only it meets the constraint (or, neither meeting it, it under-allocates less).
    if choose_outcome([searched, plain], search.max_under_pct) is plain:
        plain.trials, plain.pruned = searched.trials, searched.pruned
        plain.first_trial_score = searched.first_trial_score
        return plain
    return searched


def tune(
    data: Dataset,
    families: Sequence[str],
    search: SearchConfig | None,
    coverage: float = 0.9,
    test_fraction: float = 0.2,
    calibration_fraction: float = 0.2,
    under_cost_ratio: float = 5.0,
    folds: int = 3,
    retry_policy: RetryPolicy = RetryPolicy(),
    progress: Progress | None = None,
) -> TuneResult:
    """Search (or evaluate the defaults of) ``families`` and compare them on the test slice."""
    step = progress or (lambda _message: None)
    spec = data.spec
    split = time_split(data.frame, spec, test_fraction, calibration_fraction).require_outcomes()
    dev_rows = len(data.frame) - len(split.test)
    points: list[Point] = []
    candidates: dict[str, Candidate] = {}
    outcomes: dict[str, FamilyOutcome] = {}
    for family in families:
        if search is not None:
            outcomes[family] = _search_family(
                data, dev_rows, family, search, points, candidates, step, coverage
            )
            continue
        step(f"{family}: cross-validating the defaults")
        candidate = default_candidate(family, spec, coverage, under_cost_ratio=under_cost_ratio)
        scores = evaluate_cv(
            candidate, data.frame.iloc[:dev_rows], spec, folds, calibration_fraction,
            under_cost_ratio,
        )  # fmt: skip
        outcomes[family] = _cross_validated(family, candidate, scores, under_cost_ratio, "defaults")
        _add_point(points, candidates, f"{family}#default", outcomes[family])
    best = choose_outcome(list(outcomes.values()), search.max_under_pct if search else None).family
    strategies = {
        name: (point, candidates[point.key])
        for name, point in choose_strategies(points, under_cost_ratio).items()
    }
    methods: list[Forecaster] = []
    for name, candidate in [
        *((f, o.candidate) for f, o in outcomes.items()),
        *((s, c) for s, (_, c) in strategies.items()),
    ]:
        forecaster = candidate.forecaster(spec)
        forecaster.name = name
        methods.append(forecaster)
    if spec.user_request is not None:
        methods.append(UserRequestBaseline(spec))
    methods.append(VPABaseline(spec))
    backtest = run_backtest(
        data,
        methods,
        coverage,
        test_fraction,
        calibration_fraction,
        under_cost_ratio,
        progress=lambda name: step(f"test slice: fitting and replaying {name}"),
    )
    for family, outcome in outcomes.items():
        outcome.test = backtest.methods[family].metrics
    result = TuneResult(
        data.source,
        spec.name,
        data.rows,
        len(split.test),
        under_cost_ratio,
        outcomes,
        best,
        points,
        strategies,
        backtest,
        retry_policy=retry_policy,
    )
    result.retry = _retries(result, retry_policy)
    return result


def _retries(result: TuneResult, policy: RetryPolicy) -> dict[str, RetryOutcome]:
    """Cost incl. failed attempts for each strategy and baseline on the test slice: memory x
    runtime for sizes, job-seconds (killed attempts at their limit) for time limits."""
    spec = result.backtest.spec
    test = result.backtest.split.test
    actual = test[spec.target].to_numpy(np.float64)
    # A target in seconds is the job's own duration: the allocation is a time limit.
    charge: Charge = "used" if spec.unit == "s" else "held"
    runtime = actual if charge == "used" else (test[spec.known_at] - test[spec.time]).to_numpy()
    request = test[spec.user_request].to_numpy(np.float64) if spec.user_request else None
    names = [*result.strategies, *result.baselines]
    return {
        name: simulate_retries(
            actual, result.backtest.methods[name].bounds.upper, runtime, policy, request, charge
        )
        for name in names
    }
