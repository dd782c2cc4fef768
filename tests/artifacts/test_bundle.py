from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slocast.artifacts import DeployableModel, load_bundle, save_bundle
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.errors import BundleError, InputError
from slocast.models import GBMConfig, QuantileForecaster
from tests.conftest import SYNTH_SPEC, late_jobs_frame, many_groups_frame, synthetic_frame


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    frame = synthetic_frame(800)
    base = QuantileForecaster(SYNTH_SPEC, 0.9, "lightgbm", GBMConfig(n_estimators=50))
    forecaster, _, _ = fit_on_history(frame, base, CalibrationParams(), 0.25)
    out = tmp_path / "bundle"
    save_bundle(forecaster, out, provenance={"dataset": "synthetic"}, metrics={"rows": 800})
    return out


def test_round_trip_predicts_identically(bundle_dir: Path) -> None:
    frame = synthetic_frame(800)
    bundle = load_bundle(bundle_dir)
    first = bundle.predict_frame(frame)
    # The serving path (dicts, no DataFrame) gives exactly what the frame path gives.
    served = bundle.predict_matrix(frame.to_dict("records"))
    np.testing.assert_array_equal(served.upper, first.upper)
    again = load_bundle(bundle_dir).predict_frame(frame)
    np.testing.assert_array_equal(first.upper, again.upper)
    assert (first.upper >= first.point).all()
    assert bundle.version.startswith("synthetic-")
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "calibration.json",
        "features.json",
        "metrics.json",
        "model_point.txt",
        "model_upper.txt",
    }
    assert "lightgbm" in manifest["libraries"]


