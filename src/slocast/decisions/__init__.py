"""Decisions built on calibrated bounds: sizing with retries, routing, scaling, placement.

This package depends only on plain arrays and :class:`~slocast.schema.Prediction`, never on a
model class, so any forecaster (or a remote prediction server) can drive it.
"""

from slocast.decisions.allocator import RetryOutcome, RetryPolicy, simulate_retries
from slocast.decisions.autoscaler import (
    HPA,
    PID,
    KedaRps,
    Observation,
    PredictiveAutoscaler,
    RateForecaster,
    ReplicaCorrector,
    ScalingLimits,
)
from slocast.decisions.compensator import Compensation, compensate_cpu
from slocast.decisions.hedge import HedgeForecaster
from slocast.decisions.placement import KeysManager, kl_dispersed_choice, place_stage
from slocast.decisions.queueing import erlang_c, mean_response, mean_wait, replicas_for_slo
from slocast.decisions.recurring import PhaseForecaster
from slocast.decisions.router import (
    SHED,
    LeastLoaded,
    LeastWork,
    PrefixAware,
    ReplicaState,
    RoundRobin,
    SLOAwareRouter,
)
from slocast.decisions.smoother import beta, propagate_cv, smooth_replicas

__all__ = [
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
]
