"""HTTP transport: llm-d's prediction-server API plus slocast's generic ``/v1`` routes.

Routes parse, delegate to :class:`~slocast.serving.dataplane.DataPlane`, and encode (orjson).
Errors are mapped to statuses in one place (:mod:`slocast.serving.httperrors`).

The prediction routes (``/predict``, ``/predict/bulk/strict``, ``/v1/{domain}/predict``) are
what a router calls on every request, so they are also served straight from ASGI, ahead of
FastAPI's routing and dependency machinery, which costs several times the model itself. Both
ways run the same route body; FastAPI's copy keeps them in the OpenAPI docs and serves when
``HTTPConfig.fast_path`` is off, and the tests hold the two to the same answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Hashable,
    Mapping,
    MutableMapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.routing import compile_path

from slocast import __version__
from slocast.errors import SlocastError
from slocast.serving.dataplane import DataPlane
from slocast.serving.httperrors import (
    error_response,
    install_error_handlers,
    json_response,
    validation_response,
)
from slocast.serving.limits import DEFAULT_MAX_BODY_BYTES, body_refusal, send_refusal
from slocast.serving.openapi import document_per_value
from slocast.serving.schemas import (
    BulkRequest,
    DomainPredictResponse,
    LatencyFeatures,
    LatencyRows,
    LooseBulkRequest,
    domain_request_model,
)

__all__ = ["HTTPConfig", "ReloadResult", "create_app", "prediction_array", "prediction_objects"]


@dataclass(frozen=True)
class HTTPConfig:
    service_name: str = "slocast-prediction-server"
    model_type: str = "lightgbm"
    training_server_url: str | None = None
    sync_interval_s: float = 10.0
    max_batch: int = 10_000
    fast_path: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


@dataclass(frozen=True)
class ReloadResult:
    synced: bool
    loaded: bool
    message: str = ""


Reloader = Callable[[], Awaitable[ReloadResult]]
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Any], Callable[..., Any]], Awaitable[None]]


# A hot route's body: (raw request body, path parameters) -> response.
BodyHandler = Callable[[bytes, dict[str, str]], Response]


class _Middleware:
    """Counts and times every request by route template and status (plain ASGI: cheap), refuses
    bodies past ``max_body_bytes`` before reading them, and serves the hot routes itself when
    they are given."""

    def __init__(
        self,
        app: ASGIApp,
        dataplane: DataPlane,
        hot: dict[str, BodyHandler] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = dataplane.metrics
        self._exact = {t: h for t, h in (hot or {}).items() if "{" not in t}
        self._patterns = [(t, compile_path(t)[0], h) for t, h in (hot or {}).items() if "{" in t]

    def _hot(self, path: str) -> tuple[str, BodyHandler, dict[str, str]] | None:
        handler = self._exact.get(path)
        if handler is not None:
            return path, handler, {}
        for template, pattern, handler in self._patterns:
            match = pattern.match(path)
            if match:
                return template, handler, match.groupdict()
        return None

    async def __call__(
        self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        hot = self._hot(scope["path"]) if scope["method"] == "POST" else None
        refused = body_refusal(scope, self.max_body_bytes)
        if refused is not None:
            await send_refusal(send, *refused)
            self.metrics.request_done(hot[0] if hot else "body refused", refused[0], started)
            return
        if hot is not None:
            route, handler, params = hot
            response = _serve(handler, await _read_body(receive), params)
            await response(scope, receive, send)
            self.metrics.request_done(route, response.status_code, started)
            return
        status = 500

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.request_done(route, status, started)


def prediction_objects(
    ttft: Sequence[float], tpot: Sequence[float], shared: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """llm-d's prediction objects: the two bounds, then the fields every one repeats."""
    return [{"ttft_ms": a, "tpot_ms": b, **shared} for a, b in zip(ttft, tpot, strict=True)]


