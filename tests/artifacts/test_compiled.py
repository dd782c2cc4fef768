"""Compiled (TL2cgen) and native models agree on the real traces; bundles fall back cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slocast.artifacts import load_bundle, save_bundle
from slocast.artifacts.compiled import can_compile
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import Dataset, load_dataset
from slocast.models import GBMConfig, QuantileForecaster
from tests.conftest import LLMD, SIZEY, SWF, shared_file

pytestmark = pytest.mark.skipif(
    not can_compile("lightgbm"), reason="needs gcc and the compile extra (treelite, tl2cgen)"
)


def _bundle(arg: str, out: Path, family: str = "lightgbm") -> tuple[Path, Dataset]:
    data = load_dataset(arg)
    base = QuantileForecaster(data.spec, 0.9, family, GBMConfig(n_estimators=80))
    forecaster, _, _ = fit_on_history(data.frame, base, CalibrationParams(), 0.2)
    save_bundle(forecaster, out, {"dataset": arg}, {}, compile_models=True)
    return out, data


@pytest.mark.parametrize(
    ("arg", "family"),
    [
        (f"llmd-ttft:{LLMD / 'chatbot-synthetic-h200.jsonl.gz'}", "lightgbm"),
        (f"llmd-tpot:{LLMD / 'bimodal-h200.jsonl.gz'}", "lightgbm"),
        ("swf", "lightgbm"),
        ("nextflow", "lightgbm"),
    ],
)
def test_compiled_and_native_predictions_agree(arg: str, family: str, tmp_path: Path) -> None:
    if arg == "swf":
        arg = f"swf:{shared_file(SWF)}"
    elif arg == "nextflow":
        arg = f"nextflow:{shared_file(SIZEY.format('chipseq'))}"
    path, data = _bundle(arg, tmp_path / "bundle", family)
    compiled, native = load_bundle(path), load_bundle(path, prefer_compiled=False)
    assert compiled.engine == "tl2cgen" and native.engine == "native"
    frame = data.frame
    np.testing.assert_allclose(
        compiled.predict_frame(frame).upper, native.predict_frame(frame).upper, rtol=1e-6
    )


def test_single_rows_and_missing_values_match_the_native_model(tmp_path: Path) -> None:
    """One row takes the direct call into the generated code: it must agree with the batch
    path and the native model, missing values (NaN) included."""
    path, data = _bundle(f"nextflow:{shared_file(SIZEY.format('chipseq'))}", tmp_path / "b")
    compiled, native = load_bundle(path), load_bundle(path, prefer_compiled=False)
    pipeline = compiled.forecaster.base.pipeline
    assert pipeline is not None
    X = pipeline.transform(data.frame.iloc[:300])
    rng = np.random.default_rng(0)
    X[rng.random(X.shape) < 0.2] = np.nan  # every feature goes missing on some rows
    fast, slow = compiled.forecaster.base.upper_model, native.forecaster.base.upper_model
    assert fast is not None and slow is not None
    expected = slow.predict(X)
    rows = np.array([fast.predict(X[i : i + 1])[0] for i in range(len(X))])
    np.testing.assert_allclose(rows, expected, rtol=1e-9)
    np.testing.assert_allclose(fast.predict(X), expected, rtol=1e-9)
    assert np.isnan(X).any(axis=1).sum() > 100


def test_unloadable_library_falls_back_to_native(tmp_path: Path) -> None:
    path, data = _bundle(f"llmd-ttft:{LLMD / 'bimodal-h200.jsonl.gz'}", tmp_path / "bundle")
    # A library built for another machine fails to load; simulate it, keeping the hash valid.
    import json

    from slocast.artifacts import sha256_file

    (path / "model_upper.so").write_bytes(b"not a shared library")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["model_upper.so"] = sha256_file(path / "model_upper.so")
    (path / "manifest.json").write_text(json.dumps(manifest))
    bundle = load_bundle(path)
    assert bundle.engine == "native"
    assert (bundle.predict_frame(data.frame).upper > 0).all()


def test_models_that_cannot_compile_serve_natively(tmp_path: Path) -> None:
    # XGBoost 3.x JSON carries fields the pinned Treelite frontend does not read yet.
    path, data = _bundle(f"llmd-tpot:{LLMD / 'bimodal-h200.jsonl.gz'}", tmp_path / "b", "xgboost")
    bundle = load_bundle(path)
    assert bundle.engine == "native" and bundle.manifest["compiled"] == {}
    assert not list(path.glob("*.so"))
    assert (bundle.predict_frame(data.frame).upper > 0).all()


def test_a_bundle_with_the_same_trees_reuses_the_compiled_libraries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Republishing calibration (the trainer between retrains) copies the libraries instead of
    compiling the same trees again; new trees are compiled."""
    import slocast.artifacts.bundle as bundle_module

    path, data = _bundle(f"llmd-ttft:{LLMD / 'bimodal-h200.jsonl.gz'}", tmp_path / "first")
    first = load_bundle(path)
    live = load_bundle(path, prefer_compiled=False).forecaster  # as the trainer keeps it
    compiled: list[str] = []
    real_compile = bundle_module.compile_model

    def counting(model: Path, family: str, out: Path) -> bool:
        compiled.append(model.name)
        return real_compile(model, family, out)

    monkeypatch.setattr(bundle_module, "compile_model", counting)
    save_bundle(live, tmp_path / "again", {}, {}, compile_models=True, previous=first)
    assert compiled == []
    again = load_bundle(tmp_path / "again")
    assert again.engine == "tl2cgen"
    assert again.manifest["files"]["model_upper.so"] == first.manifest["files"]["model_upper.so"]
    np.testing.assert_allclose(
        again.predict_frame(data.frame).upper, first.predict_frame(data.frame).upper
    )
    other, _ = _bundle(f"llmd-ttft:{LLMD / 'chatbot-synthetic-h200.jsonl.gz'}", tmp_path / "new")
    retrained = load_bundle(other, prefer_compiled=False).forecaster
    compiled.clear()
    save_bundle(retrained, tmp_path / "third", {}, {}, compile_models=True, previous=first)
    assert compiled == ["model_point.txt", "model_upper.txt"]  # new trees: compiled
