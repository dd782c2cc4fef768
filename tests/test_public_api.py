"""The exported API is explicit: a change to it must be a deliberate change to this test."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "slocast": {
        "DOMAINS",
        "BundleError",
        "ConfigError",
        "DataFormatError",
        "DomainSpec",
        "EmptyDataError",
        "InputError",
        "LifecycleError",
        "Prediction",
        "SlocastError",
        "__version__",
        "get_domain",
    },
    "slocast.calibration": {"POOLED", "AdaptiveConformal", "ConformalUpper", "conformal_quantile"},
    "slocast.datasets": {"KINDS", "Dataset", "DatasetKind", "load_dataset", "parse_dataset_arg"},
    "slocast.serving": {
        "LLM_DOMAINS",
        "DataPlane",
        "HTTPConfig",
        "LRUCache",
        "LoadedModel",
        "PredictionCache",
        "RedisCache",
        "ReloadResult",
        "ServingMetrics",
        "cache_keys",
        "create_app",
    },
    "slocast.trainer": {"GateDecision", "Trainer", "TrainerConfig", "gate"},
    "slocast.store": {
        "SCHEMA_VERSION",
        "SampleStore",
        "StoredCounts",
        "bucket_of",
        "is_heldout",
        "llm_bucket",
        "sqlite_url",
    },
    "slocast.artifacts": {
        "FORMAT_VERSION",
        "ModelBundle",
        "load_bundle",
        "validate_records",
        "save_bundle",
        "sha256_file",
    },
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_exported_members(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == EXPECTED[module]
    for name in mod.__all__:
        assert hasattr(mod, name), name