def prediction_array(
    ttft: Sequence[float], tpot: Sequence[float], shared: Mapping[str, Any]
) -> orjson.Fragment:
    """The JSON array of :func:`prediction_objects`, in half the time for a large batch.

    Building a dict per row and encoding its repeated fields again for each costs more than
    the bounds themselves. Here orjson writes the (ttft, tpot) pairs as one nested array, and
    the pairs' punctuation is rewritten into the objects' keys (a number has no ``,`` or ``]``
    in JSON), the repeated fields encoded once. The bytes are the same as encoding the objects.
    """
    pairs = orjson.dumps(np.column_stack((ttft, tpot)), option=orjson.OPT_SERIALIZE_NUMPY)
    close = b"," + orjson.dumps(shared)[1:] if shared else b"}"
    # [[a,b],[c,d]] -> [{"ttft_ms":a,"tpot_ms":b,<shared>},{"ttft_ms":c,"tpot_ms":d,<shared>}]
    body = (
        pairs[2:-2]
        .replace(b"],[", b"|")
        .replace(b",", b',"tpot_ms":')
        .replace(b"|", close + b',{"ttft_ms":')
    )
    return orjson.Fragment(b'[{"ttft_ms":' + body + close + b"]")


async def _read_body(receive: Callable[..., Any]) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _serve(handler: BodyHandler, body: bytes, params: dict[str, str]) -> Response:
    """A hot route's response, errors mapped as FastAPI's handlers map them."""
    try:
        return handler(body, params)
    except ValidationError as exc:
        return validation_response(exc, ["body"])
    except SlocastError as exc:
        return error_response(exc)


