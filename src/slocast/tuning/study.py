"""Optuna studies: one per model family, resumable in an RDB, scored by business cost.

The objective is the mean business score over the time-series folds (:mod:`slocast.tuning.cv`),
reported after each fold so the pruner stops hopeless trials early. A constraint on the
under-allocation rate (``max_under_pct``) is handed to the TPE sampler, and only trials that meet
it can be chosen as best. Studies live in RDB storage (a SQLite file by default, PostgreSQL by
URL) under a name derived from the data file's hash, so running again resumes a study and adds
trials to it.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sqlalchemy.exc import OperationalError

from slocast.errors import ConfigError
from slocast.models.composite import MAX_BINS, MIN_BINS
from slocast.schema import DomainSpec
from slocast.settings import STORE_SCHEMES, check_url
from slocast.store.sql import unreachable
from slocast.tuning.cv import FoldScore, scorable_folds, score_fold
from slocast.tuning.space import Candidate, check_bins, suggest

__all__ = [
    "FOLD_SCORES",
    "PRUNERS",
    "SearchConfig",
    "best_trial",
    "completed",
    "cv_summary",
    "run_study",
    "trial_candidate",
]

PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class SearchConfig:
    trials: int = 30
    timeout_s: float | None = None
    n_jobs: int = 1
    folds: int = 3
    storage: str | None = None  # RDB URL; None keeps the study in memory
    study_prefix: str = "slocast"
    pruner: str = "median"
    max_under_pct: float | None = None
    under_cost_ratio: float = 5.0
    calibration_fraction: float = 0.2
    seed: int = 0
    bins: tuple[int, int] = (MIN_BINS, MAX_BINS)
    threads_per_trial: int | None = None  # default: 2, or 1 when trials run in parallel

    def __post_init__(self) -> None:
        check_bins(self.bins)
        if self.pruner not in PRUNERS:
            raise ConfigError(
                f"unknown pruner {self.pruner!r}; known: {', '.join(PRUNERS)}", field="pruner"
            )
        if self.trials < 1:
            raise ConfigError("trials must be at least 1", field="trials")
        if self.n_jobs < 1:
            raise ConfigError("n_jobs must be at least 1", field="n_jobs")
        if self.max_under_pct is not None and not 0 <= self.max_under_pct <= 100:
            raise ConfigError(
                f"max_under_pct must be a percentage in [0, 100], got {self.max_under_pct}",
                field="max_under_pct",
            )
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout_s}", field="timeout")
        check_url(self.storage, STORE_SCHEMES, "storage")

    @property
    def threads(self) -> int:
        """Threads per model: parallel trials share the cores instead of oversubscribing them
        (OpenMP runtimes spin while waiting: oversubscribed, a fit can run 100x slower)."""
        if self.threads_per_trial is not None:
            return self.threads_per_trial
        return 1 if self.n_jobs > 1 else 2


# A trial's user attribute holding each fold's business score (the others are numbers).
FOLD_SCORES = "fold_business_scores"
# Study attribute: what its trials were scored on (see _check_scored_on).
SCORED_ON = "scored_on"


def cv_summary(scores: list[FoldScore], under_cost_ratio: float) -> dict[str, float]:
    """Mean metrics over folds (the business score is recomputed from the mean rates)."""
    under = float(np.mean([s.metrics.under_alloc_pct for s in scores]))
    over = float(np.mean([s.metrics.over_alloc_pct for s in scores]))
    return {
        "business_score": under_cost_ratio * under + over,
        "under_alloc_pct": under,
        "over_alloc_pct": over,
        "coverage": float(np.mean([s.metrics.coverage for s in scores])),
        "fit_seconds": float(np.mean([s.fit_seconds for s in scores])),
        "predict_seconds_per_row": float(
            sum(s.predict_seconds for s in scores) / max(1, sum(s.rows for s in scores))
        ),
        "folds": float(len(scores)),
    }


def _pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    if config.pruner == "median":
        # Never on the first fold's score alone where there are more: an expanding window's
        # first fold fits on the least history and ranks candidates worst. Pruned there, 30
        # lightgbm trials found worse models on chipseq and rnaseq (both of two seeds) and the
        # same on eager and iwd; more trials finish, so a search takes longer (chipseq 2-3x).
        return optuna.pruners.MedianPruner(
            n_startup_trials=4, n_warmup_steps=1 if config.folds >= 3 else 0
        )
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=config.folds, reduction_factor=2
        )
    return optuna.pruners.NopPruner()


def _sampler(config: SearchConfig) -> optuna.samplers.BaseSampler:
    constraints: Callable[[optuna.trial.FrozenTrial], list[float]] | None = None
    if config.max_under_pct is not None:
        limit = config.max_under_pct

        def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
            return [float(trial.user_attrs.get("under_alloc_pct", math.inf)) - limit]

    with warnings.catch_warnings():
        # Optuna flags constraints_func as experimental; its behaviour here is what we rely on.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=config.seed,
            n_startup_trials=min(10, max(3, config.trials // 3)),
            constraints_func=constraints,
        )


def run_study(
    dev: pd.DataFrame,
    spec: DomainSpec,
    family: str,
    config: SearchConfig,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    start: Sequence[Mapping[str, Any]] = (),
) -> optuna.Study:
    """Create or resume the family's study and run ``config.trials`` more trials on ``dev``;
    a new study's first trials are ``start`` (e.g. :func:`starting_points`)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folds = scorable_folds(dev, spec, config.folds, config.calibration_fraction)

    def objective(trial: optuna.Trial) -> float:
        candidate = suggest(
            trial, family, spec, config.threads, config.bins, config.under_cost_ratio
        )
        scores: list[FoldScore] = []
        summary: dict[str, float] = {}
        for step, split in enumerate(folds):
            scores.append(score_fold(candidate, split, spec, config.under_cost_ratio))
            summary = cv_summary(scores, config.under_cost_ratio)
            for key, value in summary.items():
                trial.set_user_attr(key, value)
            trial.set_user_attr(FOLD_SCORES, [s.metrics.business_score for s in scores])
            trial.report(summary["business_score"], step)
            # After the last fold the trial is complete: nothing left to save by pruning.
            if step < len(folds) - 1 and trial.should_prune():
                raise optuna.TrialPruned()
        return summary["business_score"]

    try:
        study = optuna.create_study(
            storage=config.storage,
            study_name=f"{config.study_prefix}-{family}",
            direction="minimize",
            sampler=_sampler(config),
            pruner=_pruner(config),
            load_if_exists=True,
        )
    except OperationalError as exc:
        raise unreachable("study storage", config.storage or "", exc, "storage") from exc
    _check_scored_on(study, _scored_on(dev, config))
    if not study.trials:
        for params in start:
            study.enqueue_trial(dict(params))
    callbacks = [lambda _study, trial: on_trial(trial)] if on_trial else None
    study.optimize(
        objective, n_trials=config.trials, timeout=config.timeout_s, n_jobs=config.n_jobs,
        callbacks=callbacks,
    )  # fmt: skip
    return study


