"""slocast's calibrated forecaster: quantile GBM + Mondrian CQR + ACI + request fallback.

Lifecycle: ``fit`` (past rows) -> ``conformalize`` (the next slice in time) -> ``predict`` /
``observe`` (online). ``predict`` before ``conformalize`` raises :class:`LifecycleError`.

- The GBM's upper quantile is shifted by the conformal quantile of signed scores
  ``y - upper_hat`` on the model's scale, per group where the group has enough scores.
- ``observe`` adds the scores of jobs that just finished -- computed from the prediction that
  was served for them, so they are always out of sample -- to sliding windows that follow
  drift, and feeds their hit/miss to ACI, which moves the level used for the next bounds.
- Where the domain has a user request: a job whose group has no known outcome yet gets the
  request (what it would have had without slocast), and bounds are capped at the request plus
  the grace past jobs took beyond theirs (:func:`request_grace`): none where no job ever
  exceeded its request (a hard limit, like a memory cgroup), seconds where a scheduler kills a
  job a little after its limit.
- Where the domain keeps per-group history: a second, history-based bound is calibrated the
  same way, and each group is served whichever of the two has cost less on its latest
  finished jobs; a group with none on record yet, the lower of the two
  (:mod:`slocast.calibration.history`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from slocast.calibration.aci import AdaptiveConformal, level_for
from slocast.calibration.conformal import ConformalUpper
from slocast.calibration.history import HistoryExpert
from slocast.calibration.unseen import UnseenShare
from slocast.errors import ConfigError, EmptyDataError, LifecycleError
from slocast.features import group_keys, history_base_column
from slocast.models.base import Bounds
from slocast.models.quantile import QuantileForecaster
from slocast.schema import POOLED

__all__ = [
    "CalibratedForecaster",
    "CalibrationParams",
    "Served",
    "build_slocast",
    "fit_on_history",
    "request_grace",
]


@dataclass(frozen=True)
class CalibrationParams:
    """How slocast calibrates: Mondrian group size, score window, ACI step and overflow gain,
    and how many outcomes a group needs before the model's bound replaces the user's request."""

    min_group_size: int = 30
    window: int = 500
    aci_step: float = 0.02
    overflow_gain: float = 0.0
    aci_experts: int = 1
    request_until: int = 30
    # Age weight of a score per newer one (a half-life of 34 outcomes).
    decay: float = 0.98
    # Mondrian cells by the model's own upper quantile too (1: groups only).
    level_bins: int = 3
    # A history-based bound next to the model's, chosen per group on cost (where the domain
    # keeps per-group history), and the business cost of a miss in that choice.
    history_expert: bool = True
    # Where the domain keeps it, the history stands on the job's size (a line through the
    # group's sizes and outcomes where that bounds tighter); off: on the group's 0.9 quantile.
    history_on_size: bool = True
    under_cost_ratio: float = 5.0
    # Its scores are relative to the group's own level, far less spread than the model's: a
    # group's own window serves from 10 scores, the fewest whose 90 % conformal quantile is
    # a finite-sample order statistic (9) and one more.
    history_min_group_size: int = 10
    # The share of the miss budget (1 - coverage) that capping bounds at the request plus its
    # grace may cost on past jobs (0: the grace is the largest overrun seen).
    request_limit_share: float = 0.05
    # A group never seen gets the largest share of its request that any group seen needed
    # (calibration/unseen.py); off: its whole request.
    unseen_share: bool = True
    # Room added to every bound, as a share of the mean outcome the model was fitted on (0:
    # none). A business score counts a missed job the same whatever its size but weighs waste
    # by size, so room that covers a small job's slight overrun costs next to nothing there;
    # on a large job it is a sliver. It raises coverage above the promise (docs/concepts.md).
    headroom: float = 0.0


class Served(NamedTuple):
    """What :meth:`CalibratedForecaster.bounds` served, and what the online updates need."""

    bounds: Bounds
    upper_z: np.ndarray  # the model's raw upper quantile, model scale
    # Jobs served their own request, or the share of it UnseenShare gives (None: no request).
    by_request: np.ndarray | None
    model_upper: np.ndarray  # the model's bound, request rules applied
    history_upper: np.ndarray | None  # the history expert's bound (NaN: no history)
    by_history: np.ndarray | None  # jobs served the history expert's bound, not the model's


class CalibratedForecaster:
    def __init__(
        self,
        base: QuantileForecaster,
        calibrator: ConformalUpper | None = None,
        aci: AdaptiveConformal | None = None,
        use_request: bool = True,
        online: bool = True,
        fit_base: bool = True,
        name: str = "slocast",
        request_until: int = 1,
        history: HistoryExpert | None = None,
        request_limit_share: float = 0.05,
        unseen_share: bool = False,
        headroom_share: float = 0.0,
    ) -> None:
        """``request_until``: where the request is a hard limit (its grace is 0: no more training
        jobs ran past it than the cap may miss), a group's jobs get it until that many of their
        outcomes are known; otherwise unseen groups get it (where the domain has a request).
        0: the model's bound serves every job.
        ``request_limit_share``: see :attr:`CalibrationParams.request_limit_share`.
        ``unseen_share``: a group never seen gets the share of its request that
        :class:`UnseenShare` learns, not all of it, and so does a thin group whose program ran
        in other groups.
        ``headroom_share``: see :attr:`CalibrationParams.headroom`."""
        if not 0.0 <= headroom_share <= 1.0:
            raise ConfigError(
                f"headroom must be in [0, 1] (a share of the mean outcome), got {headroom_share}",
                field="headroom",
            )
        self.name = name
        self.base = base
        self.spec = base.spec
        self.coverage = base.coverage
        self.calibrator = calibrator or ConformalUpper()
        self.aci = aci
        self.use_request = use_request and self.spec.user_request is not None
        self.online = online
        # False when several forecasters share one base model that the caller fits once.
        self.fit_base = fit_base
        # Bounds are capped at request + grace (None: no cap; set by fit).
        self.request_grace: float | None = None
        self.request_limit_share = request_limit_share
        self.request_until = request_until
        self.headroom_share = headroom_share
        # Added to every bound, in the target's unit (set by fit: the share times the mean).
        self.headroom = 0.0
        self.known_per_group: Counter[str] = Counter()
        self.scale_unseen = unseen_share
        self.unseen = UnseenShare(separator=self.spec.group_path)
        # Only where the domain keeps the history feature the expert reads.
        keeps = history is not None and history.column in self.spec.numeric
        self.history = history if keeps else None
        self._served_upper_z: dict[object, float] = {}
        # Jobs whose served bound was the request: ACI must not count them as the model's hits.
        self._served_request: set[object] = set()
        # Per job served: the model's bound, the history expert's, and 1.0 if the latter served.
        self._served_experts: dict[object, tuple[float, float, float]] = {}
        self._ready = False

    def _groups(self, frame: pd.DataFrame) -> np.ndarray:
        return group_keys(frame, self.spec)

    def _encoded_target(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.base.pipeline is not None
        return self.base.pipeline.encode_target(frame[self.spec.target].to_numpy(np.float64))

    def fit(self, train: pd.DataFrame) -> None:
        if self.fit_base or self.base.pipeline is None:
            self.base.fit(train)
        self.known_per_group = Counter(self._groups(train).tolist())
        self.unseen = UnseenShare(separator=self.spec.group_path)
        self._record_shares(train)
        outcome = train[self.spec.target].to_numpy(np.float64)
        self.headroom = self.headroom_share * max(float(np.nanmean(outcome)), 0.0)
        if self.spec.user_request is not None:
            request = train[self.spec.user_request].to_numpy(np.float64)
            miss_share = self.request_limit_share * (1.0 - self.coverage)
            self.request_grace = request_grace(outcome, request, miss_share)
        if self.history is not None:
            self.history.reset()
        self._ready = False

    def conformalize(self, calibration: pd.DataFrame) -> CalibratedForecaster:
        groups = self._groups(calibration)
        upper_z = self.base.predict_encoded(calibration)[1]
        scores = self._encoded_target(calibration) - upper_z
        self.calibrator.conformalize(scores, groups, upper_z)
        self._update_history(calibration, groups)
        if self.aci is not None:
            self.aci.set_scale(scores)
        self.known_per_group.update(groups.tolist())
        self._record_shares(calibration)
        self._ready = True
        return self

    def mark_conformalized(self) -> None:
        """Declare restored calibration state ready (bundles restore scores, not the slice)."""
        if self.base.pipeline is None or self.calibrator.count(POOLED) == 0:
            raise LifecycleError("restored forecaster has no fitted model or no scores")
        self._ready = True

    @property
    def level(self) -> float:
        return self.aci.level if self.aci is not None else self.coverage

    def level_for(self, coverage: float | None) -> float:
        """Quantile level for a requested coverage: ACI's drift correction applies to any
        coverage asked for, so bounds stay monotone in it and consistent with the default."""
        return level_for(self.aci, coverage, self.coverage)

    def predict(self, frame: pd.DataFrame, coverage: float | None = None) -> Bounds:
        """Bounds at the promised coverage (ACI-adjusted), or at ``coverage`` when given."""
        if self.base.pipeline is None:
            raise LifecycleError("CalibratedForecaster.predict called before fit")
        X = self.base.pipeline.transform(frame)
        request = (
            frame[self.spec.user_request].to_numpy(np.float64) if self.spec.user_request else None
        )
        served = self.bounds(X, self._groups(frame), request, coverage)
        if self.online:
            self._served_upper_z.update(zip(frame.index, served.upper_z.tolist(), strict=True))
            if served.by_request is not None:
                self._served_request.update(frame.index[served.by_request])
            if served.history_upper is not None and served.by_history is not None:
                kept = zip(
                    served.model_upper.tolist(),
                    served.history_upper.tolist(),
                    served.by_history.astype(np.float64).tolist(),
                    strict=True,
                )
                self._served_experts.update(zip(frame.index, kept, strict=True))
        return served.bounds

    def _fallback(
        self,
        groups: np.ndarray,
        request: np.ndarray,
        by_request: np.ndarray,
        coverage: float | None,
    ) -> np.ndarray:
        """What jobs served by their request get: the request, scaled by
        :meth:`UnseenShare.share` for groups never seen and by :meth:`UnseenShare.sibling_share`
        for thin groups whose program ran in other groups."""
        if not self.scale_unseen or not by_request.any():
            return request
        level = coverage or self.coverage

        def share_of(group: str) -> float:
            if self.known_per_group[group] == 0:
                return self.unseen.share(level, group)
            thin = self.unseen.sibling_share(level, group)
            return 1.0 if thin is None else thin

        served = groups[by_request].tolist()
        shares = {g: share_of(g) for g in dict.fromkeys(served)}
        scaled = np.array(request, np.float64)  # only the fallback jobs' entries are read
        scaled[by_request] *= [shares[g] for g in served]
        return scaled

    def _record_shares(self, done: pd.DataFrame) -> None:
        if self.spec.user_request is None or done.empty:
            return
        outcome = done[self.spec.target].to_numpy(np.float64)
        request = done[self.spec.user_request].to_numpy(np.float64)
        self.unseen.record(self._groups(done), outcome / request)

    def _falls_back(self, groups: np.ndarray, request: np.ndarray) -> np.ndarray:
        """Jobs served their own request: a request given, and a group never seen -- or, where
        the request is a hard limit (so it always covers), one still too thin to trust."""
        if not self.use_request:
            return np.zeros(len(groups), dtype=bool)
        until = self.request_until if self.request_is_cap else min(self.request_until, 1)
        thin = np.array([self.known_per_group[g] < until for g in groups], bool)
        return np.asarray(thin & np.isfinite(request), dtype=bool)

    def bounds(
        self,
        X: np.ndarray,
        groups: np.ndarray,
        request: np.ndarray | None,
        coverage: float | None = None,
        upper_only: bool = False,
    ) -> Served:
        """Calibrated bounds for a feature matrix, and what went into them (:class:`Served`).

        The one vectorised step shared by backtests and serving: model, conformal offset per
        group, ACI overflow, request fallback and cap, and the history expert where its group
        chose it. ``upper_only``: the point is not computed (NaN).
        """
        if not self._ready:
            raise LifecycleError("CalibratedForecaster.predict called before conformalize")
        level = self.level_for(coverage)
        point_z, upper_z = self.base.predict_matrix(X, upper_only)
        shift = self.calibrator.offsets(groups, level, upper_z)
        if self.aci is not None:
            shift += self.aci.overflow
        upper = self.base.decode(upper_z + shift)  # decoded bounds are never negative
        by_request = None
        if request is not None:
            by_request = self._falls_back(groups, request)  # all False without use_request
            if self.use_request:
                upper = np.where(
                    by_request, self._fallback(groups, request, by_request, coverage), upper
                )
                upper = np.maximum(self._capped(upper, request), 0.0)
        model_upper, history_upper, by_history = upper, None, None
        if self.history is not None and self.history.ready:
            assert self.base.pipeline is not None
            column = self.base.pipeline.numeric.index(self.history.column)
            history_z = self._history_z(X[:, column])
            offsets = self.history.offsets(groups, self.history.level_for(coverage, self.coverage))
            history_upper = self._capped(self.base.decode(history_z + offsets), request)
            # Each expert's ACI follows the misses its share of the choice adds (see observe).
            by_history = self.history.serves(groups, upper, history_upper)
            upper = np.where(by_history, history_upper, upper)
        retried = self._retried(X, request)
        if retried is not None and request is not None:
            # An earlier attempt ran out of what it had: the model's bound, learnt mostly from
            # first attempts, would send it out again. Its request is the scheduler's answer.
            upper = np.where(retried, np.maximum(upper, request), upper)
            by_request = retried if by_request is None else by_request | retried
            if by_history is not None:
                by_history = by_history & ~retried
        if self.headroom:
            upper = self._capped(upper + self.headroom, request)
        point = point_z if upper_only else np.minimum(self.base.decode(point_z), upper)
        return Served(
            Bounds(point, upper), upper_z, by_request, model_upper, history_upper, by_history
        )

    def _retried(self, X: np.ndarray, request: np.ndarray | None) -> np.ndarray | None:
        """Jobs on a later attempt (:attr:`DomainSpec.retry` over 1) that have a request to
        get; None where there are none."""
        pipeline = self.base.pipeline
        retry = self.spec.retry
        if request is None or not self.use_request or pipeline is None:
            return None
        if not retry or retry not in pipeline.numeric:
            return None
        retried = (X[:, pipeline.numeric.index(retry)] > 1) & np.isfinite(request)
        return retried if retried.any() else None

    @property
    def request_is_cap(self) -> bool:
        """Whether the request is a hard limit: its grace is 0, no more training jobs ran past
        it than the cap may miss (a task or two that a node did not hold to its memory must not
        end the thin groups' fallback)."""
        return self.request_grace == 0.0

    @property
    def cap_grace(self) -> float | None:
        """The grace past the request at which the served bounds stop (None: they do not)."""
        return self.request_grace if self.use_request else None

    def _capped(self, upper: np.ndarray, request: np.ndarray | None) -> np.ndarray:
        """Bounds capped at the request plus the grace past jobs took beyond theirs."""
        grace = self.cap_grace
        if request is None or grace is None:
            return upper
        limit = request + grace
        return np.where(np.isfinite(request), np.minimum(upper, limit), upper)

    def _history_z(self, history: np.ndarray) -> np.ndarray:
        """The history feature on the model's scale (NaN where a job has no history)."""
        assert self.base.pipeline is not None
        return self.base.pipeline.encode_target(np.asarray(history, np.float64))

    def _update_history(self, done: pd.DataFrame, groups: np.ndarray) -> None:
        """The history expert's scores ``y - H`` (model scale) of jobs that had a history."""
        if self.history is None:
            return
        history = done[self.history.column].to_numpy(np.float64)
        scores = self._encoded_target(done) - self._history_z(history)
        has = np.isfinite(scores)
        self.history.update(scores[has], groups[has])

    def observe(self, done: pd.DataFrame, served: Bounds) -> None:
        """Learn from finished jobs (``served.upper`` is NaN for jobs never served here)."""
        if done.empty or not self.online:
            return
        stored = np.array([self._served_upper_z.pop(i, np.nan) for i in done.index])
        missing = np.isnan(stored)
        if missing.any():
            stored[missing] = self.base.predict_encoded(done[missing])[1]
        groups = self._groups(done)
        scores = self._encoded_target(done) - stored
        # Before the new scores join the windows: the miscoverage each outcome needed. Only
        # experts learn from it; classic ACI follows the served misses alone.
        needed = None
        if self.aci is not None and self.aci.experts > 1:
            top = self.calibrator.offsets(groups, self.aci.max_level, stored)
            exceedance = self.calibrator.exceedance(scores, groups, stored)
            needed = self.aci.needed(exceedance, scores - top)
        self.calibrator.update(scores, groups, stored)
        self.known_per_group.update(groups.tolist())
        self._record_shares(done)
        y = done[self.spec.target].to_numpy(np.float64)
        # Each expert's ACI follows the misses of the bounds it served: a choice that sends a
        # group's easy jobs to one expert must not let the other's level relax on them.
        by_history = np.zeros(len(done), dtype=bool)
        if self.history is not None:
            self._update_history(done, groups)
            kept = [self._served_experts.pop(i, (np.nan, np.nan, 0.0)) for i in done.index]
            model_upper, history_upper, chosen = np.array(kept, np.float64).reshape(-1, 3).T
            both = np.isfinite(model_upper) & np.isfinite(history_upper)
            self.history.record(groups[both], y[both], model_upper[both], history_upper[both])
            by_history = chosen > 0
            if self.history.aci is not None:
                self.history.aci.update((y[by_history] > history_upper[by_history]).tolist())
        if self.aci is not None:
            # Nor what the request covered: that says nothing of the model's level.
            by_request = np.array([i in self._served_request for i in done.index], dtype=bool)
            self._served_request.difference_update(done.index)
            was_served = np.isfinite(served.upper) & ~by_request & ~by_history
            missed = y[was_served] > served.upper[was_served]
            self.aci.update(
                missed.tolist(),
                None if needed is None else needed[was_served].tolist(),
                # The history expert's learner keeps per-job rounds: see docs/concepts.md.
                groups=groups[was_served] if self.spec.group else None,
            )


def build_slocast(
    base: QuantileForecaster, params: CalibrationParams, fit_base: bool = True
) -> CalibratedForecaster:
    """The slocast method: Mondrian CQR over sliding windows + ACI + request fallback, and the
    history expert where the domain keeps per-group history."""

    def aci() -> AdaptiveConformal | None:
        if params.aci_step <= 0:
            return None
        return AdaptiveConformal(
            base.coverage,
            params.aci_step,
            overflow_gain=params.overflow_gain,
            experts=params.aci_experts,
        )

    column = history_base_column(base.spec, params.history_on_size)
    history = (
        HistoryExpert(
            column,
            ConformalUpper(params.history_min_group_size, params.window, params.decay),
            params.under_cost_ratio,
            aci=aci(),
        )
        if params.history_expert and column
        else None
    )
    return CalibratedForecaster(
        base,
        ConformalUpper(params.min_group_size, params.window, params.decay, params.level_bins),
        aci(),
        fit_base=fit_base,
        request_until=params.request_until,
        history=history,
        request_limit_share=params.request_limit_share,
        unseen_share=params.unseen_share,
        headroom_share=params.headroom,
    )


def request_grace(outcome: np.ndarray, request: np.ndarray, miss_share: float) -> float:
    """The least grace past the request that at most ``miss_share`` of past jobs ran beyond.

    A scheduler kills a job some seconds after its requested time, and a memory cgroup at the
    request itself: capping a bound at request + grace then costs at most ``miss_share`` of
    jobs, while a model's bound past that limit is pure waste. 0 where no job exceeded its
    request; where requests are no limit at all, the grace is so wide the cap never binds.

    >>> y, asked = np.array([5.0, 9.0, 10.5, 12.0, 3.0]), np.full(5, 10.0)
    >>> request_grace(y, asked, 0.2)  # one job in five may run past 10 + 0.5
    0.5
    >>> request_grace(y, asked, 0.0)  # none may: the largest overrun
    2.0
    >>> request_grace(np.array([1.0, 4.0]), np.array([2.0, 8.0]), 0.0)
    0.0
    """
    slack = np.asarray(outcome, np.float64) - np.asarray(request, np.float64)
    slack = np.sort(slack[np.isfinite(slack)])
    if len(slack) == 0:
        return 0.0
    allowed = min(int(miss_share * len(slack)), len(slack) - 1)
    return max(0.0, float(slack[len(slack) - 1 - allowed]))


def fit_on_history(
    frame: pd.DataFrame,
    base: QuantileForecaster,
    params: CalibrationParams,
    calibration_fraction: float,
    rounds: str | None = None,
) -> tuple[CalibratedForecaster, int, int]:
    """Fit on the older rows and calibrate on the latest ``calibration_fraction`` by time.

    The first half of the calibration slice gives the conformal scores; the newer half is then
    replayed in time order (predict, then observe), so the windows and the ACI level end where
    the data ends -- a model published in the middle of a drift starts out already adjusted
    to it. The replay hands outcomes over in the rounds they became known in
    (:func:`release_rounds`): rows with equal ``rounds`` values together (default: equal
    ``known_at``). Returns the forecaster and the numbers of training and calibration rows.
    """
    spec = base.spec
    if frame.empty:
        raise EmptyDataError("no jobs to fit on", field="dataset")
    frame = frame.sort_values(spec.time, kind="stable")
    n_cal = max(1, round(len(frame) * calibration_fraction))
    train, calibration = frame.iloc[:-n_cal], frame.iloc[-n_cal:]
    # Only jobs that had finished when calibration starts can be learned from.
    train = train[train[spec.known_at] < calibration[spec.time].iloc[0]]
    forecaster = build_slocast(base, params)
    forecaster.fit(train)
    first, recent = calibration.iloc[: max(1, n_cal // 2)], calibration.iloc[max(1, n_cal // 2) :]
    forecaster.conformalize(first)
    for chunk in release_rounds(recent[rounds or spec.known_at].to_numpy(np.float64), 50):
        rows = recent.iloc[chunk]
        forecaster.observe(rows, forecaster.predict(rows))
    return forecaster, len(train), len(calibration)


def release_rounds(known: np.ndarray, most: int) -> list[np.ndarray]:
    """Positions of time-ordered jobs, split into the rounds in which a replay hands their
    outcomes to ``observe``: jobs whose outcomes became known at one moment (``known``; one
    ingest call) stay in one round, and with ``most`` moments or more, consecutive ones are
    merged into ``most`` rounds of about equal size.

    ACI weighs a round by the square root of its size, so a replay cut finer than the rounds
    that come live moves the level further on the same outcomes: a model would start serving
    from a level its live updates would not have reached.

    >>> [r.tolist() for r in release_rounds(np.array([5.0, 5.0, 5.0, 9.0, 9.0, 12.0]), 50)]
    [[0, 1, 2], [3, 4], [5]]
    >>> [len(r) for r in release_rounds(np.arange(10.0), 4)]  # every job its own moment
    [3, 3, 2, 2]
    """
    positions = np.arange(len(known))
    moments = np.flatnonzero(known[1:] != known[:-1]) + 1  # where a new moment begins
    if len(moments) < most:
        return np.split(positions, moments)
    even = np.cumsum([len(c) for c in np.array_split(positions, most)])[:-1]
    # Each cut at the first moment at or after an even one's place.
    cuts = np.unique(moments[np.minimum(np.searchsorted(moments, even), len(moments) - 1)])
    return np.split(positions, cuts)
