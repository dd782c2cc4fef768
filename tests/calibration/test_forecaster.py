"""The slocast method's request fallback: thin groups get the user's own request until enough
of their outcomes are known, and ACI learns only from the bounds the model served."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from slocast.calibration.forecaster import (
    CalibratedForecaster,
    CalibrationParams,
    build_slocast,
    release_rounds,
)
from slocast.datasets.history import add_group_history
from slocast.errors import ConfigError
from slocast.models import GBMConfig, QuantileForecaster
from slocast.schema import DomainSpec
from tests.conftest import SYNTH_SPEC, many_groups_frame, synthetic_frame


def _calibrated(
    frame: pd.DataFrame, params: CalibrationParams, spec: DomainSpec = SYNTH_SPEC
) -> CalibratedForecaster:
    """slocast fitted on the first 800 jobs and conformalized on the next 200."""
    base = QuantileForecaster(spec, 0.9, config=GBMConfig(n_estimators=40))
    forecaster = build_slocast(base, params)
    forecaster.fit(frame.iloc[:800])
    forecaster.conformalize(frame.iloc[800:1000])
    return forecaster


def _fitted(
    request_until: int, request_is_a_limit: bool = True
) -> tuple[CalibratedForecaster, pd.DataFrame]:
    frame = synthetic_frame(1200)
    if not request_is_a_limit:
        frame.loc[:99, "request"] = frame.loc[:99, "y"] / 2  # some jobs ran past their request
    forecaster = _calibrated(frame, CalibrationParams(request_until=request_until))
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


def test_a_group_with_nothing_on_record_gets_the_lower_of_the_two_bounds() -> None:
    """Until a group has a finished job on record, the pool's evidence (other groups') does
    not choose for it: each of its jobs gets the lower of the model's and the history's bound.
    Once it has a record, all its jobs take the expert that cost less on it."""
    spec = replace(SYNTH_SPEC, user_request=None)
    frame, spec = add_group_history(synthetic_frame(1200).drop(columns="request"), spec, "g")
    forecaster = _calibrated(frame, CalibrationParams(), spec)
    base = forecaster.base
    jobs = frame.iloc[1000:1060].assign(g="new")
    # The new process's recent outcomes: some of its jobs ask far less than the model says.
    jobs["g_p90_y"] = np.where(np.arange(len(jobs)) % 2 == 0, 0.5, 50.0)
    assert base.pipeline is not None
    served = forecaster.bounds(base.pipeline.transform(jobs), np.array(["new"] * 60), None)
    assert served.history_upper is not None and served.by_history is not None
    lower = np.minimum(served.model_upper, served.history_upper)
    assert np.array_equal(served.bounds.upper, lower)
    assert 0 < served.by_history.sum() < len(jobs)  # each job its own lower bound
    forecaster.observe(jobs.iloc[:10], forecaster.predict(jobs.iloc[:10]))
    after = forecaster.bounds(base.pipeline.transform(jobs), np.array(["new"] * 60), None)
    assert after.by_history is not None
    assert len(set(after.by_history.tolist())) == 1  # now one choice for the whole group


def _killed_past_the_limit(grace: float, overrun: float) -> pd.DataFrame:
    """Jobs whose request is a time limit the scheduler enforces ``grace`` late: the longest
    30 % end between the limit and limit + grace, and one job it let run ``overrun`` past."""
    frame = synthetic_frame(1200)
    limit = float(np.quantile(frame["y"], 0.7))
    killed = frame["y"] > limit
    late = np.random.default_rng(1).uniform(0.0, grace, int(killed.sum()))
    frame.loc[killed, "y"] = limit + late
    frame.loc[10, "y"] = limit + overrun
    return frame.assign(request=limit)


def test_bounds_stop_at_the_request_plus_the_grace_jobs_took_past_it() -> None:
    frame = _killed_past_the_limit(grace=0.5, overrun=100.0)
    graces = {}
    for share in (0.05, 0.0):
        forecaster = _calibrated(frame, CalibrationParams(request_limit_share=share))
        assert not forecaster.request_is_cap  # jobs did run past their request
        graces[share] = forecaster.request_grace
        if share:
            limit = frame["request"].to_numpy()[1000:] + forecaster.request_grace
            upper = forecaster.predict(frame.iloc[1000:]).upper
            assert (upper <= limit).all() and np.isclose(upper, limit).any()
    # 0.05 of the 10 % miss budget: 4 of 800 jobs may run past the cap, not the overrun alone.
    assert graces[0.05] is not None and 0.4 < graces[0.05] < 0.5
    assert graces[0.0] == 100.0  # no job may: the cap sits above the largest overrun


def test_a_request_no_job_exceeded_caps_bounds_at_itself() -> None:
    forecaster, jobs = _fitted(request_until=0)
    assert forecaster.request_is_cap and forecaster.request_grace == 0.0
    upper = forecaster.predict(jobs).upper
    assert (upper <= jobs["request"].to_numpy()).all()


def test_a_request_a_job_or_two_ran_past_is_still_a_hard_limit() -> None:
    """Two of 800 tasks past their memory (a node that did not enforce it) are within what the
    cap may miss: thin groups keep their request, and bounds stop at it."""
    frame = synthetic_frame(1200)
    frame.loc[[3, 7], "y"] = frame["request"][[3, 7]] * 1.5
    forecaster = _calibrated(frame, CalibrationParams(request_until=5))
    assert forecaster.request_grace == 0.0 and forecaster.request_is_cap
    jobs = frame.iloc[1000:].assign(g="new")
    forecaster.observe(jobs.iloc[:4], forecaster.predict(jobs.iloc[:4]))
    served = forecaster.predict(jobs.iloc[10:20]).upper
    assert np.array_equal(served, jobs["request"].to_numpy()[10:20])  # 4 outcomes of 5 known


def test_headroom_adds_a_share_of_the_mean_outcome_up_to_the_request() -> None:
    frame = synthetic_frame(1200)
    jobs = frame.iloc[1000:].copy()
    plain = _calibrated(frame, CalibrationParams(request_until=0)).predict(jobs).upper
    roomy = _calibrated(frame, CalibrationParams(request_until=0, headroom=0.3))
    room = 0.3 * frame["y"].iloc[:800].mean()  # the mean outcome the model was fitted on
    assert roomy.headroom == pytest.approx(room)
    jobs.loc[jobs.index[:20], "request"] = plain[:20] + room / 2  # requests the room would pass
    upper, request = roomy.predict(jobs).upper, jobs["request"].to_numpy()
    np.testing.assert_allclose(upper, np.minimum(plain + room, request))  # the request caps it
    assert (upper == request).any() and (upper > plain).any()
    with pytest.raises(ConfigError) as info:
        build_slocast(QuantileForecaster(SYNTH_SPEC, 0.9), CalibrationParams(headroom=1.5))
    assert info.value.field == "headroom"


def test_release_rounds_merge_moments_without_splitting_one() -> None:
    """200 ingest calls of 1-5 rows, replayed in at most 50 rounds: every row once, in order,
    and the rows of one call never across two rounds."""
    known = np.repeat(np.arange(200.0), np.random.default_rng(0).integers(1, 6, 200))
    rounds = release_rounds(known, 50)
    assert 40 <= len(rounds) <= 50
    assert np.concatenate(rounds).tolist() == list(range(len(known)))
    assert all(known[a[-1]] != known[b[0]] for a, b in itertools.pairwise(rounds))


def test_a_group_never_seen_gets_the_share_of_its_request_the_groups_seen_needed() -> None:
    frame = many_groups_frame()
    forecaster = _calibrated(frame, CalibrationParams(request_until=5))
    shares = frame["y"][:1000] / frame["request"][:1000]
    largest = shares.groupby(frame["g"][:1000]).max()
    assert len(largest) == 20 and largest.max() < 1.0
    # 20 groups: a new one needs more than all of them with probability 1/21 at most.
    assert forecaster.unseen.share(0.9) == pytest.approx(largest.max())
    assert forecaster.unseen.share(0.96) == 1.0  # that takes 24 groups
    jobs = frame.iloc[1000:1010].assign(g="new")
    request = jobs["request"].to_numpy()
    np.testing.assert_allclose(forecaster.predict(jobs).upper, largest.max() * request)
    # Seen once, it is a thin group: its request until 5 outcomes are known.
    forecaster.observe(jobs.iloc[:1], forecaster.predict(jobs.iloc[:1]))
    np.testing.assert_array_equal(forecaster.predict(jobs.iloc[1:]).upper, request[1:])
    whole = _calibrated(frame, CalibrationParams(request_until=5, unseen_share=False))
    np.testing.assert_array_equal(whole.predict(jobs).upper, request)


def test_too_few_groups_or_a_share_past_the_request_serve_the_whole_request() -> None:
    forecaster = _fitted(request_until=5)[0]  # three groups: 3/4 < 0.9
    assert forecaster.unseen.share(0.9) == 1.0
    frame = many_groups_frame()
    frame.loc[:999, "request"] = frame["y"][:1000] / 2  # every group ran past its request
    forecaster = _calibrated(frame, CalibrationParams(request_until=5))
    assert forecaster.unseen.share(0.9) == 1.0
