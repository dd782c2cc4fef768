from __future__ import annotations

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
