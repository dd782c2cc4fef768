from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from slocast.errors import InputError, LifecycleError
from slocast.features import FeaturePipeline
from slocast.schema import DomainSpec
from tests.conftest import SYNTH_SPEC, synthetic_frame


def test_categories_are_frozen_at_fit_and_unseen_share_other() -> None:
    train = synthetic_frame(500)
    pipe = FeaturePipeline.fit(train, SYNTH_SPEC)
    codes = pipe.transform(
        pd.DataFrame({"x1": [1.0] * 4, "x2": [0.0] * 4, "g": ["a", "b", "new", None]})
    )
    assert codes[:, 2][:2].tolist() == [0.0, 1.0]
    assert codes[2, 2] == len(pipe.categories["g"])  # the "other" code
    assert np.isnan(codes[3, 2])
    # Refitting on a superset in another row order gives the same codes for known categories.
    again = FeaturePipeline.fit(train.sample(frac=1.0, random_state=1), SYNTH_SPEC)
    assert again.categories == pipe.categories


def test_rare_categories_map_to_other() -> None:
    frame = synthetic_frame(100)
    frame.loc[0, "g"] = "rare"
    pipe = FeaturePipeline.fit(frame, SYNTH_SPEC, min_category_count=5)
    assert "rare" not in pipe.categories["g"]


def test_column_order_of_input_is_irrelevant() -> None:
    frame = synthetic_frame(200)
    pipe = FeaturePipeline.fit(frame, SYNTH_SPEC)
    shuffled = frame[list(reversed(frame.columns))]
    np.testing.assert_array_equal(pipe.transform(frame), pipe.transform(shuffled))


def test_records_and_frames_agree() -> None:
    frame = synthetic_frame(50)
    pipe = FeaturePipeline.fit(frame, SYNTH_SPEC)
    records = frame.to_dict("records")
    np.testing.assert_array_equal(pipe.transform(frame), pipe.transform_records(records))


def test_records_with_missing_and_textual_numbers_match_frames() -> None:
    """Absent keys, None, numeric strings and blank strings read the same in both paths."""
    pipe = FeaturePipeline.fit(synthetic_frame(50), SYNTH_SPEC)
    clean = [{"x1": None, "x2": "2.5", "g": "a"}, {"x2": 1, "g": None}]
    blank = [*clean, {"x1": " ", "x2": 3.0, "g": "b"}]
    expected = pipe.transform(
        pd.DataFrame({"x1": [np.nan, np.nan, np.nan], "x2": [2.5, 1.0, 3.0], "g": ["a", None, "b"]})
    )
    np.testing.assert_array_equal(pipe.transform_records(clean), expected[:2])
    np.testing.assert_array_equal(pipe.transform_records(blank), expected)
    assert pipe.transform_records([]).shape == (0, len(pipe.columns))


def test_missing_feature_is_named() -> None:
    pipe = FeaturePipeline.fit(synthetic_frame(50), SYNTH_SPEC)
    with pytest.raises(InputError, match="missing feature 'x2'"):
        pipe.transform(pd.DataFrame({"x1": [1.0], "g": ["a"]}))


def test_outcome_columns_cannot_be_features() -> None:
    leaky = DomainSpec("leaky", target="y", numeric=("x1", "y"))
    with pytest.raises(LifecycleError, match="outcome"):
        FeaturePipeline.fit(synthetic_frame(50), leaky)


def test_log_transform_chosen_for_skewed_targets_only() -> None:
    frame = synthetic_frame(500)
    assert FeaturePipeline.fit(frame, SYNTH_SPEC).target_transform == "log1p"
    frame["y"] = np.random.default_rng(0).normal(100, 5, size=len(frame))
    assert FeaturePipeline.fit(frame, SYNTH_SPEC).target_transform == "identity"


def test_schema_hash_round_trip_and_sensitivity() -> None:
    pipe = FeaturePipeline.fit(synthetic_frame(100), SYNTH_SPEC)
    restored = FeaturePipeline.from_dict(pipe.to_dict())
    assert restored.schema_hash() == pipe.schema_hash()
    other = FeaturePipeline(pipe.numeric, {"g": ("a", "b")}, pipe.target_transform)
    assert other.schema_hash() != pipe.schema_hash()
    y = np.array([0.0, 1.0, 1e6])
    np.testing.assert_allclose(pipe.decode_target(pipe.encode_target(y)), y)


