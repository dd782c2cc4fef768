"""Compiled (lleaves, TL2cgen) and native models agree on the real traces; bundles fall back
cleanly when compiled code cannot run here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import slocast.artifacts.bundle as bundle_module
from slocast.artifacts import load_bundle, save_bundle, sha256_file
from slocast.artifacts.compiled import LleavesRegressor, can_compile, compile_engine
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import Dataset, load_dataset
from slocast.models import GBMConfig, QuantileForecaster
from tests.conftest import LLMD, SIZEY, SWF, shared_file

pytestmark = pytest.mark.skipif(
    not can_compile("lightgbm"), reason="needs the compile extra (lleaves, or gcc + tl2cgen)"
)


@pytest.fixture(params=["lleaves", "tl2cgen"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Bundles saved in the test compile LightGBM with this engine (skipped when absent)."""
    from slocast.artifacts import compiled

    name: str = request.param
    if not compiled.engine_available(name):
        pytest.skip(f"{name} is not installed here")
    monkeypatch.setattr(bundle_module, "compile_engine", lambda family: name)
    return name


def _bundle(arg: str, out: Path, family: str = "lightgbm") -> tuple[Path, Dataset]:
    data = load_dataset(arg)
    base = QuantileForecaster(data.spec, 0.9, family, GBMConfig(n_estimators=80))
    forecaster, _, _ = fit_on_history(data.frame, base, CalibrationParams(), 0.2)
    save_bundle(forecaster, out, {"dataset": arg}, {}, compile_models=True)
    return out, data


@pytest.mark.parametrize(
    "arg",
    [
        f"llmd-ttft:{LLMD / 'chatbot-synthetic-h200.jsonl.gz'}",
        f"llmd-tpot:{LLMD / 'bimodal-h200.jsonl.gz'}",
        "swf",
        "nextflow",
    ],
)
def test_compiled_and_native_predictions_agree(arg: str, engine: str, tmp_path: Path) -> None:
    if arg == "swf":
        arg = f"swf:{shared_file(SWF)}"  # categorical features: users, groups, queues
    elif arg == "nextflow":
        arg = f"nextflow:{shared_file(SIZEY.format('chipseq'))}"
    path, data = _bundle(arg, tmp_path / "bundle")
    compiled, native = load_bundle(path), load_bundle(path, prefer_compiled=False)
    assert compiled.engine == engine and native.engine == "native"
    frame = data.frame
    np.testing.assert_allclose(
        compiled.predict_frame(frame).upper, native.predict_frame(frame).upper, rtol=1e-6
    )


def test_single_rows_and_missing_values_match_the_native_model(engine: str, tmp_path: Path) -> None:
    """One row takes the direct call into the compiled code, a large batch is split over
    threads: both must agree with the native model, missing values (NaN) included."""
    path, data = _bundle(f"nextflow:{shared_file(SIZEY.format('chipseq'))}", tmp_path / "b")
    compiled, native = load_bundle(path), load_bundle(path, prefer_compiled=False)
    pipeline = compiled.forecaster.base.pipeline
    assert pipeline is not None
    X = pipeline.transform(data.frame.iloc[:600])
    rng = np.random.default_rng(0)
    X[rng.random(X.shape) < 0.2] = np.nan  # every feature goes missing on some rows
    fast, slow = compiled.forecaster.base.upper_model, native.forecaster.base.upper_model
    assert fast is not None and slow is not None
    expected = slow.predict(X)
    rows = np.array([fast.predict(X[i : i + 1])[0] for i in range(len(X))])
    np.testing.assert_allclose(rows, expected, rtol=1e-9)
    np.testing.assert_allclose(fast.predict(X), expected, rtol=1e-9)
    np.testing.assert_allclose(fast.predict(np.asfortranarray(X[::-1])), expected[::-1])
    assert np.isnan(X).any(axis=1).sum() > 200


def test_rows_of_the_wrong_width_are_refused(tmp_path: Path) -> None:
    if compile_engine("lightgbm") != "lleaves":
        pytest.skip("lleaves is not installed here")
    path, _ = _bundle(f"llmd-ttft:{LLMD / 'bimodal-h200.jsonl.gz'}", tmp_path / "b")
    model = load_bundle(path).forecaster.base.upper_model
    assert isinstance(model, LleavesRegressor)
    with pytest.raises(ValueError, match=f"rows of {model.features} features"):
        model.predict(np.zeros((3, model.features - 1)))


def _rewrite(path: Path, name: str, content: bytes | None, **manifest_fields: object) -> None:
    """Change a bundle file and/or manifest fields, keeping every hash valid (what a bundle
    built elsewhere looks like: intact, but not for this machine)."""
    manifest = json.loads((path / "manifest.json").read_text())
    if content is not None:
        (path / name).write_bytes(content)
        manifest["files"][name] = sha256_file(path / name)
    manifest.update(manifest_fields)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_unloadable_library_falls_back_to_native(engine: str, tmp_path: Path) -> None:
    path, data = _bundle(f"llmd-ttft:{LLMD / 'bimodal-h200.jsonl.gz'}", tmp_path / "bundle")
    library = json.loads((path / "manifest.json").read_text())["compiled"]["model_upper"]
    _rewrite(path, library, b"not a compiled model")
    bundle = load_bundle(path)
    assert bundle.engine == "native"
    assert (bundle.predict_frame(data.frame).upper > 0).all()


