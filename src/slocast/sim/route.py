"""Routing scenario: LLM requests from a real trace across simulated model-server replicas.

Each replica is a continuous-batching engine (simpy process): it admits waiting requests in
arrival order while fewer than ``max_running`` decode and the KV cache has room for the next
prompt (as vLLM's scheduler does: the head of the queue waits for blocks, nothing jumps it),
prefilling each admitted prompt in turn (the uncached part only: ``prefill_s_per_token`` per
token), then decodes all running sequences one step at a time (``decode_step_s +
decode_step_s_per_seq × running`` per step). Decoding grows the cache past its capacity
without preempting anyone (outputs are short next to these traces' prompts). TTFT = queueing +
prefill; a prompt's 512-token prefix blocks already in the replica's LRU block cache are not
prefilled again (Mooncake traces carry the block hashes; Azure traces have none).

The SLO-aware router's predictor is learned, as slocast would learn it in production, from
telemetry: the first ``warmup_fraction`` of requests are routed least-loaded for every policy,
their (replica state at routing, TTFT) rows train a slocast calibrated quantile model of the
``llm-ttft`` domain, and the rest of the trace is replayed under each policy. Only post-warm-up
requests are scored, identically for every policy.

Given a ``learner``, the router's predictor is refitted every ``retrain_every`` scored requests
on every outcome known by then, as the trainer would. This matters: a router that follows its
model drives replicas into states the warm-up never showed (far longer queues), where trees
predict flat, so the model calls a swamped replica fast and the router herds onto it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import simpy

from slocast.artifacts import ModelBundle
from slocast.decisions.router import SHED, LeastLoaded, Predictor, ReplicaState
from slocast.errors import ConfigError, require_fields, require_positive
from slocast.features import record_group_keys
from slocast.schema import Prediction
from slocast.sim.results import PolicyResult
from slocast.sim.traces import LLMRequests

__all__ = [
    "RouteScenario",
    "Telemetry",
    "bundle_ttft_predictor",
    "simulate_route",
    "train_ttft_predictor",
]

BLOCK_TOKENS = 512


@dataclass(frozen=True)
class RouteScenario:
    replicas: int = 4
    max_running: int = 32
    prefill_s_per_token: float = 6e-5  # ~16k prompt tokens/s
    decode_step_s: float = 0.02
    decode_step_s_per_seq: float = 0.0008
    cache_blocks: int = 4000  # prefix blocks of 512 tokens kept per replica (LRU)
    kv_capacity_tokens: float = 400_000.0
    ttft_slo_s: float = 2.0
    load: float = 1.0  # arrival-rate multiplier (time compression)
    warmup_fraction: float = 0.3
    retrain_every: int = 500  # scored requests between refits of a learning router; 0: never

    def __post_init__(self) -> None:
        require_fields(self, lambda v: v >= 1, ">= 1", "replicas", "max_running")
        require_positive(self, "prefill_s_per_token", "kv_capacity_tokens", "ttft_slo_s", "load")
        require_fields(self, lambda v: v >= 0, ">= 0", "decode_step_s", "decode_step_s_per_seq",
                       "cache_blocks", "retrain_every")  # fmt: skip
        require_fields(self, lambda v: 0 <= v < 1, "in [0, 1)", "warmup_fraction")


@dataclass
class _Request:
    index: int
    arrival: float
    input_tokens: float
    output_tokens: float
    blocks: tuple[int, ...]
    uncached: float = 0.0
    remaining: float = 0.0


@dataclass
class Telemetry:
    """Rows a gateway would log: the chosen replica's state at routing time and the TTFT."""

    rows: list[dict[str, float]] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


