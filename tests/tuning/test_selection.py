"""Choosing the family to deploy from cross-validated scores, with the folds' noise in view."""

from __future__ import annotations

import pytest

from slocast.tuning.selection import Contender, choose_family, clearly_better
from slocast.tuning.workbench import FamilyOutcome, choose_outcome


def contender(family: str, *folds: float) -> Contender:
    return Contender(family, sum(folds) / len(folds), tuple(folds))


def test_a_lower_mean_from_one_lucky_fold_does_not_displace_the_first_family() -> None:
    default = contender("lightgbm", 60.0, 45.0, 50.0)
    lucky = contender("bins-logistic", 30.0, 50.0, 52.0)  # mean 44 against 51.7
    assert lucky.business_score < default.business_score
    assert choose_family([default, lucky]) == "lightgbm"


def test_a_family_lower_on_every_fold_is_chosen() -> None:
    default = contender("lightgbm", 60.0, 45.0, 50.0)
    steady = contender("ensemble", 55.0, 41.0, 46.0)
    assert clearly_better(steady, default)
    assert choose_family([default, steady]) == "ensemble"


def test_each_challenger_faces_the_family_chosen_so_far() -> None:
    first = contender("lightgbm", 60.0, 45.0, 50.0)
    second = contender("xgboost", 50.0, 35.0, 40.0)  # clearly better than the first
    third = contender("ensemble", 55.0, 40.0, 45.0)  # clearly better than the first only
    assert clearly_better(third, first) and not clearly_better(third, second)
    assert choose_family([first, second, third]) == "xgboost"
    assert choose_family([first, third, second]) == "xgboost"


@pytest.mark.parametrize(
    ("challenger", "chosen"),
    [
        (Contender("b", 40.0, (40.0,)), Contender("a", 50.0, (50.0,))),  # one fold
        (Contender("b", 40.0, ()), Contender("a", 50.0, ())),  # a study saved before folds
    ],
)
def test_without_two_paired_folds_the_lower_mean_wins(
    challenger: Contender, chosen: Contender
) -> None:
    assert clearly_better(challenger, chosen)
    assert not clearly_better(chosen, challenger)


def test_no_family_is_an_error() -> None:
    with pytest.raises(ValueError, match="no family"):
        choose_family([])


def outcome(source: str, under_pct: float, *folds: float) -> FamilyOutcome:
    """A family's cross-validated result, as far as the choice reads it."""
    cv = {"business_score": sum(folds) / len(folds), "under_alloc_pct": under_pct}
    return FamilyOutcome("lightgbm", None, cv, fold_scores=folds, source=source)  # type: ignore[arg-type]


def test_the_constraint_comes_before_the_score() -> None:
    searched = outcome("search", 2.0, 60.0, 45.0, 50.0)
    plain = outcome("plain-cqr", 0.8, 80.0, 70.0, 75.0)  # scores worse, meets <= 1 %
    assert choose_outcome([searched, plain], 1.0) is plain
    assert choose_outcome([searched, plain], None) is searched  # no constraint: the rule
    better = outcome("plain-cqr", 2.0, 55.0, 41.0, 46.0)  # clearly lower, both miss 1 %
    assert choose_outcome([searched, better], 3.0) is better


def test_where_none_meets_the_constraint_the_least_under_allocated_is_deployed() -> None:
    """As a study's best trial is chosen when no trial meets it: the nearest to meeting it."""
    searched = outcome("search", 3.0, 40.0, 35.0, 45.0)
    plain = outcome("plain-cqr", 1.5, 60.0, 55.0, 65.0)
    assert choose_outcome([searched, plain], 1.0) is plain
    assert choose_outcome([plain, searched], 1.0) is plain
