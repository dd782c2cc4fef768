"""Prediction serving: one data plane, thin HTTP (and later gRPC) transports, cache, metrics."""

from slocast.serving.cache import LRUCache, PredictionCache, RedisCache, cache_keys
from slocast.serving.dataplane import LLM_DOMAINS, DataPlane, LoadedModel
from slocast.serving.http import HTTPConfig, ReloadResult, create_app
from slocast.serving.metrics import ServingMetrics

__all__ = [
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
]