def create_app(
    dataplane: DataPlane,
    config: HTTPConfig = HTTPConfig(),
    reloader: Reloader | None = None,
    background: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> FastAPI:
    """Build the prediction server's ASGI app around a data plane (no global state).

    ``reloader`` serves ``POST /reload``; ``background`` (e.g. polling a trainer) runs for the
    app's lifetime.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(background()) if background else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()

    app = FastAPI(
        lifespan=lifespan,
        title="slocast prediction server",
        version=__version__,
        description="Calibrated upper bounds. llm-d-compatible routes and generic /v1 routes.",
    )
    install_error_handlers(app)

    def llm_meta() -> dict[str, Any]:
        model = dataplane.models["llm-ttft"]
        return {
            "model_type": config.model_type,
            "objective_type": "quantile",
            "quantile": model.coverage,
        }

    def shared_fields() -> dict[str, Any]:
        """The fields every llm-d prediction object of one answer repeats."""
        return {
            "predicted_at": datetime.now(UTC).isoformat(),
            **llm_meta(),
            "last_model_load": dataplane.last_load().isoformat(),
        }

    def llm_predictions(ttft: list[float], tpot: list[float]) -> list[dict[str, Any]]:
        return prediction_objects(ttft, tpot, shared_fields())

    # -- llm-d prediction server -----------------------------------------------------------
    # Rows are validated objects, one attribute per field (pydantic models or msgspec structs).
    def predict_one(row: Any) -> Response:
        ttft, tpot, _ = dataplane.predict_llm_rows([row])
        return json_response(llm_predictions(ttft, tpot)[0])

    @app.post("/predict")
    async def predict(row: LatencyFeatures) -> Response:
        return predict_one(row)

    def predict_strict(rows: list[Any], started: float) -> Response:
        ttft, tpot, _ = dataplane.predict_llm_rows(rows)
        return json_response(
            {
                "predictions": prediction_array(ttft, tpot, shared_fields()),
                "total_requests": len(ttft),
                "successful_predictions": len(ttft),
                "failed_predictions": 0,
                "processing_time_ms": (time.perf_counter() - started) * 1000.0,
            }
        )

    @app.post("/predict/bulk/strict")
    async def predict_bulk_strict(body: BulkRequest) -> Response:
        return predict_strict(body.requests, time.perf_counter())

    row_adapter = TypeAdapter(LatencyFeatures)

    @app.post("/predict/bulk")
    async def predict_bulk(body: LooseBulkRequest) -> Response:
        started = time.perf_counter()
        valid: list[tuple[int, LatencyFeatures]] = []
        errors: list[dict[str, Any]] = []
        for index, raw in enumerate(body.requests):
            try:
                valid.append((index, row_adapter.validate_python(raw)))
            except ValidationError as exc:
                errors.append({"index": index, "error": str(exc), "request": raw})
        predictions: list[dict[str, Any] | None] = [None] * len(body.requests)
        if valid:
            ttft, tpot, _ = dataplane.predict_llm_rows([row for _, row in valid])
            for (index, _), prediction in zip(valid, llm_predictions(ttft, tpot), strict=True):
                predictions[index] = prediction
        return json_response(
            {
                "predictions": predictions,
                "errors": errors,
                "total_requests": len(body.requests),
                "successful_predictions": len(valid),
                "failed_predictions": len(errors),
                "processing_time_ms": (time.perf_counter() - started) * 1000.0,
            }
        )

    @app.post("/reload")
    async def reload() -> Response:
        result = await reloader() if reloader else ReloadResult(False, False, "no model source")
        return json_response(
            {
                "synced": result.synced,
                "loaded": result.loaded,
                "is_ready": dataplane.ready,
                **llm_meta(),
                "last_load_time": dataplane.last_load().isoformat(),
                "message": result.message,
            }
        )

    @app.get("/status")
    async def status() -> Response:
        models = dataplane.models
        return json_response(
            {
                "is_ready": dataplane.ready,
                **llm_meta(),
                "last_model_load": dataplane.last_load().isoformat(),
                "training_server_url": config.training_server_url,
                "models_exist": {
                    "ttft_model": not models["llm-ttft"].cold_start,
                    "tpot_model": not models["llm-tpot"].cold_start,
                    **{f"{d}_model": True for d in models if d not in ("llm-ttft", "llm-tpot")},
                },
                "ensemble_active": False,
                "models": dataplane.describe(),
            }
        )

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok", "service": config.service_name})

    @app.get("/readyz")
    async def readyz() -> Response:
        if not dataplane.ready:
            return json_response({"status": "not ready", **llm_meta()}, 503)
        return json_response({"status": "ready", **llm_meta()})

    @app.get("/")
    async def root() -> Response:
        return json_response(
            {
                "message": "slocast prediction server: calibrated upper bounds",
                **llm_meta(),
                "is_ready": dataplane.ready,
                "sync_interval": config.sync_interval_s,
                "training_server": config.training_server_url,
            }
        )

    # -- generic routes --------------------------------------------------------------------
    @lru_cache(maxsize=64)
    def request_model(domain: str, version: str) -> type[BaseModel]:
        return domain_request_model(dataplane.models[domain].spec, config.max_batch)

    def predict_items(domain: str, raw: bytes) -> Response:
        model = dataplane.model(domain)
        body = request_model(domain, model.version).model_validate_json(raw)
        items = [item.__dict__ for item in body.items]  # type: ignore[attr-defined]
        coverage = body.coverage  # type: ignore[attr-defined]
        predictions = dataplane.predict(domain, items, coverage, validated=True)
        return json_response(
            {
                "domain": domain,
                "predictions": [
                    {
                        "point": p.point,
                        "upper": p.upper,
                        "coverage": p.coverage,
                        "model_version": p.model_version,
                    }
                    for p in predictions
                ],
            }
        )

    @app.post("/v1/{domain}/predict")
    async def predict_domain(domain: str, request: Request) -> Response:
        return _serve(lambda raw, _: predict_items(domain, raw), await request.body(), {})

    def loaded_bodies() -> tuple[Hashable, dict[str, type[BaseModel]]]:
        loaded = tuple(sorted((d, m.version) for d, m in dataplane.models.items()))
        return loaded, {domain: request_model(domain, version) for domain, version in loaded}

    document_per_value(app, "/v1/{domain}/predict", "domain", loaded_bodies, DomainPredictResponse)

    @app.get("/v1/models")
    async def models() -> Response:
        return json_response({"models": dataplane.describe()})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(dataplane.metrics.render(), media_type="text/plain; version=0.0.4")

    rows = LatencyRows()
    hot: dict[str, BodyHandler] = {
        "/predict": lambda raw, _: predict_one(rows.one(raw)),
        "/predict/bulk/strict": lambda raw, _: predict_strict(rows.bulk(raw), time.perf_counter()),
        "/v1/{domain}/predict": lambda raw, params: predict_items(params["domain"], raw),
    }
    app.add_middleware(
        _Middleware,
        dataplane=dataplane,
        hot=hot if config.fast_path else None,
        max_body_bytes=config.max_body_bytes,
    )
    return app
