"""Bundles trained on the real llm-d H200 trace, shared by the serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from slocast.artifacts import ModelBundle, load_bundle, save_bundle
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import load_dataset
from slocast.models import GBMConfig, QuantileForecaster
from tests.conftest import LLMD


def train_llmd_bundle(kind: str, out: Path, n_estimators: int = 60) -> Path:
    data = load_dataset(f"{kind}:{LLMD / 'chatbot-synthetic-h200.jsonl.gz'}")
    base = QuantileForecaster(data.spec, 0.9, "lightgbm", GBMConfig(n_estimators=n_estimators))
    forecaster, _, _ = fit_on_history(data.frame, base, CalibrationParams(), 0.2)
    save_bundle(forecaster, out, provenance={"dataset": kind}, metrics={})
    return out


@pytest.fixture(scope="session")
def llmd_bundle_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {
        "llm-ttft": train_llmd_bundle("llmd-ttft", root / "ttft"),
        "llm-tpot": train_llmd_bundle("llmd-tpot", root / "tpot"),
    }


@pytest.fixture(scope="session")
def llmd_bundles(llmd_bundle_dirs: dict[str, Path]) -> list[ModelBundle]:
    return [load_bundle(path) for path in llmd_bundle_dirs.values()]
