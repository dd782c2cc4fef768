"""Adaptive conformal inference (Gibbs & Candès, 2021): the level follows observed misses.

After each round of outcomes the miscoverage ``alpha_t`` moves by ``step * (alpha - miss rate)``:
misses ask for more coverage next time, hits for slightly less, so the long-run miss rate tracks
``1 - coverage`` even when the data drift.

The level used for bounds is clamped to ``[min_level, max_level]`` so a quantile of the scores
always exists and bounds stay finite. The ceiling is 0.995, or halfway from the coverage asked
to 1 where that is higher: a promise of 0.999 is never served at 0.995. Where plain ACI would
need a level above ``max_level`` (a trend such as a load ramp, where each new outcome exceeds
every past score), the deficit ``max_level - (1 - alpha_t)`` can be kept: with
``overflow_gain`` > 0 it becomes an additive widening of ``overflow_gain * deficit * scale``
score units (``scale`` = the spread of the calibration scores), so the bound keeps growing with
the misses -- proportional control in score space (cf. conformal PID control, Angelopoulos et
al., 2023) that engages only when the clamp binds. It is off by default: on a log-scaled target
a widening in score units multiplies the bound, and where the misses come from a few groups the
model cannot know (tasks of processes never seen, in a trace without requests) it multiplied
every job's bound by orders of magnitude while adding under half a point of coverage.

With ``experts > 1`` the step size itself is learned (DtACI, Gibbs & Candès, 2024): several
ACI learners with steps on a geometric grid around ``step`` each track the level they would
need, judged by whether *they* would have covered each outcome; the served miscoverage is their
average under exponential weights on the pinball loss of each learner's level against the
outcome's exceedance (the largest miscoverage that would still have covered it). Slow steps
win while the data are steady, fast ones through a ramp; no single step has to be chosen.

>>> aci = AdaptiveConformal(coverage=0.9, step=0.05)
>>> aci.level
0.9
>>> aci.update([True])  # a miss: ask for more coverage
>>> aci.level > 0.9
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from slocast.calibration.conformal import pinball_loss

__all__ = ["AdaptiveConformal", "level_for"]


class AdaptiveConformal:
    # DtACI's tuning for a horizon of ``_HORIZON`` rounds (the paper's recommendation).
    _HORIZON = 100

    def __init__(
        self,
        coverage: float,
        step: float = 0.005,
        min_level: float = 0.5,
        max_level: float | None = None,
        overflow_gain: float = 0.0,
        max_round: int = 10,
        experts: int = 1,
    ) -> None:
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}")
        max_level = _ceiling(coverage) if max_level is None else max_level
        if not 0.0 < min_level <= coverage <= max_level < 1.0:
            raise ValueError("need 0 < min_level <= coverage <= max_level < 1")
        if experts < 1:
            raise ValueError(f"experts must be >= 1, got {experts}")
        self.coverage = coverage
        self.step = step
        self.min_level = min_level
        self.max_level = max_level
        self.overflow_gain = overflow_gain
        self.max_round = max_round
        self.experts = experts
        self.scale = 1.0
        # Steps step * 2^j, centred on ``step``; one expert is classic ACI.
        self.steps = step * 2.0 ** (np.arange(experts) - (experts - 1) / 2)
        self._alphas = np.full(experts, 1.0 - coverage)
        self._weights = np.full(experts, 1.0 / experts)
        target, horizon = 1.0 - coverage, self._HORIZON
        self._eta = np.sqrt(3.0 / horizon) * np.sqrt(
            (np.log(experts * horizon) + 2.0) / ((1.0 - target) ** 2 * target**3)
        )
        self._mix = 1.0 / (2.0 * horizon)
        self._remix()
        self.observed = 0
        self.misses = 0

    @property
    def _alpha(self) -> float:
        return self._mixed

    def _remix(self) -> None:
        """The served miscoverage, kept as a float: every bound reads it twice (level and
        overflow), and a dot product per read is a fifth of a one-row prediction."""
        self._mixed = float(self._weights @ self._alphas)

    @property
    def level(self) -> float:
        """Coverage level to use for the next bound (clamped)."""
        return min(self.max_level, max(self.min_level, 1.0 - self._alpha))

    def level_for(self, coverage: float | None) -> float:
        """Level for a requested coverage (None: the promised one): the drift correction
        applies to any coverage asked for, so bounds stay monotone in it and consistent with
        the default."""
        if coverage is None:
            return self.level
        shifted = coverage + (self.level - self.coverage)
        return min(max(self.max_level, _ceiling(coverage)), max(self.min_level, shifted))

    @property
    def overflow(self) -> float:
        """Additive widening, in score units, for the coverage the clamped level cannot give."""
        deficit = max(0.0, (1.0 - self._alpha) - self.max_level)
        return self.overflow_gain * deficit * self.scale

    def set_scale(self, scores: np.ndarray) -> None:
        """Score units for :attr:`overflow`: the 10-90% spread of calibration scores."""
        spread = float(np.subtract(*np.percentile(scores, [90, 10]))) if len(scores) else 0.0
        self.scale = spread if spread > 0 else 1.0

    def needed(self, exceedance: np.ndarray, excess: np.ndarray) -> np.ndarray:
        """The miscoverage each outcome needed to be covered: its ``exceedance`` among the
        calibration scores, and for a score ``excess`` above the ``max_level`` quantile, the
        (negative) alpha whose :attr:`overflow` widening reaches it. Without overflow no alpha
        reaches beyond the clamp: the exceedance is all there is."""
        if self.overflow_gain <= 0.0:
            return np.asarray(exceedance, dtype=np.float64)
        beyond = (1.0 - self.max_level) - np.maximum(excess, 0.0) / (
            self.overflow_gain * self.scale
        )
        return np.where(excess > 0, np.minimum(beyond, exceedance), exceedance)

    def update(
        self,
        misses: Iterable[bool],
        exceedance: Iterable[float] | None = None,
        groups: Iterable[object] | None = None,
    ) -> None:
        """One feedback round: the outcomes that became known together.

        The level moves by ``step * min(sqrt(n), max_round) * (alpha - miss rate)`` for a round
        of ``n`` outcomes: outcomes that arrive together are correlated (a user's 100 identical
        jobs ending at once), so they weigh like sqrt(n) independent ones, never more than
        ``max_round`` -- with delayed feedback, per-outcome updates overshoot. Given each
        outcome's ``groups`` (user, process), ``n`` counts the groups in the round instead: one
        user's jobs that end together miss or hit together, and counted as several pieces of
        evidence their misses pushed the level up for every group at once. ``exceedance``
        (per outcome, see :meth:`ConformalUpper.exceedance`) lets each expert see its own misses
        and be weighted; without it every expert follows the served misses.
        """
        batch = [bool(m) for m in misses]
        if not batch:
            return
        self.observed += len(batch)
        self.misses += sum(batch)
        independent = len(batch) if groups is None else len({str(g) for g in groups})
        weight = min(independent**0.5, self.max_round)
        target = 1.0 - self.coverage
        beta = None if exceedance is None else np.fromiter(exceedance, dtype=np.float64)
        if self.experts == 1 or beta is None or len(beta) != len(batch):
            errors = np.full(self.experts, sum(batch) / len(batch))
        else:
            errors = (beta[None, :] < self._alphas[:, None]).mean(axis=1)
            gap = beta[None, :] - self._alphas[:, None]
            loss = pinball_loss(gap, target).mean(axis=1)
            weights = self._weights * np.exp(-self._eta * weight * (loss - loss.min()))
            weights /= weights.sum()
            self._weights = (1.0 - self._mix) * weights + self._mix / self.experts
        self._alphas += self.steps * weight * (target - errors)
        # No wind-up on the loose side: runs of hits cannot store up future misses.
        self._alphas = np.minimum(self._alphas, 1.0 - self.min_level)
        self._remix()

    @property
    def observed_coverage(self) -> float | None:
        return None if self.observed == 0 else 1.0 - self.misses / self.observed

    def params(self) -> dict[str, Any]:
        """The constructor's settings but the coverage (bundles store them beside the state)."""
        return {
            "step": self.step,
            "min_level": self.min_level,
            "max_level": self.max_level,
            "overflow_gain": self.overflow_gain,
            "max_round": self.max_round,
            "experts": self.experts,
        }

    def state(self) -> dict[str, Any]:
        return {
            "alpha": self._alpha,
            "alphas": self._alphas.tolist(),
            "weights": self._weights.tolist(),
            "scale": self.scale,
            "observed": self.observed,
            "misses": self.misses,
        }

    @classmethod
    def from_state(
        cls, coverage: float, params: Mapping[str, Any], state: Mapping[str, Any]
    ) -> AdaptiveConformal:
        """A learner rebuilt from :meth:`params` and :meth:`state` (as bundles store them)."""
        aci = cls(coverage, **params)
        aci.restore(state)
        return aci

    def restore(self, state: Mapping[str, Any]) -> None:
        alphas = state.get("alphas")
        if alphas is not None and len(alphas) == self.experts:
            self._alphas = np.asarray(alphas, dtype=np.float64)
            self._weights = np.asarray(state["weights"], dtype=np.float64)
        else:  # a bundle written before experts (or with another count): start them level
            self._alphas = np.full(self.experts, float(state["alpha"]))
            self._weights = np.full(self.experts, 1.0 / self.experts)
        self._remix()
        self.scale = float(state["scale"])
        self.observed = int(state["observed"])
        self.misses = int(state["misses"])


def _ceiling(coverage: float) -> float:
    """The highest level served for ``coverage``: 0.995, or halfway from it to 1 if higher."""
    return max(0.995, (1.0 + coverage) / 2.0)


def level_for(aci: AdaptiveConformal | None, coverage: float | None, promised: float) -> float:
    """The quantile level for a requested coverage (None: the ``promised`` one), with ``aci``'s
    drift correction where there is a learner."""
    if aci is None:
        return promised if coverage is None else coverage
    return aci.level_for(coverage)