class _Replica:
    def __init__(self, env: simpy.Environment, scenario: RouteScenario, on_first_token: Any):
        self.env = env
        self.scenario = scenario
        self.on_first_token = on_first_token
        self.waiting: deque[_Request] = deque()
        self.running: list[_Request] = []
        # The prompt being prefilled: vLLM counts it as running and its tokens as in flight, so
        # a replica busy with a long prefill does not look idle to the router.
        self.prefilling: _Request | None = None
        self.cache: OrderedDict[int, None] = OrderedDict()
        self.wake: simpy.Event | None = None
        env.process(self.engine())

    def cached_blocks(self, blocks: Sequence[int]) -> int:
        count = 0
        for block in blocks:
            if block not in self.cache:
                break
            count += 1
        return count

    def state(self, request: _Request) -> ReplicaState:
        hit = self.cached_blocks(request.blocks)
        total = max(len(request.blocks), 1)
        prefill = sum(r.input_tokens for r in self.waiting)
        running = len(self.running)
        if self.prefilling is not None:
            prefill += self.prefilling.input_tokens
            running += 1
        return ReplicaState(
            waiting=len(self.waiting),
            running=running,
            kv_cache_pct=100.0 * self.kv_in_use() / self.scenario.kv_capacity_tokens,
            prefix_score=hit / total if request.blocks else 0.0,
            prefill_tokens_in_flight=float(prefill),
            decode_tokens_in_flight=float(sum(r.remaining for r in self.running)),
        )

    def submit(self, request: _Request) -> None:
        self.waiting.append(request)
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()

    def _remember(self, blocks: Sequence[int]) -> None:
        for block in blocks:
            self.cache[block] = None
            self.cache.move_to_end(block)
        while len(self.cache) > self.scenario.cache_blocks:
            self.cache.popitem(last=False)

    def kv_in_use(self) -> float:
        """KV-cache tokens held by the running sequences: prompt plus tokens generated."""
        return sum(r.input_tokens + r.output_tokens - r.remaining for r in self.running)

    def admits(self, request: _Request) -> bool:
        """A free decode slot and room in the KV cache for its prompt (an idle replica takes
        any prompt: one longer than the cache still has to run somewhere)."""
        if len(self.running) >= self.scenario.max_running:
            return False
        room = self.scenario.kv_capacity_tokens - self.kv_in_use()
        return not self.running or request.input_tokens <= room

    def engine(self) -> Any:
        s = self.scenario
        while True:
            if self.waiting and self.admits(self.waiting[0]):
                request = self.waiting.popleft()
                hit = self.cached_blocks(request.blocks) * BLOCK_TOKENS
                request.uncached = max(request.input_tokens - hit, 1.0)
                self.prefilling = request
                yield self.env.timeout(request.uncached * s.prefill_s_per_token)
                self.prefilling = None
                self._remember(request.blocks)
                self.on_first_token(request, self.env.now)
                request.remaining = request.output_tokens - 1.0
                if request.remaining > 0:
                    self.running.append(request)
                continue
            if self.running:
                yield self.env.timeout(
                    s.decode_step_s + s.decode_step_s_per_seq * len(self.running)
                )
                for r in self.running:
                    r.remaining -= 1.0
                self.running = [r for r in self.running if r.remaining > 0]
                continue
            self.wake = self.env.event()
            yield self.wake
            self.wake = None


