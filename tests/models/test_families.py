"""Contract tests every model family must pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slocast.errors import ConfigError, LifecycleError
from slocast.models import GBMConfig, MeanForecaster, QuantileForecaster, available_families
from slocast.models.families import load_regressor, make_regressor
from tests.conftest import SYNTH_SPEC, synthetic_frame

FAST = GBMConfig(n_estimators=60)


def _families() -> list[object]:
    params: list[object] = []
    for family in ("lightgbm", "xgboost", "catboost"):
        marks = (
            []
            if family in available_families()
            else [
                pytest.mark.skip(reason=f"{family} not installed: pip install 'slocast[{family}]'")
            ]
        )
        params.append(pytest.param(family, marks=marks))
    return params


@pytest.mark.parametrize("family", _families())
def test_save_load_gives_identical_predictions(family: str, tmp_path: Path) -> None:
    frame = synthetic_frame(600)
    model = QuantileForecaster(SYNTH_SPEC, 0.9, family, FAST)
    model.fit(frame)
    assert model.upper_model is not None and model.pipeline is not None
    X = model.pipeline.transform(frame)
    path = tmp_path / f"upper{type(model.upper_model).suffix}"  # type: ignore[attr-defined]
    model.upper_model.save(path)
    loaded = load_regressor(family, path, 0.9)
    np.testing.assert_allclose(loaded.predict(X), model.upper_model.predict(X), rtol=1e-6)


@pytest.mark.parametrize("family", _families())
def test_seeded_runs_reproduce_and_quantiles_do_not_cross(family: str) -> None:
    frame = synthetic_frame(600)
    a, b = (QuantileForecaster(SYNTH_SPEC, 0.9, family, FAST) for _ in range(2))
    a.fit(frame)
    b.fit(frame)
    first, second = a.predict(frame), b.predict(frame)
    np.testing.assert_array_equal(first.upper, second.upper)
    assert (first.upper >= first.point).all()
    assert (first.point >= 0).all()


@pytest.mark.parametrize("family", _families())
def test_upper_quantile_covers_about_its_level_in_sample(family: str) -> None:
    frame = synthetic_frame(3000)
    model = QuantileForecaster(SYNTH_SPEC, 0.9, family, GBMConfig(n_estimators=200))
    model.fit(frame.iloc[:2000])
    bounds = model.predict(frame.iloc[2000:])
    coverage = float(np.mean(frame["y"].iloc[2000:] <= bounds.upper))
    assert 0.75 < coverage < 0.98


def test_feature_order_of_input_is_irrelevant() -> None:
    frame = synthetic_frame(400)
    model = QuantileForecaster(SYNTH_SPEC, 0.9, "lightgbm", FAST)
    model.fit(frame)
    np.testing.assert_array_equal(
        model.predict(frame).upper, model.predict(frame[list(reversed(frame.columns))]).upper
    )


def test_mean_model_tracks_the_mean() -> None:
    frame = synthetic_frame(3000)
    model = MeanForecaster(SYNTH_SPEC, 0.9, "lightgbm", FAST)
    model.fit(frame.iloc[:2000])
    point = model.predict(frame.iloc[2000:]).point
    assert point.mean() == pytest.approx(frame["y"].iloc[2000:].mean(), rel=0.1)


def test_unknown_family_and_predict_before_fit() -> None:
    with pytest.raises(ConfigError, match="unknown model family 'forest'"):
        make_regressor("forest", 0.9)
    with pytest.raises(LifecycleError):
        QuantileForecaster(SYNTH_SPEC, 0.9).predict(synthetic_frame(10))


def test_gated_family_uses_one_model_per_side_of_the_queue(tmp_path: Path) -> None:
    from slocast.models.composite import GatedRegressor

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(0, 10, 2000), rng.integers(0, 3, 2000).astype(float)])
    # Waiting requests (column 1 > 0) add a large queueing delay the idle side never sees.
    y = X[:, 0] + np.where(X[:, 1] > 0, 50.0, 0.0) + rng.normal(0, 0.5, 2000)
    config = GBMConfig(n_estimators=60, gate_index=1, gate_min_rows=100)
    model = make_regressor("gated", 0.5, config)
    model.fit(X, y)
    assert isinstance(model, GatedRegressor) and model.active
    idle = X[:, 1] == 0
    assert np.array_equal(model.predict(X)[idle], model.sides["idle"].predict(X[idle]))
    assert np.abs(model.predict(X) - y).mean() < 1.0
    path = tmp_path / "gated.json"
    model.save(path)
    assert np.array_equal(load_regressor("gated", path, 0.5).predict(X), model.predict(X))
    few = GatedRegressor(0.5, GBMConfig(n_estimators=20, gate_index=1, gate_min_rows=5000))
    few.fit(X, y)
    assert not few.active and set(few.sides) == {"all"}
    with pytest.raises(ConfigError):
        GatedRegressor(0.5, GBMConfig()).fit(X, y)  # no gate feature configured