def test_code_built_for_another_machine_is_not_loaded(engine: str, tmp_path: Path) -> None:
    """LLVM aborts the whole process on an object file it cannot read: the recorded target is
    checked before the file is handed to it."""
    path, data = _bundle(f"llmd-ttft:{LLMD / 'bimodal-h200.jsonl.gz'}", tmp_path / "bundle")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["compiled_engine"] == engine and manifest["compiled_target"]
    _rewrite(path, "", None, compiled_target="aarch64-unknown-linux-gnu/generic")
    bundle = load_bundle(path)
    assert bundle.engine == "native"
    assert (bundle.predict_frame(data.frame).upper > 0).all()


def test_models_that_cannot_compile_serve_natively(tmp_path: Path) -> None:
    # XGBoost 3.x JSON carries fields the pinned Treelite frontend does not read yet.
    path, data = _bundle(f"llmd-tpot:{LLMD / 'bimodal-h200.jsonl.gz'}", tmp_path / "b", "xgboost")
    bundle = load_bundle(path)
    assert bundle.engine == "native" and bundle.manifest["compiled"] == {}
    assert bundle.manifest["compiled_engine"] is None
    assert not list(path.glob("*.so"))
    assert (bundle.predict_frame(data.frame).upper > 0).all()


def test_a_bundle_with_the_same_trees_reuses_the_compiled_libraries(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Republishing calibration (the trainer between retrains) copies the libraries instead of
    compiling the same trees again; new trees are compiled."""
    path, data = _bundle(f"llmd-ttft:{LLMD / 'bimodal-h200.jsonl.gz'}", tmp_path / "first")
    first = load_bundle(path)
    live = load_bundle(path, prefer_compiled=False).forecaster  # as the trainer keeps it
    compiled: list[str] = []
    real_compile = bundle_module.compile_model

    def counting(model: Path, family: str, out: Path, engine: str) -> bool:
        compiled.append(model.name)
        return real_compile(model, family, out, engine)

    monkeypatch.setattr(bundle_module, "compile_model", counting)
    save_bundle(live, tmp_path / "again", {}, {}, compile_models=True, previous=first)
    assert compiled == []
    again = load_bundle(tmp_path / "again")
    assert again.engine == engine
    library = first.manifest["compiled"]["model_upper"]
    assert again.manifest["files"][library] == first.manifest["files"][library]
    np.testing.assert_allclose(
        again.predict_frame(data.frame).upper, first.predict_frame(data.frame).upper
    )
    other, _ = _bundle(f"llmd-ttft:{LLMD / 'chatbot-synthetic-h200.jsonl.gz'}", tmp_path / "new")
    retrained = load_bundle(other, prefer_compiled=False).forecaster
    compiled.clear()
    save_bundle(retrained, tmp_path / "third", {}, {}, compile_models=True, previous=first)
    assert compiled == ["model_point.txt", "model_upper.txt"]  # new trees: compiled


def test_libraries_of_another_engine_are_compiled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slocast.artifacts import compiled

    if not (compiled.engine_available("lleaves") and compiled.engine_available("tl2cgen")):
        pytest.skip("needs both lleaves and TL2cgen")
    monkeypatch.setattr(bundle_module, "compile_engine", lambda family: "tl2cgen")
    path, data = _bundle(f"llmd-ttft:{LLMD / 'bimodal-h200.jsonl.gz'}", tmp_path / "first")
    live = load_bundle(path, prefer_compiled=False).forecaster
    monkeypatch.setattr(bundle_module, "compile_engine", lambda family: "lleaves")
    save_bundle(live, tmp_path / "again", {}, {}, compile_models=True, previous=load_bundle(path))
    again = load_bundle(tmp_path / "again")
    assert again.engine == "lleaves"
    assert sorted(again.manifest["compiled"].values()) == ["model_point.o", "model_upper.o"]
    np.testing.assert_allclose(
        again.predict_frame(data.frame).upper, load_bundle(path).predict_frame(data.frame).upper
    )


def test_threads_predicting_at_once_get_their_own_answers(engine: str, tmp_path: Path) -> None:
    """A gRPC server predicts from many threads: one-row buffers and batch slices must not
    mix between them."""
    from concurrent.futures import ThreadPoolExecutor

    path, data = _bundle(f"nextflow:{shared_file(SIZEY.format('chipseq'))}", tmp_path / "b")
    compiled, native = load_bundle(path), load_bundle(path, prefer_compiled=False)
    pipeline = compiled.forecaster.base.pipeline
    fast, slow = compiled.forecaster.base.upper_model, native.forecaster.base.upper_model
    assert pipeline is not None and fast is not None and slow is not None
    X = pipeline.transform(data.frame.iloc[:800])
    expected = slow.predict(X)

    def work(seed: int) -> bool:
        rng = np.random.default_rng(seed)
        for _ in range(40):
            start = int(rng.integers(0, 500))
            size = int(rng.choice([1, 1, 300]))
            got = fast.predict(X[start : start + size])
            if not np.allclose(got, expected[start : start + size], rtol=1e-9):
                return False
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))