def simulate_route(
    requests: LLMRequests,
    router: Any,
    scenario: RouteScenario,
    telemetry: Telemetry | None = None,
    learner: Callable[[pd.DataFrame], Predictor] | None = None,
) -> PolicyResult:
    """Replay ``requests`` routed by ``router``; the warm-up share always goes least-loaded.

    The result scores TTFT of post-warm-up requests only; shed requests count as dropped.
    ``telemetry`` (when given) collects a row per request for training predictors. With a
    ``learner`` (telemetry rows -> predictor), the router's predictor is replaced by one fitted
    on the outcomes known so far every ``scenario.retrain_every`` scored requests.
    """
    if learner is not None and scenario.retrain_every <= 0:
        learner = None
    if learner is not None and telemetry is None:
        telemetry = Telemetry()
    env = simpy.Environment()
    result = PolicyResult(getattr(router, "name", type(router).__name__), scenario.ttft_slo_s)
    warmup = int(len(requests) * scenario.warmup_fraction)
    features: dict[int, dict[str, float]] = {}

    def first_token(request: _Request, now: float) -> None:
        ttft = now - request.arrival
        if request.index >= warmup:
            result.latencies.append(ttft)
            result.served += 1
        if telemetry is not None:
            row = features.pop(request.index)
            row["actual_ttft_ms"] = 1000.0 * ttft
            row["time"], row["known_at"] = request.arrival, now
            telemetry.rows.append(row)

    replicas = [_Replica(env, scenario, first_token) for _ in range(scenario.replicas)]
    warm_router = LeastLoaded()

    def arrivals() -> Any:
        arrival = requests.arrival_s / scenario.load
        for i in range(len(requests)):
            yield env.timeout(max(0.0, arrival[i] - env.now))
            request = _Request(
                i,
                env.now,
                float(requests.input_tokens[i]),
                float(requests.output_tokens[i]),
                requests.prefix_blocks[i],
            )
            states = [r.state(request) for r in replicas]
            chooser = warm_router if i < warmup else router
            scored = i - warmup
            if learner is not None and scored > 0 and scored % scenario.retrain_every == 0:
                assert telemetry is not None
                router.predictor = learner(telemetry.frame())  # rows are added once known
            chosen = chooser.route(states, request.input_tokens)
            if i >= warmup:
                result.arrived += 1
            if chosen == SHED:
                result.dropped += 1
                continue
            if telemetry is not None:
                features[i] = states[chosen].features(request.input_tokens)
            replicas[chosen].submit(request)

    env.process(arrivals())
    env.run()
    result.replica_seconds = scenario.replicas * env.now
    return result


def train_ttft_predictor(telemetry: pd.DataFrame, coverage: float, seed: int = 0) -> Predictor:
    """A calibrated slocast TTFT model (``llm-ttft`` domain) fitted on simulator telemetry;
    returns a predictor in seconds for the router."""
    from slocast.calibration.forecaster import CalibrationParams, fit_on_history
    from slocast.models.base import GBMConfig
    from slocast.models.quantile import QuantileForecaster
    from slocast.schema import get_domain

    builtin = get_domain("llm-ttft")
    # The simulator's replicas report the llm-d state fields; what it does not model (pod_type)
    # is not a feature here.
    spec = builtin.without_features({c for c in builtin.features if c not in telemetry})
    base = QuantileForecaster(spec, coverage, "lightgbm", GBMConfig(seed=seed, n_estimators=200))
    # The router only ranks replicas by these bounds: one offset for every level keeps the
    # ranking the model's own (level cells move it by their calibration noise: p99 TTFT 1-2 %
    # higher on the Mooncake replays).
    params = CalibrationParams(aci_step=0.0, level_bins=1)
    forecaster, _, _ = fit_on_history(telemetry.sort_values("time"), base, params, 0.2)
    pipeline = forecaster.base.pipeline
    assert pipeline is not None

    def predict(rows: Sequence[Mapping[str, object]]) -> Sequence[Prediction]:
        X = pipeline.transform_records(rows)
        bounds = forecaster.bounds(X, record_group_keys(rows, spec), None)[0]
        return [
            Prediction(point=p / 1000.0, upper=u / 1000.0, coverage=coverage, model_version="sim")
            for p, u in zip(bounds.point.tolist(), bounds.upper.tolist(), strict=True)
        ]

    return predict


def bundle_ttft_predictor(bundle: ModelBundle, coverage: float) -> Predictor:
    """A predictor (seconds) from a trained ``llm-ttft`` bundle, e.g. one learned on real llm-d
    traces; the bundle's scale is its training hardware's, not necessarily the simulator's."""
    if bundle.spec.name != "llm-ttft":
        raise ConfigError(
            f"the router needs an llm-ttft bundle, got {bundle.spec.name}", field="bundle"
        )

    def predict(rows: Sequence[Mapping[str, object]]) -> Sequence[Prediction]:
        predictions = bundle.predict_records(rows, coverage, validated=True)
        return [
            Prediction(p.point / 1000.0, p.upper / 1000.0, p.coverage, p.model_version)
            for p in predictions
        ]

    return predict
