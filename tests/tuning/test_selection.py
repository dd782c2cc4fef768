"""Choosing the family to deploy from cross-validated scores, with the folds' noise in view."""

from __future__ import annotations

import pytest

from slocast.tuning.selection import Contender, choose_family, clearly_better


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
