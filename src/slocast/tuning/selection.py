"""Which family's model the workbench deploys: cross-validated, with the folds' noise in view.

Each family's best trial is itself the minimum of many noisy cross-validated scores, and on a
trace of a few thousand jobs three time-ordered folds disagree by more than the families
differ. Taking the lowest mean then picks whichever family the folds happened to favour. So,
as the one-standard-error rule does (Hastie, Tibshirani & Friedman, *The Elements of
Statistical Learning*, 7.10), the order the families are given in is a preference (slocast's
default model first): a later family replaces the one chosen so far only when it scores lower
on the same folds by more than one standard error of the per-fold differences. Pairing the
folds takes out what makes one period harder than another for every family alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RULE", "Contender", "choose_family", "chosen_index", "clearly_better"]

# The rule in words, for reports and tables.
RULE = "the first family given, unless a later one scores clearly lower on the same folds"


@dataclass(frozen=True)
class Contender:
    family: str
    business_score: float  # mean over the folds
    fold_scores: tuple[float, ...]  # the business score of each fold, in time order


def clearly_better(challenger: Contender, chosen: Contender) -> bool:
    """Whether ``challenger`` scores lower than ``chosen`` by more than the folds' noise: the
    mean per-fold difference plus one standard error is below zero. Without two folds scored
    for both (one fold, or a study saved before fold scores were kept), the lower mean wins.

    >>> a = Contender("a", 50.0, (40.0, 50.0, 60.0))
    >>> clearly_better(Contender("b", 45.0, (20.0, 55.0, 60.0)), a)  # one fold's luck
    False
    >>> clearly_better(Contender("b", 45.0, (36.0, 45.0, 54.0)), a)  # lower on every fold
    True
    """
    ours, theirs = challenger.fold_scores, chosen.fold_scores
    if len(ours) != len(theirs) or len(ours) < 2:
        return challenger.business_score < chosen.business_score
    differences = np.subtract(ours, theirs)
    error = float(np.std(differences, ddof=1)) / math.sqrt(len(differences))
    return float(np.mean(differences)) + error < 0.0


def choose_family(contenders: Sequence[Contender]) -> str:
    """The first contender, replaced in turn by each later one that is :func:`clearly_better`
    than the one chosen so far."""
    return contenders[chosen_index(contenders)].family


def chosen_index(contenders: Sequence[Contender]) -> int:
    """Which of ``contenders`` :func:`choose_family` chooses (contenders of one family too:
    a study's best and another candidate)."""
    if not contenders:
        raise ValueError("no family to choose from")
    chosen = 0
    for index, challenger in enumerate(contenders[1:], start=1):
        if clearly_better(challenger, contenders[chosen]):
            chosen = index
    return chosen
