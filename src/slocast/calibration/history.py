"""The group's own history as a second predictor next to the model, chosen per group on cost.

A model trained on the past knows little of a process (or user) that appeared after it was
trained: its quantile for such a group can be off by a factor, and the group's conformal
offset must then be as wide as the model's errors are varied. What the group's finished jobs
used is often the better predictor (that is all a Kubernetes VPA looks at). So next to the
model, slocast keeps a *history expert*:

- its base is a history feature ``H`` known at submission (see
  :mod:`slocast.datasets.history`): the 0.9 quantile of the group's latest outcomes, or where
  the domain keeps one, what the group's latest outcomes say a job of this size needs
  (:func:`slocast.features.history_base_column`);
- its bound is ``H`` shifted by the conformal quantile of signed scores ``y - H`` on the model's
  scale, per group (:class:`ConformalUpper`), so it carries the same coverage promise as the
  model's bound. A group with fewer scores than the Mondrian size takes the pooled scores of
  groups that were as young (0, 1-3, 4-9 or 10+ scores held): a quantile of one outcome says
  less than a quantile of fifty, and the pool of all groups would promise too much for it;
- a group with no finished job on record yet has no evidence of its own: each of its jobs
  gets the lower of the two bounds (both calibrated for groups that young);
- each group with a record is served whichever of the two bounds has cost less on its
  latest ``memory`` finished jobs (``under_cost`` x a miss + the excess over the outcome, in
  units of the mean outcome), plus ``prior`` jobs' worth of what the pool of all groups says
  it would cost for a group of its size: the pool's miss rate, and the pool's excess per unit
  of outcome scaled to the group's outcomes. A group of small jobs then follows the pool's
  misses (its excess is negligible in the business score) and a group of large jobs the
  pool's excess; on a log where the history predicts badly for most groups, a group leaves
  the model only on strong evidence of its own.

Both bounds are calibrated, but choosing sends each expert the jobs it looked good on, and
those are not a random sample of its jobs: each expert therefore has its own ACI level, moved
by the misses of the bounds it served (the model's, in the forecaster). The choice never looks
at the outcome of the job being bounded.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from slocast.calibration.aci import AdaptiveConformal, level_for
from slocast.calibration.conformal import ConformalUpper

__all__ = ["HistoryExpert"]

# A group's scores held, binned: how much its history says (0, 1-3, 4-9, 10+).
YOUTH_EDGES = (1, 4, 10)


class HistoryExpert:
    """Conformal bounds from a history feature, and the per-group choice against the model.

    ``column``: the history feature ``H`` (raw scale). ``memory``: finished jobs per group the
    choice looks at; ``prior``: how many jobs the pooled record counts as (as many as a full
    group record by default: neither outweighs the other).
    """

    def __init__(
        self,
        column: str,
        calibrator: ConformalUpper,
        under_cost: float = 5.0,
        memory: int = 20,
        prior: float = 20.0,
        aci: AdaptiveConformal | None = None,
    ) -> None:
        self.column = column
        self.calibrator = calibrator
        # The same scores keyed by the youth of their group when they were scored.
        self.by_youth = _like(calibrator)
        self.under_cost = under_cost
        self.memory = memory
        self.prior = prior
        # The level of its offsets, moved by its own bound's misses as the model's is by its.
        self.aci = aci
        # Per group and pooled: (outcome, model's bound, history's bound) of finished jobs.
        self._records: dict[str, deque[tuple[float, float, float]]] = {}
        self._pooled: deque[tuple[float, float, float]] = deque(maxlen=25 * memory)
        self._prior: tuple[np.ndarray, np.ndarray, float] | None = None  # memo, see _prefers
        self._choice: dict[str, bool] = {}  # memo until the next record

    def reset(self) -> None:
        """Forget every score and record (a model fitted anew starts over)."""
        self.calibrator = _like(self.calibrator)
        self.by_youth = _like(self.calibrator)
        self._records.clear()
        self._pooled.clear()
        self._forget_choices()
        if self.aci is not None:
            self.aci = AdaptiveConformal(self.aci.coverage, **self.aci.params())

    def level_for(self, coverage: float | None, promised: float) -> float:
        return level_for(self.aci, coverage, promised)

    @property
    def ready(self) -> bool:
        """Whether any score is known yet (before that, every group keeps the model)."""
        return self.calibrator.conformalized

    def update(self, scores: np.ndarray, groups: Iterable[object]) -> None:
        """Scores ``y - H`` (model scale) of finished jobs that had a history value."""
        if not len(scores):
            return
        keys = [str(g) for g in groups]
        held = Counter({g: self.calibrator.count(g) for g in set(keys)})
        youth = []
        for key in keys:  # each score binned by what its group held before it
            youth.append(_youth(held[key]))
            held[key] += 1
        for calibrator, by in ((self.calibrator, keys), (self.by_youth, youth)):
            if calibrator.conformalized:
                calibrator.update(scores, by)
            else:
                calibrator.conformalize(scores, by)

    def offsets(self, groups: np.ndarray, coverage: float) -> np.ndarray:
        """Per job: its group's offset, or the offset of groups as young as its own."""
        counts = [self.calibrator.count(g) for g in groups.tolist()]
        youth = np.array([_youth(c) for c in counts], dtype=object)
        thin = np.array(counts) < self.calibrator.min_group_size
        own = self.calibrator.offsets(groups, coverage)
        return np.where(thin, self.by_youth.offsets(youth, coverage), own)

    def record(
        self,
        groups: Iterable[object],
        y: np.ndarray,
        model_upper: np.ndarray,
        history_upper: np.ndarray,
    ) -> None:
        """Both bounds of jobs that just finished, for the choice between them."""
        for group, *record in zip(
            groups, y.tolist(), model_upper.tolist(), history_upper.tolist(), strict=True
        ):
            window = self._records.get(str(group))
            if window is None:
                window = self._records[str(group)] = deque(maxlen=self.memory)
            window.append((record[0], record[1], record[2]))
            self._pooled.append((record[0], record[1], record[2]))
        self._forget_choices()

    def _forget_choices(self) -> None:
        self._prior = None
        self._choice.clear()

    def prefers_history(self, groups: np.ndarray) -> np.ndarray:
        """Per job: whether its group is served the history expert's bound."""
        return np.array([self._prefers(str(g)) for g in groups.tolist()], dtype=bool)

    def serves(
        self, groups: np.ndarray, model_upper: np.ndarray, history_upper: np.ndarray
    ) -> np.ndarray:
        """Per job: whether it is served the history expert's bound rather than the model's.

        A group with no finished job on record has no evidence for the choice: each of its
        jobs gets the lower bound. (The pool's evidence is other groups': followed, it flipped
        a process between the experts as other groups' jobs finished, and served it a model
        off by 10x.) Where both give the same bound (both capped at the request), the model
        serves.
        """
        unproven = np.array([str(g) not in self._records for g in groups.tolist()], dtype=bool)
        chosen = np.where(unproven, history_upper < model_upper, self.prefers_history(groups))
        return np.asarray(chosen & np.isfinite(history_upper) & (history_upper != model_upper))

    def _prefers(self, group: str) -> bool:
        """Each expert's cost on the group's latest jobs, plus ``prior`` jobs' worth of what
        all groups' jobs say it would cost here: the pooled miss rate, and the pooled excess
        per unit of outcome scaled to this group's outcomes. A small group's excess weighs
        little in the business score, so for it the pool's misses decide; a large one's
        excess decides. The pool's plain mean would let large groups choose for small ones.
        """
        choice = self._choice.get(group)
        if choice is not None:
            return choice
        if not self._pooled:
            return False
        if self._prior is None:
            pool = np.array(self._pooled)
            outcome, bounds = pool[:, 0], pool[:, 1:]
            missed = bounds < outcome[:, None]
            excess = np.where(missed, 0.0, bounds - outcome[:, None]).sum(axis=0)
            unit = max(float(outcome.mean()), 1e-12)
            self._prior = (missed.mean(axis=0), excess / (unit * len(pool)), unit)
        miss_rate, excess_per_unit, unit = self._prior
        own = np.array(self._records.get(group, ()), dtype=np.float64).reshape(-1, 3)
        scale = float(own[:, 0].mean()) / unit if len(own) else 1.0
        cost = self.prior * (self.under_cost * miss_rate + excess_per_unit * scale)
        if len(own):
            outcome, bounds = own[:, :1], own[:, 1:]
            cost += np.where(bounds < outcome, self.under_cost, (bounds - outcome) / unit).sum(
                axis=0
            )
        choice = self._choice[group] = bool(cost[1] < cost[0])
        return choice

    def state(self) -> dict[str, Any]:
        """Serializable state for bundles: settings, scores per window, finished jobs' bounds."""
        c = self.calibrator
        return {
            "column": self.column,
            "under_cost": self.under_cost,
            "memory": self.memory,
            "prior": self.prior,
            "min_group_size": c.min_group_size,
            "window": c.window,
            "decay": c.decay,
            "scores": c.state(),
            "by_youth": self.by_youth.state(),
            "records": {g: [list(r) for r in w] for g, w in self._records.items()},
            "pooled": [list(r) for r in self._pooled],
            "aci": None if self.aci is None else self.aci.state(),
            "aci_params": None if self.aci is None else self.aci.params(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], coverage: float) -> HistoryExpert:
        size, window, decay = int(state["min_group_size"]), int(state["window"]), state["decay"]
        aci = None
        if state.get("aci"):
            aci = AdaptiveConformal.from_state(coverage, state["aci_params"], state["aci"])
        expert = cls(
            str(state["column"]),
            ConformalUpper.from_state(state["scores"], size, window, float(decay)),
            float(state["under_cost"]),
            int(state["memory"]),
            float(state["prior"]),
            aci,
        )
        expert.by_youth = ConformalUpper.from_state(state["by_youth"], size, window, float(decay))
        expert._records = {
            g: deque(((y, m, h) for y, m, h in w), maxlen=expert.memory)
            for g, w in state["records"].items()
        }
        expert._pooled.extend((y, m, h) for y, m, h in state["pooled"])
        return expert


def _like(calibrator: ConformalUpper) -> ConformalUpper:
    """An empty calibrator with ``calibrator``'s Mondrian size, window and decay."""
    return ConformalUpper(calibrator.min_group_size, calibrator.window, calibrator.decay)


def _youth(held: int) -> str:
    return f"youth-{bisect_right(YOUTH_EDGES, held)}"
