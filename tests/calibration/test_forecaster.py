"""The slocast method's request fallback: thin groups get the user's own request until enough
of their outcomes are known, and ACI learns only from the bounds the model served."""

from __future__ import annotations

import numpy as np
import pandas as pd

from slocast.calibration.forecaster import CalibratedForecaster, CalibrationParams, build_slocast
from slocast.models import GBMConfig, QuantileForecaster
from tests.conftest import SYNTH_SPEC, synthetic_frame


def _fitted(
    request_until: int, request_is_a_limit: bool = True
) -> tuple[CalibratedForecaster, pd.DataFrame]:
    frame = synthetic_frame(1200)
    if not request_is_a_limit:
        frame.loc[:99, "request"] = frame.loc[:99, "y"] / 2  # some jobs ran past their request
    base = QuantileForecaster(SYNTH_SPEC, 0.9, config=GBMConfig(n_estimators=40))
    forecaster = build_slocast(base, CalibrationParams(request_until=request_until))
    forecaster.fit(frame.iloc[:800])
    forecaster.conformalize(frame.iloc[800:1000])
    newcomer = frame.iloc[1000:].copy()
    newcomer["g"] = "new"  # a process never seen in training
    return forecaster, newcomer


def test_a_thin_group_gets_its_request_until_enough_outcomes_are_known() -> None:
    forecaster, jobs = _fitted(request_until=5)
    request = jobs["request"].to_numpy()
    assert np.array_equal(forecaster.predict(jobs.iloc[:10]).upper, request[:10])
    forecaster.observe(jobs.iloc[:4], forecaster.predict(jobs.iloc[:4]))
    assert np.array_equal(forecaster.predict(jobs.iloc[10:20]).upper, request[10:20])
    forecaster.observe(jobs.iloc[4:5], forecaster.predict(jobs.iloc[4:5]))  # the fifth outcome
    model = forecaster.predict(jobs.iloc[10:20]).upper
    assert (model < request[10:20]).all() and (model > 0).all()


def test_a_request_jobs_have_exceeded_serves_only_unseen_groups() -> None:
    forecaster, jobs = _fitted(request_until=5, request_is_a_limit=False)
    request = jobs["request"].to_numpy()
    assert np.array_equal(forecaster.predict(jobs.iloc[:10]).upper, request[:10])
    forecaster.observe(jobs.iloc[:1], forecaster.predict(jobs.iloc[:1]))
    assert (forecaster.predict(jobs.iloc[10:20]).upper < request[10:20]).all()


def test_request_until_zero_serves_the_model_bound_to_unseen_groups() -> None:
    for request_is_a_limit in (True, False):
        forecaster, jobs = _fitted(request_until=0, request_is_a_limit=request_is_a_limit)
        upper = forecaster.predict(jobs.iloc[:10]).upper
        assert (upper < jobs["request"].to_numpy()[:10]).all() and (upper > 0).all()


def test_aci_learns_only_from_bounds_the_model_served() -> None:
    forecaster, jobs = _fitted(request_until=1000)
    assert forecaster.aci is not None
    level = forecaster.aci.level
    # Every job here got its request, which covers it: no evidence about the model's level.
    forecaster.observe(jobs.iloc[:100], forecaster.predict(jobs.iloc[:100]))
    assert forecaster.aci.level == level
    known, _ = _fitted(request_until=1)
    assert known.aci is not None
    seen = jobs.assign(g="a")
    known.observe(seen.iloc[:100], known.predict(seen.iloc[:100]))
    assert known.aci.level != level  # bounds the model served do move it


def test_one_groups_misses_finishing_together_move_the_level_as_one() -> None:
    """A round of misses from one group moves ACI less than the same misses spread over groups."""
    levels = []
    for spread in (False, True):
        forecaster, jobs = _fitted(request_until=1)
        assert forecaster.aci is not None
        seen = jobs.iloc[:60].assign(g="a")
        if spread:
            seen["g"] = np.where(np.arange(len(seen)) % 2 == 0, "a", "b")
        served = forecaster.predict(seen)
        seen["y"] = served.upper * 2.0  # every job ran past its bound
        forecaster.observe(seen, served)
        levels.append(forecaster.aci.level)
    assert levels[1] > levels[0] > 0.9