LOAD_SPEC = DomainSpec(
    "queue", target="wait_ms", numeric=("queued", "noise"), scale_with=("queued", "noise")
)


def queue_frame(n: int, max_queued: int, seed: int = 0) -> pd.DataFrame:
    """A server admitting one request per 100 ms: the wait grows with the queue ahead."""
    rng = np.random.default_rng(seed)
    queued = rng.integers(0, max_queued + 1, n).astype(float)
    noise = rng.uniform(0, 10, n)
    wait = (20.0 + 100.0 * queued) * rng.lognormal(0.0, 0.1, n)
    return pd.DataFrame({"queued": queued, "noise": noise, "wait_ms": wait})


def test_scale_weights_follow_the_load_and_ignore_what_it_does_not_follow() -> None:
    pipe = FeaturePipeline.fit(queue_frame(2000, 30), LOAD_SPEC)
    assert pipe.target_transform == "log1p"
    queued_weight, noise_weight = pipe.scale_weights
    assert queued_weight == pytest.approx(100.0 / 20.0, rel=0.3)  # β/α of 20 + 100·queued
    assert noise_weight < 0.05 * queued_weight
    restored = FeaturePipeline.from_dict(pipe.to_dict())
    assert restored.scale_weights == pipe.scale_weights
    assert restored.schema_hash() == pipe.schema_hash()
    assert DomainSpec.from_dict(LOAD_SPEC.to_dict()) == LOAD_SPEC
    assert LOAD_SPEC.without_features({"noise"}).scale_with == ("queued",)


def test_bounds_follow_a_load_heavier_than_any_in_training() -> None:
    from slocast.models import GBMConfig, QuantileForecaster

    train, longer = queue_frame(3000, 20), queue_frame(500, 200, seed=1)
    longer = longer[longer["queued"] > 100]
    bounds = {}
    for spec in (LOAD_SPEC, replace(LOAD_SPEC, scale_with=())):
        model = QuantileForecaster(spec, 0.9, "lightgbm", GBMConfig(n_estimators=50))
        model.fit(train)
        bounds[bool(spec.scale_with)] = model.predict(longer).upper
    covered = {k: float(np.mean(longer["wait_ms"] <= b)) for k, b in bounds.items()}
    # Trees alone repeat the bound of the longest queue in training (20): about 2 s for waits
    # of 10-20 s. Learned per unit of load, the bound keeps its coverage.
    assert covered[False] < 0.05
    assert covered[True] > 0.75


def test_scale_with_must_name_numeric_features_on_the_log_scale() -> None:
    with pytest.raises(InputError, match="scale_with column 'g'"):
        FeaturePipeline(("x",), {"g": ()}, "log1p", scale_with=("g",), scale_weights=(1.0,))
    with pytest.raises(InputError, match="log1p"):
        FeaturePipeline(("x",), {}, "identity", scale_with=("x",), scale_weights=(1.0,))


def test_one_row_offset_matches_the_batch_offset() -> None:
    pipe = FeaturePipeline.fit(queue_frame(500, 30), LOAD_SPEC)
    X = np.array([[3.0, 2.0], [np.nan, 5.0], [-4.0, np.nan], [0.0, 0.0], [250.0, 1.0]])
    batch = pipe.offset(X)
    one_by_one = np.concatenate([pipe.offset(X[i : i + 1]) for i in range(len(X))])
    np.testing.assert_allclose(one_by_one, batch)
    # Missing and negative loads count as none.
    loads = np.nan_to_num(np.maximum(X, 0.0), nan=0.0)
    np.testing.assert_allclose(batch, np.log1p(loads @ np.array(pipe.scale_weights)))


def test_columns_and_frames_agree() -> None:
    frame = synthetic_frame(50)
    pipe = FeaturePipeline.fit(frame, SYNTH_SPEC)
    numeric = {c: frame[c].to_numpy(np.float64) for c in ("x1", "x2")}
    categorical = {"g": [*frame["g"].tolist()[:-2], "never seen", None]}
    expected = pipe.transform(frame.assign(g=categorical["g"]))
    got = pipe.transform_columns(numeric, categorical, len(frame))
    np.testing.assert_array_equal(got, expected)
    # A column not sent is missing for every job.
    assert np.isnan(pipe.transform_columns({"x1": numeric["x1"]}, {}, len(frame))[:, 1:]).all()
