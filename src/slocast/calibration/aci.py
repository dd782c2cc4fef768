"""Adaptive conformal inference (Gibbs & Candès, 2021): the level follows observed misses.

After each round of outcomes the miscoverage ``alpha_t`` moves by ``step * (alpha - miss rate)``:
misses ask for more coverage next time, hits for slightly less, so the long-run miss rate tracks
``1 - coverage`` even when the data drift.

The level used for bounds is clamped to ``[min_level, max_level]`` so a quantile of the scores
always exists and bounds stay finite. Where plain ACI would need a level above ``max_level``
(a trend such as a load ramp, where each new outcome exceeds every past score), the deficit
``max_level - (1 - alpha_t)`` is not thrown away: it becomes an additive widening of
``overflow_gain * deficit * scale`` score units (``scale`` = the spread of the calibration
scores), so the bound keeps growing with the misses -- proportional control in score space
(cf. conformal PID control, Angelopoulos et al., 2023) that engages only when the clamp binds.

>>> aci = AdaptiveConformal(coverage=0.9, step=0.05)
>>> aci.level
0.9
>>> aci.update([True])  # a miss: ask for more coverage
>>> aci.level > 0.9
True
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["AdaptiveConformal"]


class AdaptiveConformal:
    def __init__(
        self,
        coverage: float,
        step: float = 0.005,
        min_level: float = 0.5,
        max_level: float = 0.995,
        overflow_gain: float = 20.0,
        max_round: int = 10,
    ) -> None:
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}")
        if not 0.0 < min_level <= coverage <= max_level < 1.0:
            raise ValueError("need 0 < min_level <= coverage <= max_level < 1")
        self.coverage = coverage
        self.step = step
        self.min_level = min_level
        self.max_level = max_level
        self.overflow_gain = overflow_gain
        self.max_round = max_round
        self.scale = 1.0
        self._alpha = 1.0 - coverage
        self.observed = 0
        self.misses = 0

    @property
    def level(self) -> float:
        """Coverage level to use for the next bound (clamped)."""
        return min(self.max_level, max(self.min_level, 1.0 - self._alpha))

    @property
    def overflow(self) -> float:
        """Additive widening, in score units, for the coverage the clamped level cannot give."""
        deficit = max(0.0, (1.0 - self._alpha) - self.max_level)
        return self.overflow_gain * deficit * self.scale

    def set_scale(self, scores: np.ndarray) -> None:
        """Score units for :attr:`overflow`: the 10-90% spread of calibration scores."""
        spread = float(np.subtract(*np.percentile(scores, [90, 10]))) if len(scores) else 0.0
        self.scale = spread if spread > 0 else 1.0

    def update(self, misses: Iterable[bool]) -> None:
        """One feedback round: the outcomes that became known together.

        The level moves by ``step * min(sqrt(n), max_round) * (alpha - miss rate)`` for a round
        of ``n`` outcomes: outcomes that arrive together are correlated (a user's 100 identical
        jobs ending at once), so they weigh like sqrt(n) independent ones, never more than
        ``max_round`` -- with delayed feedback, per-outcome updates overshoot.
        """
        batch = [bool(m) for m in misses]
        if not batch:
            return
        self.observed += len(batch)
        self.misses += sum(batch)
        weight = min(len(batch) ** 0.5, self.max_round)
        self._alpha += self.step * weight * ((1.0 - self.coverage) - sum(batch) / len(batch))
        # No wind-up on the loose side: runs of hits cannot store up future misses.
        self._alpha = min(self._alpha, 1.0 - self.min_level)

    @property
    def observed_coverage(self) -> float | None:
        return None if self.observed == 0 else 1.0 - self.misses / self.observed

    def state(self) -> dict[str, float]:
        return {
            "alpha": self._alpha,
            "scale": self.scale,
            "observed": self.observed,
            "misses": self.misses,
        }

    def restore(self, state: dict[str, float]) -> None:
        self._alpha = float(state["alpha"])
        self.scale = float(state["scale"])
        self.observed = int(state["observed"])
        self.misses = int(state["misses"])
