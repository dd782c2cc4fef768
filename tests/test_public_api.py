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
    "slocast.calibration": {
        "POOLED",
        "AdaptiveConformal",
        "ConformalUpper",
        "conformal_quantile",
        "pinball_loss",
    },
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
        "DeployableModel",
        "ModelBundle",
        "load_bundle",
        "validate_records",
        "save_bundle",
        "sha256_file",
    },
    "slocast.tuning": {
        "STRATEGIES",
        "TASK_TYPES",
        "Candidate",
        "FamilyOutcome",
        "Point",
        "SearchConfig",
        "TuneResult",
        "choose_strategies",
        "pareto_front",
        "preprocess",
        "tune",
    },
    "slocast.decisions": {
        "HPA",
        "PID",
        "SHED",
        "Compensation",
        "HedgeForecaster",
        "KedaRps",
        "KeysManager",
        "LeastLoaded",
        "LeastWork",
        "Observation",
        "PhaseForecaster",
        "PredictiveAutoscaler",
        "PrefixAware",
        "RateForecaster",
        "ReplicaCorrector",
        "ReplicaState",
        "RetryOutcome",
        "RetryPolicy",
        "RoundRobin",
        "SLOAwareRouter",
        "ScalingLimits",
        "beta",
        "compensate_cpu",
        "erlang_c",
        "kl_dispersed_choice",
        "mean_response",
        "mean_wait",
        "place_stage",
        "propagate_cv",
        "replicas_for_slo",
        "simulate_retries",
        "smooth_replicas",
    },
    "slocast.sim": {"AutoscaleScenario", "PolicyResult", "simulate_autoscale"},
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_exported_members(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == EXPECTED[module]
    for name in mod.__all__:
        assert hasattr(mod, name), name