def test_records_and_coverage_monotone(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    job = {"x1": 5.0, "x2": 0.1, "g": "a", "request": 1e9}
    lo, hi = bundle.predict_records([job], 0.8)[0], bundle.predict_records([job], 0.97)[0]
    assert lo.upper <= hi.upper
    assert lo.coverage == 0.8 and lo.model_version == bundle.version


def test_bad_records_name_the_item_and_field(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    with pytest.raises(InputError) as info:
        bundle.predict_records([{"x1": 1.0, "x2": 0.0, "g": "a", "request": 1.0}, {"x1": 1.0}])
    assert info.value.field == "[1].x2"
    with pytest.raises(InputError, match="must be a number"):
        bundle.predict_records([{"x1": "big", "x2": 0.0, "g": "a", "request": 1.0}])


def test_tampered_file_is_refused(bundle_dir: Path) -> None:
    calibration = bundle_dir / "calibration.json"
    calibration.write_text(calibration.read_text().replace("0", "1", 1))
    with pytest.raises(BundleError, match=r"calibration\.json does not match its sha256"):
        load_bundle(bundle_dir)


def test_schema_mismatch_is_refused(bundle_dir: Path) -> None:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["feature_schema_hash"] = "0" * 64
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="feature schema"):
        load_bundle(bundle_dir)


def test_bundles_are_immutable_and_must_exist(bundle_dir: Path, tmp_path: Path) -> None:
    frame = synthetic_frame(300)
    base = QuantileForecaster(SYNTH_SPEC, 0.9, "lightgbm", GBMConfig(n_estimators=20))
    forecaster, _, _ = fit_on_history(frame, base, CalibrationParams(), 0.25)
    with pytest.raises(BundleError, match="immutable"):
        save_bundle(forecaster, bundle_dir, {}, {})
    with pytest.raises(BundleError, match="not a slocast bundle"):
        load_bundle(tmp_path / "nothing")


def test_optional_features_may_be_left_out() -> None:
    from dataclasses import replace

    from slocast.artifacts import validate_records

    spec = replace(SYNTH_SPEC, optional=("x2",))
    validate_records([{"x1": 1.0, "g": "a", "request": 2.0}], spec)
    with pytest.raises(InputError, match="missing 'x1'"):
        validate_records([{"x2": 1.0, "g": "a", "request": 2.0}], spec)


def test_calibration_settings_survive_the_bundle(tmp_path: Path) -> None:
    """Score decay, level cells, how long thin groups keep their request and the headroom travel
    with the bundle: a server gives the bounds the trainer's forecaster gives."""
    from slocast.features import group_keys

    frame = synthetic_frame(800)
    base = QuantileForecaster(SYNTH_SPEC, 0.9, "lightgbm", GBMConfig(n_estimators=50))
    params = CalibrationParams(request_until=400, decay=0.95, level_bins=4, headroom=0.05)
    forecaster, _, _ = fit_on_history(frame, base, params, 0.25)
    save_bundle(forecaster, tmp_path / "b", provenance={}, metrics={})
    loaded = load_bundle(tmp_path / "b").forecaster
    assert loaded.request_until == 400 and loaded.calibrator.decay == 0.95
    assert loaded.headroom == forecaster.headroom > 0
    assert forecaster.calibrator.level_edges.size == 3
    np.testing.assert_array_equal(loaded.calibrator.level_edges, forecaster.calibrator.level_edges)
    assert base.pipeline is not None
    X, groups = base.pipeline.transform(frame), group_keys(frame, SYNTH_SPEC)
    request = frame["request"].to_numpy(np.float64)
    mine, theirs = forecaster.bounds(X, groups, request), loaded.bounds(X, groups, request)
    np.testing.assert_allclose(theirs[0].upper, mine[0].upper)
    assert mine[2] is not None and mine[2].any()  # some groups are still under 400 outcomes


def test_the_history_expert_survives_the_bundle(tmp_path: Path) -> None:
    """Its scores, its level and each group's record travel with the bundle: a server serves
    the history expert's bound to the groups the trainer's forecaster would."""
    from slocast.datasets import load_dataset
    from slocast.features import group_keys
    from tests.conftest import SIZEY, shared_file

    data = load_dataset(f"nextflow:{shared_file(SIZEY.format('iwd'))}")
    base = QuantileForecaster(data.spec, 0.9, "lightgbm", GBMConfig(n_estimators=50))
    forecaster, _, _ = fit_on_history(data.frame, base, CalibrationParams(), 0.3)
    assert forecaster.history is not None and forecaster.history.ready
    save_bundle(forecaster, tmp_path / "b", provenance={}, metrics={})
    loaded = load_bundle(tmp_path / "b").forecaster
    assert base.pipeline is not None
    X, groups = base.pipeline.transform(data.frame), group_keys(data.frame, data.spec)
    request = data.frame["memory"].to_numpy(np.float64)
    mine, theirs = forecaster.bounds(X, groups, request), loaded.bounds(X, groups, request)
    np.testing.assert_allclose(theirs.bounds.upper, mine.bounds.upper)
    assert mine.by_history is not None and theirs.by_history is not None
    np.testing.assert_array_equal(theirs.by_history, mine.by_history)
    assert 0 < mine.by_history.mean() < 1  # some processes are served history, some the model


def test_the_request_grace_survives_the_bundle(tmp_path: Path) -> None:
    """A server caps bounds where the trainer's forecaster does: at the request plus the grace
    its training jobs took past theirs."""
    frame = late_jobs_frame()
    base = QuantileForecaster(SYNTH_SPEC, 0.9, "lightgbm", GBMConfig(n_estimators=50))
    forecaster, _, _ = fit_on_history(frame, base, CalibrationParams(), 0.25)
    save_bundle(forecaster, tmp_path / "b", provenance={}, metrics={})
    loaded = load_bundle(tmp_path / "b")
    grace = forecaster.request_grace
    assert grace is not None and 1.0 < grace < 10.0  # the largest overruns (0.5 % of jobs) aside
    assert loaded.forecaster.request_grace == forecaster.request_grace
    np.testing.assert_array_equal(
        loaded.predict_frame(frame).upper, forecaster.predict(frame).upper
    )


def test_a_server_serves_groups_never_seen_the_share_the_trainer_learned(tmp_path: Path) -> None:
    frame = many_groups_frame()
    base = QuantileForecaster(SYNTH_SPEC, 0.9, "lightgbm", GBMConfig(n_estimators=50))
    forecaster, _, _ = fit_on_history(frame, base, CalibrationParams(), 0.25)
    save_bundle(forecaster, tmp_path / "b", provenance={}, metrics={})
    loaded = load_bundle(tmp_path / "b").forecaster
    assert 0.0 < forecaster.unseen.share(0.9) < 1.0
    assert loaded.unseen.share(0.9) == forecaster.unseen.share(0.9)
    new = frame.iloc[:50].assign(g="new")
    np.testing.assert_array_equal(loaded.predict(new).upper, forecaster.predict(new).upper)
    np.testing.assert_allclose(
        loaded.predict(new).upper, forecaster.unseen.share(0.9) * new["request"].to_numpy()
    )


def test_a_frame_with_text_where_numbers_are_due_names_the_row_and_column(
    bundle_dir: Path,
) -> None:
    """DeployableModel.predict takes a frame; the feature pipeline would read "4 GB" or "x" as
    a missing value and answer as if the input had not been given."""
    model = DeployableModel.load(bundle_dir)
    frame = synthetic_frame(20)
    frame["x2"] = frame["x2"].abs()  # the domain's numbers are non-negative
    assert len(model.predict(frame)) == 20
    assert len(model.predict(frame.assign(x1=frame["x1"].astype(str)))) == 20  # "5.0" is a number
    for column, values, field, message in [
        ("x1", ["x"] + [1.0] * 19, "[0].x1", "must be a number, got 'x'"),
        ("request", [1e9] * 3 + ["4 GB"] + [1e9] * 16, "[3].request", "got '4 GB'"),
        ("x2", [0.1] * 5 + [-1.0] + [0.1] * 14, "[5].x2", "must be in"),
    ]:
        with pytest.raises(InputError, match=message) as info:
            model.predict(frame.assign(**{column: values}))
        assert info.value.field == field
    with pytest.raises(InputError, match="not booleans"):
        model.predict(frame.assign(x2=True))
