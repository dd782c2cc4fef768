"""gRPC transport: ``slocast.v1.Predictor`` over the data plane, plus health and reflection.

The servicer converts messages to job dicts, delegates, and converts back; slocast errors map
to status codes in :func:`_abort` only. An interceptor counts and times every call by method
and status code on the data plane's metrics, which ``serve grpc --metrics-port`` exposes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from slocast.errors import ConfigError, InputError, SlocastError
from slocast.schema import DomainSpec, Prediction
from slocast.serving.dataplane import DataPlane
from slocast.serving.metrics import ServingMetrics
from slocast.serving.pb import slocast_pb2 as pb
from slocast.serving.pb import slocast_pb2_grpc as pb_grpc

__all__ = ["SERVICE_NAME", "PredictorService", "create_grpc_server"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Predictor"].full_name
_MODEL_INFO_FIELDS = (
    "domain",
    "version",
    "coverage",
    "family",
    "cold_start",
    "loaded_at",
    "features",
    "observed_coverage",
    "observed_outcomes",
    "request_grace",
)


def _item(message: Any) -> dict[str, Any]:
    return {**dict(message.numeric), **dict(message.categorical)}


_NAN = float("nan")


def _item_columns(
    items: Sequence[Any], spec: DomainSpec
) -> tuple[dict[str, np.ndarray], dict[str, list[str | None]]] | None:
    """``items`` as the columns form of a batch, or None where an item lacks a required input
    or sends NaN or an empty text for one: the per-item path then serves it, or names the
    item. An optional input left out is missing (NaN) in its column, as the per-item path
    takes it."""
    numbers = [item.numeric for item in items]
    numeric = {}
    for name in spec.numbers:
        column = np.fromiter((m.get(name, _NAN) for m in numbers), np.float64, len(numbers))
        if name not in spec.optional and np.isnan(column).any():
            return None
        numeric[name] = column
    texts = [item.categorical for item in items]
    categorical: dict[str, list[str | None]] = {}
    for name in spec.texts:
        values = [t.get(name) for t in texts]
        if None in values or "" in values:
            return None
        categorical[name] = values
    return numeric, categorical


def _prediction(p: Prediction) -> Any:
    return pb.Prediction(
        point=p.point, upper=p.upper, coverage=p.coverage, model_version=p.model_version
    )


def _abort(context: grpc.ServicerContext, exc: SlocastError) -> None:
    """The one mapping from slocast errors to gRPC status codes."""
    if isinstance(exc, ConfigError) and exc.field == "domain":
        code = grpc.StatusCode.NOT_FOUND
    elif isinstance(exc, InputError):
        code = grpc.StatusCode.INVALID_ARGUMENT
    else:
        code = grpc.StatusCode.INTERNAL
    context.abort(code, str(exc))


def _coverage(request: Any) -> float | None:
    return float(request.coverage) if request.HasField("coverage") else None


class PredictorService:
    """Implements slocast.v1.Predictor (duck-typed: the generated base class adds nothing)."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def _predict(
        self, domain: str, items: Sequence[Mapping[str, Any]], coverage: float | None
    ) -> list[Prediction]:
        return self.dataplane.predict(domain, items, coverage)

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            [p] = self._predict(request.domain, [_item(request.item)], _coverage(request))
        except SlocastError as exc:
            _abort(context, exc)
        return pb.PredictResponse(prediction=_prediction(p))

    def PredictBatch(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            if request.HasField("columns"):
                if request.items:
                    raise InputError("send items or columns, not both", field="columns")
                return self._predict_columns(request)
            if len(request.items) > self.dataplane.cache_max_batch:
                # Past the cache's batch size, items go the columns' way: no dict per job.
                response = self._predict_items_as_columns(request)
                if response is not None:
                    return response
            items = [_item(item) for item in request.items]
            predictions = self._predict(request.domain, items, _coverage(request))
        except SlocastError as exc:
            _abort(context, exc)
        return pb.PredictBatchResponse(predictions=[_prediction(p) for p in predictions])

    def _predict_items_as_columns(self, request: Any) -> Any | None:
        columns = _item_columns(request.items, self.dataplane.model(request.domain).spec)
        if columns is None:
            return None
        coverage = _coverage(request)
        bounds, model = self.dataplane.predict_columns(request.domain, *columns, coverage)
        promised = model.coverage if coverage is None else coverage
        response = pb.PredictBatchResponse()
        add = response.predictions.add
        for point, upper in zip(bounds.point.tolist(), bounds.upper.tolist(), strict=True):
            add(point=point, upper=upper, coverage=promised, model_version=model.version)
        return response

    def _predict_columns(self, request: Any) -> Any:
        columns = request.columns
        numeric = {k: np.array(v.values, dtype=np.float64) for k, v in columns.numeric.items()}
        categorical = {k: [s or None for s in v.values] for k, v in columns.categorical.items()}
        coverage = _coverage(request)
        bounds, model = self.dataplane.predict_columns(
            request.domain, numeric, categorical, coverage
        )
        return pb.PredictBatchResponse(
            columns=pb.ColumnPredictions(
                point=bounds.point.tolist(),
                upper=bounds.upper.tolist(),
                coverage=model.coverage if coverage is None else coverage,
                model_version=model.version,
            )
        )

    def PredictStream(
        self, request_iterator: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[Any]:
        for request in request_iterator:
            yield self.Predict(request, context)

    def GetModelInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        models = [
            # An optional field left unset says "none", as null does over HTTP.
            pb.ModelInfo(**{k: m[k] for k in _MODEL_INFO_FIELDS if m[k] is not None})
            for m in self.dataplane.describe()
            if not request.domain or m["domain"] == request.domain
        ]
        if request.domain and not models:
            _abort(context, ConfigError(f"no model for domain {request.domain!r}", field="domain"))
        return pb.ModelInfoResponse(models=models)


class _Metered(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every unary and bidirectional call by method and status code, into the
    series the HTTP routes use (``slocast_requests_total``, ``slocast_request_latency_seconds``;
    a stream is one request, timed to its end)."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        method = details.method
        if handler is None:
            return None
        if handler.unary_unary is not None:
            call = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                started, failed = time.perf_counter(), True
                try:
                    response = call(request, context)
                    failed = False
                    return response
                finally:
                    self._done(method, context, started, failed)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream is not None:
            stream_call = handler.stream_stream

            def stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                started, failed = time.perf_counter(), True
                try:
                    yield from stream_call(requests, context)
                    failed = False
                finally:
                    self._done(method, context, started, failed)

            return grpc.stream_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        return handler  # server-streaming health watches: open-ended, not timed

    def _done(
        self, method: str, context: grpc.ServicerContext, started: float, failed: bool
    ) -> None:
        code = context.code()
        if code is not None:  # set by an abort (or a handler's set_code)
            status = code.name
        elif not failed:
            status = "OK"
        else:  # an exception grpcio answers as UNKNOWN, or a stream the client left
            status = "UNKNOWN" if context.is_active() else "CANCELLED"
        self.metrics.request_done(method, status, started)


def create_grpc_server(
    dataplane: DataPlane, address: str, max_workers: int = 8
) -> tuple[grpc.Server, int]:
    """A started-ready (not yet started) server bound to ``address``; returns it and its port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[_Metered(dataplane.metrics)],
    )
    pb_grpc.add_PredictorServicer_to_server(PredictorService(dataplane), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (SERVICE_NAME, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    return server, port
