"""slocast's calibrated forecaster: quantile GBM + Mondrian CQR + ACI + request fallback.

Lifecycle: ``fit`` (past rows) -> ``conformalize`` (the next slice in time) -> ``predict`` /
``observe`` (online). ``predict`` before ``conformalize`` raises :class:`LifecycleError`.

- The GBM's upper quantile is shifted by the conformal quantile of signed scores
  ``y - upper_hat`` on the model's scale, per group where the group has enough scores.
- ``observe`` adds the scores of jobs that just finished -- computed from the prediction that
  was served for them, so they are always out of sample -- to sliding windows that follow
  drift, and feeds their hit/miss to ACI, which moves the level used for the next bounds.
- Where the domain has a user request: a job whose group has no known outcome yet gets the
  request (what it would have had without slocast), and when no past job ever exceeded its
  request (a hard limit, like a memory cgroup) bounds are capped at the request.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from slocast.calibration.aci import AdaptiveConformal
from slocast.calibration.conformal import ConformalUpper
from slocast.errors import LifecycleError
from slocast.features import group_keys
from slocast.models.base import Bounds
from slocast.models.quantile import QuantileForecaster
from slocast.schema import POOLED

__all__ = ["CalibratedForecaster", "CalibrationParams", "build_slocast", "fit_on_history"]


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
    ) -> None:
        """``request_until``: where the request is a hard limit (no training job exceeded it), a
        group's jobs get it until that many of their outcomes are known; otherwise unseen groups
        get it (where the domain has a request). 0: the model's bound serves every job."""
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
        self.request_is_cap = False
        self.request_until = request_until
        self.known_per_group: Counter[str] = Counter()
        self._served_upper_z: dict[object, float] = {}
        # Jobs whose served bound was the request: ACI must not count them as the model's hits.
        self._served_request: set[object] = set()
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
        if self.spec.user_request is not None:
            exceeded = train[self.spec.target] > train[self.spec.user_request]
            self.request_is_cap = not bool(exceeded.any())
        self._ready = False

    def conformalize(self, calibration: pd.DataFrame) -> CalibratedForecaster:
        groups = self._groups(calibration)
        upper_z = self.base.predict_encoded(calibration)[1]
        scores = self._encoded_target(calibration) - upper_z
        self.calibrator.conformalize(scores, groups, upper_z)
        if self.aci is not None:
            self.aci.set_scale(scores)
        self.known_per_group.update(groups.tolist())
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
        if coverage is None:
            return self.level
        if self.aci is None:
            return coverage
        shifted = coverage + (self.aci.level - self.coverage)
        return min(self.aci.max_level, max(self.aci.min_level, shifted))

    def predict(self, frame: pd.DataFrame, coverage: float | None = None) -> Bounds:
        """Bounds at the promised coverage (ACI-adjusted), or at ``coverage`` when given."""
        if self.base.pipeline is None:
            raise LifecycleError("CalibratedForecaster.predict called before fit")
        X = self.base.pipeline.transform(frame)
        request = (
            frame[self.spec.user_request].to_numpy(np.float64) if self.spec.user_request else None
        )
        bounds, upper_z, by_request = self.bounds(X, self._groups(frame), request, coverage)
        if self.online:
            self._served_upper_z.update(zip(frame.index, upper_z.tolist(), strict=True))
            if by_request is not None:
                self._served_request.update(frame.index[by_request])
        return bounds

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
    ) -> tuple[Bounds, np.ndarray, np.ndarray | None]:
        """Calibrated bounds for a feature matrix, the raw upper quantile on the model scale,
        and which jobs were served their request (None: no request given).

        The one vectorised step shared by backtests and serving: model, conformal offset per
        group, ACI overflow, request fallback and cap. ``upper_only``: the point is not
        computed (NaN).
        """
        if not self._ready:
            raise LifecycleError("CalibratedForecaster.predict called before conformalize")
        point_z, upper_z = self.base.predict_matrix(X, upper_only)
        shift = self.calibrator.offsets(groups, self.level_for(coverage), upper_z)
        if self.aci is not None:
            shift += self.aci.overflow
        upper = self.base.decode(upper_z + shift)  # decoded bounds are never negative
        by_request = None
        if request is not None:
            by_request = self._falls_back(groups, request)  # all False without use_request
            if self.use_request:
                upper = np.where(by_request, request, upper)
                if self.request_is_cap:
                    upper = np.where(np.isfinite(request), np.minimum(upper, request), upper)
                upper = np.maximum(upper, 0.0)
        point = point_z if upper_only else np.minimum(self.base.decode(point_z), upper)
        return Bounds(point, upper), upper_z, by_request

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
        if self.aci is not None:
            by_request = [i in self._served_request for i in done.index]
            self._served_request.difference_update(done.index)
            was_served = np.isfinite(served.upper) & ~np.array(by_request, dtype=bool)
            missed = (
                done[self.spec.target].to_numpy(np.float64)[was_served] > served.upper[was_served]
            )
            self.aci.update(
                missed.tolist(), None if needed is None else needed[was_served].tolist()
            )


def build_slocast(
    base: QuantileForecaster, params: CalibrationParams, fit_base: bool = True
) -> CalibratedForecaster:
    """The slocast method: Mondrian CQR over sliding windows + ACI + request fallback."""
    aci = (
        AdaptiveConformal(
            base.coverage,
            params.aci_step,
            overflow_gain=params.overflow_gain,
            experts=params.aci_experts,
        )
        if params.aci_step > 0
        else None
    )
    return CalibratedForecaster(
        base,
        ConformalUpper(params.min_group_size, params.window, params.decay, params.level_bins),
        aci,
        fit_base=fit_base,
        request_until=params.request_until,
    )


def fit_on_history(
    frame: pd.DataFrame,
    base: QuantileForecaster,
    params: CalibrationParams,
    calibration_fraction: float,
) -> tuple[CalibratedForecaster, int, int]:
    """Fit on the older rows and calibrate on the latest ``calibration_fraction`` by time.

    The first half of the calibration slice gives the conformal scores; the newer half is then
    replayed in time order (predict, then observe), so the windows and the ACI level end where
    the data ends -- a model published in the middle of a drift starts out already adjusted
    to it. Returns the forecaster and the numbers of training and calibration rows.
    """
    spec = base.spec
    frame = frame.sort_values(spec.time, kind="stable")
    n_cal = max(1, round(len(frame) * calibration_fraction))
    train, calibration = frame.iloc[:-n_cal], frame.iloc[-n_cal:]
    # Only jobs that had finished when calibration starts can be learned from.
    train = train[train[spec.known_at] < calibration[spec.time].iloc[0]]
    forecaster = build_slocast(base, params)
    forecaster.fit(train)
    first, recent = calibration.iloc[: max(1, n_cal // 2)], calibration.iloc[max(1, n_cal // 2) :]
    forecaster.conformalize(first)
    for chunk in np.array_split(np.arange(len(recent)), min(len(recent), 50)):
        rows = recent.iloc[chunk]
        forecaster.observe(rows, forecaster.predict(rows))
    return forecaster, len(train), len(calibration)
