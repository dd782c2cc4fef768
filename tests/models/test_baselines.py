from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slocast.errors import ConfigError
from slocast.models import (
    Bounds,
    DecayingHistogram,
    LastValueBaseline,
    UserRequestBaseline,
    VPABaseline,
)
from slocast.schema import get_domain
from tests.conftest import SYNTH_SPEC, synthetic_frame


def test_user_request_is_the_request() -> None:
    frame = synthetic_frame(20)
    bounds = UserRequestBaseline(SYNTH_SPEC).predict(frame)
    np.testing.assert_array_equal(bounds.upper, frame["request"])
    with pytest.raises(ConfigError):
        UserRequestBaseline(get_domain("llm-ttft"))


def test_histogram_decays_old_samples() -> None:
    hist = DecayingHistogram(half_life=1.0)
    for t in range(5):
        hist.add(1000.0, float(t))
    for t in range(20, 25):
        hist.add(10.0, float(t))
    # Twenty half-lives later the old samples weigh ~1e-6 of the new ones.
    assert hist.percentile(0.9) == pytest.approx(10.0, rel=0.06)


def test_vpa_is_p90_plus_margin_per_group_and_pooled_for_new_groups() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 100, 1000)
    frame = pd.DataFrame(
        {"g": ["a"] * 1000, "y": values, "known_at": np.zeros(1000), "x1": 0.0, "x2": 0.0}
    )
    vpa = VPABaseline(SYNTH_SPEC, half_life=1e9)
    vpa.fit(frame)
    bounds = vpa.predict(pd.DataFrame({"g": ["a", "new"]}))
    expected = np.percentile(values, 90) * 1.15
    assert bounds.upper[0] == pytest.approx(expected, rel=0.06)
    assert bounds.upper[1] == bounds.upper[0]  # pooled == group a here


def test_last_value_follows_observations_in_known_order() -> None:
    last = LastValueBaseline(SYNTH_SPEC)
    last.fit(pd.DataFrame({"g": ["a", "a"], "y": [5.0, 7.0], "known_at": [2.0, 1.0]}))
    assert last.predict(pd.DataFrame({"g": ["a"]})).upper[0] == 5.0  # the later-known one
    last.observe(
        pd.DataFrame({"g": ["b"], "y": [9.0], "known_at": [3.0]}), Bounds(np.zeros(1), np.zeros(1))
    )
    assert last.predict(pd.DataFrame({"g": ["b", "zzz"]})).upper.tolist() == [9.0, 9.0]