def _scored_on(dev: pd.DataFrame, config: SearchConfig) -> dict[str, Any]:
    """What a trial's score depends on beyond its parameters: the rows and how they are split
    and costed."""
    rows = hashlib.sha256(pd.util.hash_pandas_object(dev, index=False).to_numpy().tobytes())
    return {
        "rows": rows.hexdigest()[:16],
        "folds": config.folds,
        "under_cost_ratio": config.under_cost_ratio,
        "calibration_fraction": config.calibration_fraction,
    }


def _check_scored_on(study: optuna.Study, scored_on: dict[str, Any]) -> None:
    """A study resumes only on what its trials were scored on: Optuna loads any study of the
    name, and one scored on another trace (a reused ``--study-name``) would lend its trials'
    scores to this one's best."""
    before = study.user_attrs.get(SCORED_ON)
    if before is None or not study.trials:
        study.set_user_attr(SCORED_ON, scored_on)  # new, or kept before this check: pinned now
        return
    changed = [key for key, value in scored_on.items() if before.get(key) != value]
    if changed:
        raise ConfigError(
            f"study {study.study_name!r} was scored on other "
            f"{' and '.join('data' if k == 'rows' else k for k in changed)}: resuming it would mix "
            "its trials' scores with these; give another --study-name (or storage)",
            field="study_name",
        )


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def best_trial(study: optuna.Study, max_under_pct: float | None) -> optuna.trial.FrozenTrial:
    """Lowest business score among trials meeting the constraint, else the least under-allocated."""
    done = completed(study)
    if not done:
        raise ConfigError(
            f"study {study.study_name} has no completed trial (all pruned or failed)",
            field="trials",
        )
    feasible = [
        t
        for t in done
        if max_under_pct is None or t.user_attrs.get("under_alloc_pct", math.inf) <= max_under_pct
    ]
    if feasible:
        return min(feasible, key=lambda t: float(t.value if t.value is not None else math.inf))
    return min(done, key=lambda t: float(t.user_attrs.get("under_alloc_pct", math.inf)))


def trial_candidate(
    trial: optuna.trial.FrozenTrial, family: str, spec: DomainSpec, config: SearchConfig
) -> Candidate:
    """Rebuild a trial's candidate from its stored parameters."""
    fixed = optuna.trial.FixedTrial(trial.params)
    return suggest(fixed, family, spec, config.threads, config.bins, config.under_cost_ratio)
