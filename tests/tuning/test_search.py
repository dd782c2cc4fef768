"""The Optuna search on real Nextflow traces: improves, prunes, resumes, stays in its space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from slocast.datasets import load_dataset
from slocast.errors import ConfigError, EmptyDataError
from slocast.tuning.cv import cv_folds, scorable_folds
from slocast.tuning.space import (
    anchor_choices,
    default_candidate,
    default_params,
    starting_points,
    suggest,
)
from slocast.tuning.study import (
    FOLD_SCORES,
    SearchConfig,
    best_trial,
    completed,
    run_study,
    trial_candidate,
)
from tests.conftest import SIZEY, shared_file

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


@pytest.fixture(scope="module")
def iwd_dev() -> tuple[object, object]:
    data = load_dataset(f"nextflow:{shared_file(SIZEY.format('iwd'))}")
    # The part before the final 20 % test slice, as `slocast tune` searches it.
    return data.frame.iloc[: int(len(data.frame) * 0.8)], data.spec


def _config(tmp_path: Path, **overrides: object) -> SearchConfig:
    options: dict[str, object] = {
        "trials": 10,
        "folds": 2,
        "storage": f"sqlite:///{tmp_path / 'studies.db'}",
        "study_prefix": "test",
        "threads_per_trial": 1,  # pytest runs two workers on two cores
    }
    options.update(overrides)
    return SearchConfig(**options)  # type: ignore[arg-type]


def test_search_improves_on_its_first_trial(iwd_dev, tmp_path: Path) -> None:
    dev, spec = iwd_dev
    study = run_study(dev, spec, "lightgbm", _config(tmp_path, pruner="none"))
    done = completed(study)
    assert len(done) == 10
    best = best_trial(study, None)
    assert best.value is not None and done[0].value is not None
    assert best.value < done[0].value
    # Every trial records what the strategies and reports need.
    for trial in done:
        assert {"under_alloc_pct", "over_alloc_pct", "coverage", "fit_seconds"} <= set(
            trial.user_attrs
        )
        # One score per fold, for choosing between families (slocast.tuning.selection).
        folds = trial.user_attrs[FOLD_SCORES]
        assert len(folds) == 2 and np.mean(folds) == pytest.approx(trial.value)
        assert 0.5 <= trial.params["coverage"] <= 0.995


def test_a_new_study_starts_from_the_defaults(iwd_dev, tmp_path: Path) -> None:
    """The first trial is what `slocast evaluate` runs, so the search never reports a best
    worse than the defaults (in cross-validation), and the second the same with the history
    expert switched; a resumed study does not repeat them."""
    dev, spec = iwd_dev
    config = _config(tmp_path, trials=2, pruner="none", under_cost_ratio=3.0)
    start = starting_points("bins-lightgbm", 0.9, config.bins)
    assert start[0] == default_params("bins-lightgbm", 0.9, config.bins)
    assert start[1] == start[0] | {"history_expert": not start[0]["history_expert"]}
    study = run_study(dev, spec, "bins-lightgbm", config, start=start)
    assert [t.params for t in study.trials] == start
    candidate = trial_candidate(study.trials[0], "bins-lightgbm", spec, config)
    assert candidate == default_candidate("bins-lightgbm", spec, 0.9, config.threads, 3.0)
    # The study's price of a miss reaches the calibration (the history expert's choice).
    assert candidate.calibration.under_cost_ratio == 3.0
    again = run_study(dev, spec, "bins-lightgbm", config, start=start)
    assert len(again.trials) == 4 and again.trials[2].params not in start


def test_median_pruner_stops_bad_trials(iwd_dev, tmp_path: Path) -> None:
    dev, spec = iwd_dev
    study = run_study(dev, spec, "lightgbm", _config(tmp_path, trials=14, folds=3))
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.PRUNED in states
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    # A pruned trial stopped before the last fold, but not on the first fold's score alone:
    # an expanding window's first fold fits on the least history.
    assert pruned and all(sorted(t.intermediate_values) == [0, 1] for t in pruned)


def test_resumed_study_continues_its_trial_count(iwd_dev, tmp_path: Path) -> None:
    dev, spec = iwd_dev
    config = _config(tmp_path, trials=3, pruner="none")
    run_study(dev, spec, "bins-lightgbm", config)
    again = run_study(dev, spec, "bins-lightgbm", config)
    assert len(again.trials) == 6
    assert [t.number for t in again.trials] == list(range(6))
    # The same name on other rows or another split would lend these trials' scores to it.
    with pytest.raises(ConfigError, match="scored on other data") as info:
        run_study(dev.iloc[:-50], spec, "bins-lightgbm", config)
    assert info.value.field == "study_name"
    with pytest.raises(ConfigError, match="scored on other folds"):
        run_study(dev, spec, "bins-lightgbm", _config(tmp_path, trials=3, folds=3))
    assert len(run_study(dev, spec, "bins-lightgbm", config).trials) == 9


def test_constraint_picks_a_trial_within_the_limit(iwd_dev, tmp_path: Path) -> None:
    dev, spec = iwd_dev
    study = run_study(dev, spec, "lightgbm", _config(tmp_path, pruner="none"))
    unders = sorted(t.user_attrs["under_alloc_pct"] for t in completed(study))
    limit = unders[len(unders) // 2]  # half the trials meet it
    chosen = best_trial(study, limit)
    assert chosen.user_attrs["under_alloc_pct"] <= limit
    unconstrained = best_trial(study, None)
    assert chosen.value is not None and unconstrained.value is not None
    assert chosen.value >= unconstrained.value


def test_folds_expand_in_time_order(iwd_dev) -> None:
    dev, _ = iwd_dev
    prefixes = list(cv_folds(dev, 3))
    assert [len(p) for p in prefixes] == sorted(len(p) for p in prefixes)
    assert all(p.index.equals(dev.index[: len(p)]) for p in prefixes)
    with pytest.raises(EmptyDataError):
        list(cv_folds(dev.iloc[:30], 3))
    with pytest.raises(ConfigError):
        list(cv_folds(dev, 0))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trials": 0}, "trials"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"timeout_s": -1.0}, "timeout"),
        # NaN reached Optuna's constraint check and ended the search with a traceback.
        ({"max_under_pct": float("nan")}, "max_under_pct"),
        ({"max_under_pct": -1.0}, "max_under_pct"),
        ({"max_under_pct": 101.0}, "max_under_pct"),
        # A storage URL Optuna cannot use was a traceback from SQLAlchemy's plugin loader.
        ({"storage": "garbage://x"}, "storage"),
    ],
)
def test_search_settings_out_of_range_name_the_option(change: dict[str, float], field: str) -> None:
    # A negative timeout used to stop every study before its first trial ("no completed trial").
    with pytest.raises(ConfigError) as error:
        SearchConfig(**change)  # type: ignore[arg-type]
    assert error.value.field == field


def test_an_unreachable_study_storage_is_one_line_without_the_password(iwd_dev) -> None:
    from slocast.errors import SlocastError

    dev, spec = iwd_dev
    config = SearchConfig(trials=1, storage="postgresql://u:secret@127.0.0.1:1/studies")
    with pytest.raises(SlocastError, match="unreachable") as error:
        run_study(dev, spec, "lightgbm", config)
    assert error.value.field == "storage" and "secret" not in str(error.value)


def test_search_space_offers_the_domains_anchors(iwd_dev) -> None:
    _, spec = iwd_dev
    anchors = anchor_choices(spec)
    assert set(anchors) == {"none", "request", "history"}
    assert anchors["history"][-1] == "memory"  # the request is the last fallback
    candidate = suggest(
        optuna.trial.FixedTrial(
            {
                "n_estimators": 100, "learning_rate": 0.05, "num_leaves": 16, "max_depth": 5,
                "min_child_samples": 10, "subsample": 0.9, "colsample": 0.9, "reg_lambda": 1.0,
                "anchor": "history", "min_group_size": 30, "window": 500, "aci_step": 0.01,
                "coverage": 0.95, "n_bins": 7, "bin_strategy": "kmeans", "request_until": 1,
                "level_bins": 3, "history_expert": False, "unseen_share": False,
            }
        ),
        "bins-forest",
        spec,
    )  # fmt: skip
    assert candidate.config.n_bins == 7 and candidate.config.bin_strategy == "kmeans"
    assert candidate.coverage == 0.95 and candidate.anchor == anchors["history"]
    assert np.isclose(candidate.calibration.aci_step, 0.01)
    assert candidate.calibration.request_until == 1
    assert not candidate.calibration.history_expert
    assert not candidate.calibration.unseen_share


def test_folds_whose_calibration_is_still_running_are_left_out() -> None:
    # rnaseq submits tasks in bursts: in the first fold every calibration task is still
    # running when validation starts, so that fold cannot be calibrated without the future.
    data = load_dataset(f"nextflow:{shared_file(SIZEY.format('rnaseq'))}")
    dev = data.frame.iloc[: int(len(data.frame) * 0.8)]
    usable = scorable_folds(dev, data.spec, 3, 0.2)
    assert 0 < len(usable) < len(list(cv_folds(dev, 3)))
    assert all(len(split.calibration) > 0 for split in usable)
    never_done = dev.assign(known_at=dev["time"].max() + 1e9)  # nothing ever finishes
    with pytest.raises(EmptyDataError) as info:
        scorable_folds(never_done, data.spec, 3, 0.2)
    assert info.value.field == "folds"
