"""CPU compensator bounds, the smoothing formula and CV propagation, KL placement properties."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from slocast.decisions.compensator import compensate_cpu
from slocast.decisions.hedge import HedgeForecaster
from slocast.decisions.placement import KeysManager, kl_dispersed_choice, place_stage
from slocast.decisions.smoother import beta, propagate_cv, smooth_replicas
from slocast.errors import ConfigError


def test_compensator_stays_within_1_to_16_cores() -> None:
    out = compensate_cpu(12.0, 100.0, lambda c: 10.0 / c, max_rounds=5)
    assert out.cores <= 16.0 and out.rounds <= 5
    low = compensate_cpu(0.2, 0.5, lambda c: 1.0 / c)
    assert low.cores >= 1.0


def test_compensator_steps_and_stops_when_gains_vanish() -> None:
    calls: list[float] = []

    def flat(cores: float) -> float:
        calls.append(cores)
        return 1.0  # more CPU buys nothing

    out = compensate_cpu(4.0, 8.0, flat)
    assert out.cores == 4.0 and out.rounds == 1  # first step gained < 5 %: not kept
    assert calls == [4.0, 5.0]  # increment = max(0.5, 0.25 * (8 - 4)) = 1
    # Close to the prediction the increment is its 0.5-core floor; 5 rounds at most.
    small = compensate_cpu(4.0, 4.5, lambda c: 1.0 / c)
    assert (small.cores, small.rounds) == (6.5, 5)
    with pytest.raises(ConfigError):
        compensate_cpu(2.0, 4.0, flat, min_cores=8.0, max_cores=4.0)


def test_beta_is_monotone_between_a_and_1() -> None:
    values = [beta(cv, a=0.3, cv_threshold=1.0) for cv in np.linspace(0, 10, 50)]
    assert values == sorted(values)
    assert 0.3 < values[0] < values[-1] < 1.0
    assert beta(1.0, a=0.3, cv_threshold=1.0) == pytest.approx(0.3 + 0.7 * 0.5)


def test_cv_propagates_downstream_and_merges_by_rate() -> None:
    graph = {"a": ["c"], "b": ["c"], "c": []}
    cvs = propagate_cv(graph, {"a": 3.0, "b": 0.0, "c": 0.0}, {"a": 1.0, "b": 3.0, "c": 4.0})
    # c receives 1/4 of its traffic from the bursty stage: CV^2 = 0.25 * 9.
    assert cvs["c"] == pytest.approx(1.5)
    with pytest.raises(ValueError):
        propagate_cv({"a": ["b"], "b": ["a"]}, {}, {})


def test_smoothing_pulls_smooth_stages_to_neighbours_and_leaves_bursty_ones() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": []}
    corrected = {"a": 4.0, "b": 20.0, "c": 4.0}
    calm = smooth_replicas(graph, corrected, {"a": 0.1, "b": 0.1, "c": 0.1})
    bursty = smooth_replicas(graph, corrected, {"a": 0.1, "b": 8.0, "c": 0.1})
    assert calm["b"] < bursty["b"] <= 20
    assert calm["a"] > 4  # pulled up towards b


def _weights_after(values: np.ndarray) -> dict[str, float]:
    forecaster = HedgeForecaster()
    assert np.isnan(forecaster.predict())
    for value in values:
        forecaster.update(float(value))
    weights = forecaster.weights()
    assert sum(weights.values()) == pytest.approx(1.0)
    return weights


def test_online_experts_follow_the_smoother_that_fits_the_series() -> None:
    rng = np.random.default_rng(0)
    # A random walk: the last value is the best forecast of the next one.
    walk = _weights_after(np.cumsum(rng.normal(0.0, 1.0, 2000)))
    assert max(walk, key=walk.__getitem__) == "last"
    # Noise around a level: a long average is, and the last value is the worst.
    level = _weights_after(5.0 + rng.normal(0.0, 1.0, 2000))
    assert max(level, key=level.__getitem__) == "ewma5"
    assert level["last"] < 0.01


def test_online_forecast_of_a_constant_is_the_constant_and_bad_settings_fail() -> None:
    forecaster = HedgeForecaster()
    for _ in range(10):
        forecaster.update(3.0)
    assert forecaster.predict() == pytest.approx(3.0)
    for bad in ({"eta": 0.0}, {"discount": 1.5}, {"spans": (0,)}):
        with pytest.raises(ValueError):
            HedgeForecaster(**bad)  # type: ignore[arg-type]


def test_keys_manager_never_exceeds_its_cap() -> None:
    keys = KeysManager({"s": 100.0}, cap=0.85)
    rng = np.random.default_rng(0)
    for i in range(200):
        keys.load("s", f"k{i % 30}", float(rng.uniform(5, 40)))
        assert keys.used("s") <= 85.0 + 1e-9
    assert keys.evictions > 0
    assert not keys.load("s", "huge", 90.0)


def test_kl_placement_spreads_critical_stages_by_capacity() -> None:
    capacity = {"big": 3.0, "small1": 1.0, "small2": 1.0}
    counts: dict[str, int] = {}
    for _ in range(50):
        server = kl_dispersed_choice(counts, capacity)
        counts[server] = counts.get(server, 0) + 1
    assert counts["big"] == 30 and counts["small1"] == counts["small2"] == 10


def test_sampled_placement_is_seeded_and_favours_low_divergence() -> None:
    capacity = {"a": 1.0, "b": 1.0, "c": 1.0}
    counts = {"a": 5, "b": 5, "c": 0}

    def draws(seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        return [
            kl_dispersed_choice(counts, capacity, deterministic=False, rng=rng) for _ in range(200)
        ]

    assert draws(1) == draws(1)
    assert Counter(draws(1)).most_common(1)[0][0] == "c"


def test_place_stage_reuses_loaded_parameters() -> None:
    keys = KeysManager({"a": 100.0, "b": 100.0})
    counts: dict[str, int] = {}
    first = place_stage(keys, "encoder", 40.0, critical=True, critical_counts=counts)
    assert place_stage(keys, "encoder", 40.0, critical=True, critical_counts=counts) == first
    other = place_stage(keys, "decoder", 40.0, critical=True, critical_counts=counts)
    assert other != first  # the second critical stage goes to the emptier server
    with pytest.raises(ConfigError):
        place_stage(keys, "giant", 99.0, critical=False, critical_counts=counts)
