"""HTTP transport: llm-d's prediction-server API plus slocast's generic ``/v1`` routes.

Routes parse, delegate to :class:`~slocast.serving.dataplane.DataPlane`, and encode (orjson).
Errors are mapped to statuses in one place (:func:`_error_response`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from slocast import __version__
from slocast.serving.dataplane import DataPlane
from slocast.serving.httperrors import install_error_handlers, json_response, validation_response
from slocast.serving.schemas import (
    BulkRequest,
    LatencyFeatures,
    LooseBulkRequest,
    domain_request_model,
)

__all__ = ["HTTPConfig", "ReloadResult", "create_app"]


@dataclass(frozen=True)
class HTTPConfig:
    service_name: str = "slocast-prediction-server"
    model_type: str = "lightgbm"
    training_server_url: str | None = None
    sync_interval_s: float = 10.0
    max_batch: int = 10_000


@dataclass(frozen=True)
class ReloadResult:
    synced: bool
    loaded: bool
    message: str = ""


Reloader = Callable[[], Awaitable[ReloadResult]]
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Any], Callable[..., Any]], Awaitable[None]]


class _MetricsMiddleware:
    """Counts requests by route template and status, and times them (plain ASGI: cheap)."""

    def __init__(self, app: ASGIApp, dataplane: DataPlane) -> None:
        self.app = app
        self.metrics = dataplane.metrics

    async def __call__(
        self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


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
    app.add_middleware(_MetricsMiddleware, dataplane=dataplane)

    install_error_handlers(app)

    def llm_meta() -> dict[str, Any]:
        model = dataplane.models["llm-ttft"]
        return {
            "model_type": config.model_type,
            "objective_type": "quantile",
            "quantile": model.coverage,
        }

    def llm_items(rows: list[LatencyFeatures]) -> list[dict[str, Any]]:
        return [row.__dict__ for row in rows]

    def llm_prediction(ttft: float, tpot: float, now: str, loaded: str) -> dict[str, Any]:
        return {
            "ttft_ms": ttft,
            "tpot_ms": tpot,
            "predicted_at": now,
            **llm_meta(),
            "last_model_load": loaded,
        }

    # -- llm-d prediction server -----------------------------------------------------------
    @app.post("/predict")
    async def predict(row: LatencyFeatures) -> Response:
        ttft, tpot, _ = dataplane.predict_llm(llm_items([row]))
        now = datetime.now(UTC).isoformat()
        return json_response(
            llm_prediction(ttft[0], tpot[0], now, dataplane.last_load().isoformat())
        )

    @app.post("/predict/bulk/strict")
    async def predict_bulk_strict(body: BulkRequest) -> Response:
        started = time.perf_counter()
        ttft, tpot, _ = dataplane.predict_llm(llm_items(body.requests))
        now, loaded = datetime.now(UTC).isoformat(), dataplane.last_load().isoformat()
        predictions = [llm_prediction(a, b, now, loaded) for a, b in zip(ttft, tpot, strict=True)]
        return json_response(
            {
                "predictions": predictions,
                "total_requests": len(predictions),
                "successful_predictions": len(predictions),
                "failed_predictions": 0,
                "processing_time_ms": (time.perf_counter() - started) * 1000.0,
            }
        )

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
            ttft, tpot, _ = dataplane.predict_llm(llm_items([row for _, row in valid]))
            now, loaded = datetime.now(UTC).isoformat(), dataplane.last_load().isoformat()
            for (index, _), a, b in zip(valid, ttft, tpot, strict=True):
                predictions[index] = llm_prediction(a, b, now, loaded)
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

    @app.post("/v1/{domain}/predict")
    async def predict_domain(domain: str, request: Request) -> Response:
        model = dataplane.model(domain)
        try:
            body = request_model(domain, model.version).model_validate_json(await request.body())
        except ValidationError as exc:
            return validation_response(exc, ["body"])
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

    @app.get("/v1/models")
    async def models() -> Response:
        return json_response({"models": dataplane.describe()})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(dataplane.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
