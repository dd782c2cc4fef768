"""The trainer's HTTP API: llm-d's training-server contract plus slocast's ``/v1`` routes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy.exc import OperationalError

from slocast import __version__
from slocast.artifacts import load_bundle
from slocast.artifacts.bundle import created_at
from slocast.artifacts.registry import pack_bundle
from slocast.errors import BundleError
from slocast.models.base import GBMConfig
from slocast.schema import DOMAINS, MAX_NUMBER
from slocast.serving import DataPlane
from slocast.serving.httperrors import install_error_handlers, json_response
from slocast.serving.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from slocast.serving.openapi import document_per_value
from slocast.serving.schemas import LatencyFeatures, domain_samples_model
from slocast.trainer.service import SERVED_BOUND, Trainer

__all__ = ["create_trainer_app"]

LLM = {"ttft": "llm-ttft", "tpot": "llm-tpot"}
# A watch on /v1/bundles may ask to wait up to MAX_WATCH_S; the trainer holds it at most
# WATCH_HOLD_S (then answers 304 and the client watches again), so a trainer asked to stop
# is not kept waiting on its watchers; it looks for a publish every WATCH_CHECK_S.
MAX_WATCH_S = 300.0
WATCH_HOLD_S = 5.0
WATCH_CHECK_S = 0.02


class TrainingEntry(LatencyFeatures):
    # Checked here, not only where rows are stored: an error then names the entry's index in
    # the request and the field it was sent as.
    actual_ttft_ms: float = Field(ge=0.0, le=MAX_NUMBER)
    actual_tpot_ms: float = Field(ge=0.0, le=MAX_NUMBER)
    timestamp: datetime | None = None
    # What the prediction server answered for this request (its ttft_ms / tpot_ms), where the
    # router keeps it: the trainer then tracks the coverage requests really got (SERVED_BOUND).
    served_ttft_ms: float | None = Field(None, ge=0.0, le=MAX_NUMBER)
    served_tpot_ms: float | None = Field(None, ge=0.0, le=MAX_NUMBER)


class BulkTrainingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    entries: list[TrainingEntry]


class FlushRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    flush_training_data: StrictBool = True
    flush_test_data: StrictBool = True
    flush_metrics: StrictBool = True
    reason: str | None = None


class SamplesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    items: list[dict[str, Any]] = Field(min_length=1)


class SamplesAccepted(BaseModel):
    accepted: int = Field(description="rows stored, committed before this answer")
    domain: str
    retrained: bool = Field(
        description="whether this trainer learns from the domain (rows are stored either way)"
    )


def _llm_rows(entries: list[TrainingEntry]) -> dict[str, list[dict[str, Any]]]:
    """A TTFT sample has tpot == 0 and vice versa: each row trains only its own target."""
    out: dict[str, list[dict[str, Any]]] = {"llm-ttft": [], "llm-tpot": []}
    for entry in entries:
        row = entry.model_dump(exclude={"timestamp", "served_ttft_ms", "served_tpot_ms"})
        for domain, actual, served in (
            ("llm-ttft", entry.actual_ttft_ms, entry.served_ttft_ms),
            ("llm-tpot", entry.actual_tpot_ms, entry.served_tpot_ms),
        ):
            if actual > 0:
                out[domain].append(row if served is None else {**row, SERVED_BOUND: served})
    return out


def create_trainer_app(
    trainer: Trainer,
    max_batch: int = 10_000,
    model_type: str = "lightgbm",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    app = FastAPI(title="slocast trainer", version=__version__)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    serving = DataPlane(llm_coverage=trainer.config.coverage)

    def refresh_serving() -> None:
        """Serve the current bundles; a bundle is loaded only when its version changed."""
        for domain in trainer.registry.domains():
            served = serving.models.get(domain)
            if served is None or served.version != trainer.registry.current(domain):
                bundle = trainer.current_bundle(domain)
                if bundle is not None:
                    serving.swap(bundle)

    install_error_handlers(app)
    # Handlers that read the store, the bundles or model files are plain functions: FastAPI
    # runs them in its thread pool, so a bundle being packed or a store being counted never
    # holds up the event loop that acknowledges the router's samples.

    @app.exception_handler(OperationalError)
    async def _store_down(_: Request, exc: OperationalError) -> Response:
        # Retryable, and nothing was acknowledged: a 503 tells the router to send it again.
        response = json_response(
            {"detail": f"sample store unavailable, request not acknowledged: {exc.orig}"}, 503
        )
        response.headers["Retry-After"] = "1"
        return response

    def meta() -> dict[str, Any]:
        return {
            "model_type": model_type,
            "objective_type": "quantile",
            "quantile": trainer.config.coverage,
        }

    # -- ingest --------------------------------------------------------------------------------
    @app.post("/add_training_data_bulk", status_code=202)
    async def add_bulk(body: BulkTrainingRequest) -> Response:
        if len(body.entries) > max_batch:
            return json_response(
                {"detail": f"batch of {len(body.entries)} exceeds the limit of {max_batch}"}, 413
            )
        rows = _llm_rows(body.entries)
        # Durable before we answer: the store commits inside ingest.
        await asyncio.to_thread(
            lambda: [trainer.ingest(d, r, validated=True) for d, r in rows.items() if r]
        )
        return json_response({"message": f"Accepted {len(body.entries)} training samples."}, 202)

    @app.post("/v1/{domain}/samples", status_code=202)
    async def add_samples(domain: str, body: SamplesRequest) -> Response:
        if len(body.items) > max_batch:
            return json_response(
                {"detail": f"batch of {len(body.items)} exceeds the limit of {max_batch}"}, 413
            )
        accepted = await asyncio.to_thread(trainer.ingest, domain, body.items)
        # Stored either way (durable, for a trainer started with that domain later), but the
        # sender is told whether this trainer learns from them.
        retrained = domain in trainer.domains
        return json_response({"accepted": accepted, "domain": domain, "retrained": retrained}, 202)

    # The route checks rows with the store's own rules (Trainer.ingest); its document shows
    # them per built-in domain, built when the document is first asked for, not at start-up.
    @cache
    def samples() -> dict[str, type[BaseModel]]:
        return {name: domain_samples_model(spec, SERVED_BOUND) for name, spec in DOMAINS.items()}

    document_per_value(
        app, "/v1/{domain}/samples", "domain", lambda: ((), samples()), SamplesAccepted
    )

    @app.post("/flush")
    async def flush(request: Request) -> Response:
        raw = await request.body()
        body = FlushRequest.model_validate_json(raw) if raw.strip() else FlushRequest()
        flushed = await asyncio.to_thread(
            lambda: {
                d: trainer.store.flush(d, body.flush_training_data, body.flush_test_data)
                for d in LLM.values()
            }
        )
        if body.flush_metrics:
            trainer.decisions.clear()
        parts = [
            p
            for p, on in (
                ("training data", body.flush_training_data),
                ("test data", body.flush_test_data),
                ("metrics", body.flush_metrics),
            )
            if on
        ]
        return json_response(
            {
                "success": True,
                "flushed_at": datetime.now(UTC).isoformat(),
                "reason": body.reason,
                "ttft_training_samples_flushed": flushed["llm-ttft"].train,
                "tpot_training_samples_flushed": flushed["llm-tpot"].train,
                "ttft_test_samples_flushed": flushed["llm-ttft"].test,
                "tpot_test_samples_flushed": flushed["llm-tpot"].test,
                "metrics_cleared": body.flush_metrics,
                "message": "Successfully flushed: " + ", ".join(parts),
            }
        )

    # -- status --------------------------------------------------------------------------------
    @app.get("/data/status")
    def data_status() -> Response:
        ttft, tpot = trainer.store.counts("llm-ttft"), trainer.store.counts("llm-tpot")
        return json_response(
            {
                "training_data": {
                    "ttft_samples": ttft.train,
                    "tpot_samples": tpot.train,
                    "total_samples": ttft.train + tpot.train,
                },
                "test_data": {
                    "ttft_samples": ttft.test,
                    "tpot_samples": tpot.test,
                    "total_samples": ttft.test + tpot.test,
                },
                "ensemble": {
                    "ensemble_mode": trainer.config.ensemble_mode,
                    "ensemble_active": ensemble_active(),
                    "min_samples_for_split": GBMConfig().gate_min_rows,
                    **queue_split_counts(),
                },
                "metrics": {
                    "ttft_scores_count": sum(d.domain == "llm-ttft" for d in trainer.decisions),
                    "tpot_scores_count": sum(d.domain == "llm-tpot" for d in trainer.decisions),
                },
                "bucket_distribution": {d: trainer.store.bucket_counts(d) for d in LLM.values()},
                "model_ready": True,
                "last_retrain": trainer.last_retrain.get("llm-ttft"),
            }
        )

    def model_file(name: str) -> tuple[str, Any]:
        """The current upper-model file behind an llm-d model name. ``ttft_gated`` /
        ``tpot_gated`` exist while the domain serves a queue-gated model with both sides
        trained (ensemble active): slocast keeps both sides in that one file."""
        domain = LLM.get(name.removesuffix("_gated"))
        version = trainer.registry.current(domain) if domain else None
        if domain is None or version is None:
            return name, None
        if name.endswith("_gated") and not gated_active(domain):
            return name, None
        path = trainer.registry.path(domain, version)
        files = sorted(path.glob("model_upper.*"))
        return name, files[0] if files else None

    @app.get("/models/list")
    def models_list() -> Response:
        models = {}
        for name in ("ttft", "tpot", "ttft_gated", "tpot_gated"):
            _, file = model_file(name)
            models[name] = {
                "exists": file is not None,
                "size_bytes": file.stat().st_size if file else 0,
                "last_modified": datetime.fromtimestamp(file.stat().st_mtime, UTC).isoformat()
                if file
                else None,
            }
        return json_response(
            {
                "models": models,
                **meta(),
                "server_time": datetime.now(UTC).isoformat(),
                "evaluation_metrics": [d.to_dict() for d in trainer.decisions[-10:]],
            }
        )

    @app.get("/model/download/info")
    def download_info() -> Response:
        return json_response(
            {
                **meta(),
                "available_endpoints": {
                    "bundles": "/v1/bundles",
                    "lightgbm_text": "/model/{ttft,tpot}/lgb/txt",
                },
                "model_status": {
                    "ttft_model_ready": model_file("ttft")[1] is not None,
                    "tpot_model_ready": model_file("tpot")[1] is not None,
                },
                "evaluation_info": {"gating": "/v1/bundles/gating"},
            }
        )

    @app.get("/model/{name}/info")
    def model_info(name: str) -> Response:
        _, file = model_file(name)
        if file is None:
            return json_response({"detail": f"model {name!r} not found"}, 404)
        stat = file.stat()
        return json_response(
            {
                "model_name": name,
                "path": str(file),
                "size_bytes": stat.st_size,
                "last_modified": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(),
                "exists": True,
                **meta(),
            }
        )

    def native_model(name: str) -> Any:
        """The current upper-quantile model object of ``ttft``/``tpot`` (None when absent)."""
        domain = LLM.get(name)
        version = trainer.registry.current(domain) if domain else None
        if domain is None or version is None:
            return None
        bundle = load_bundle(trainer.registry.path(domain, version), prefer_compiled=False)
        return bundle.forecaster.base.upper_model.native  # type: ignore[union-attr]

    def queue_split_counts() -> dict[str, int]:
        """Training rows that arrived to an empty queue vs a queue, from the retention buckets
        (the queue bucket ``q0`` is exactly ``num_request_waiting == 0``)."""
        counts = {}
        for name, domain in LLM.items():
            buckets = trainer.store.bucket_counts(domain)
            idle = sum(n for bucket, n in buckets.items() if bucket.startswith("q0:"))
            counts[f"{name}_noqueue_samples"] = idle
            counts[f"{name}_queued_samples"] = sum(buckets.values()) - idle
        return counts

    def gated_active(domain: str) -> bool:
        """``domain`` serves separate models on both sides of the queue gate (read from the
        trainer's live copy of its current bundle, not from disk)."""
        live = trainer.live.get(domain)
        return live is not None and bool(getattr(live.base.upper_model, "active", False))

    def ensemble_active() -> bool:
        return any(gated_active(domain) for domain in LLM.values())

    def joblib_bytes(model: Any) -> bytes:
        import joblib

        buffer = io.BytesIO()
        joblib.dump(model, buffer)
        return buffer.getvalue()

    @app.get("/model/export")
    def export() -> Response:
        models = {name: native_model(name) for name in LLM}
        if any(m is None for m in models.values()):
            return json_response({"detail": "no trained ttft and tpot models yet"}, 503)
        metadata = {
            "model_type": model_type,
            "quantile_alpha": trainer.config.coverage,
            "exported_at": datetime.now(UTC).isoformat(),
            "ttft_samples": trainer.store.counts("llm-ttft").train,
            "tpot_samples": trainer.store.counts("llm-tpot").train,
        }
        files = {"metadata.json": orjson.dumps(metadata)}
        files |= {f"{name}.joblib": joblib_bytes(model) for name, model in models.items()}
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for file_name, data in files.items():
                info = tarfile.TarInfo(file_name)
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))
        disposition = 'attachment; filename="seed-model.tar.gz"'
        return Response(buffer.getvalue(), media_type="application/gzip",
                        headers={"Content-Disposition": disposition})  # fmt: skip

    @app.get("/model/{name}/download")
    def download(name: str) -> Response:
        model = native_model(name)
        if model is None:
            return json_response({"detail": f"model {name!r} not found"}, 404)
        disposition = f'attachment; filename="{name}.joblib"'
        return Response(joblib_bytes(model), media_type="application/octet-stream",
                        headers={"Content-Disposition": disposition})  # fmt: skip

    @app.get("/model/{name}/xgb/json")
    def xgb_json(name: str) -> Response:
        model = native_model(name) if model_type == "xgboost" else None
        if model is None or not hasattr(model, "get_dump"):
            return json_response({"detail": f"no XGBoost model {name!r}"}, 404)
        return json_response([orjson.loads(tree) for tree in model.get_dump(dump_format="json")])

    @app.get("/model/{name}/lgb/txt")
    def lgb_text(name: str) -> Response:
        _, file = model_file(name)
        if file is None or file.suffix != ".txt":
            return json_response({"detail": f"no LightGBM model {name!r}"}, 404)
        return Response(file.read_bytes(), media_type="text/plain; charset=utf-8")

    @app.get("/model/{name}/lgb/importances")
    def lgb_importances(name: str) -> Response:
        _, file = model_file(name)
        if file is None or file.suffix != ".txt":
            return json_response({"detail": f"no LightGBM model {name!r}"}, 404)
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(file))
        gains = booster.feature_importance(importance_type="gain")
        return json_response(
            {f: float(g) for f, g in zip(bundle_features(name), gains, strict=True)}
        )

    def bundle_features(name: str) -> list[str]:
        domain = LLM[name]
        version = trainer.registry.current(domain)
        assert version is not None
        bundle = load_bundle(trainer.registry.path(domain, version))
        assert bundle.forecaster.base.pipeline is not None
        return list(bundle.forecaster.base.pipeline.columns)

    @app.get("/metrics")
    def metrics() -> Response:
        lines = [
            f'model_type{{type="{model_type}"}} 1',
            'objective_type{type="quantile"} 1',
            f"model_quantile{{}} {trainer.config.coverage}",
            f"ensemble_active{{}} {int(ensemble_active())}",
            f"ensemble_mode{{}} {int(trainer.config.ensemble_mode)}",
        ]
        for name, domain in LLM.items():
            for bucket, count in trainer.store.bucket_counts(domain).items():
                queue, cache, prefix = bucket.split(":")
                labels = (
                    f'model="{name}",queue_bucket="{queue}",'
                    f'cache_bucket="{cache}",prefix_bucket="{prefix}"'
                )
                lines.append(f"training_samples_count{{{labels}}} {count}")
            last = next(
                (
                    d
                    for d in reversed(trainer.decisions)
                    if d.domain == domain and d.coverage_new is not None
                ),
                None,
            )
            live = trainer.live.get(domain)
            if live is not None and live.aci is not None:
                lines.append(f"{name}_aci_level{{}} {live.aci.level:.4f}")
                observed = live.aci.observed_coverage
                if observed is not None:
                    lines.append(f"{name}_rolling_coverage{{}} {observed:.4f}")
            lines.append(f"{name}_early_retrains{{}} {trainer.early_retrains[domain]}")
            if last is not None and last.coverage_new is not None:
                lines.append(f"{name}_coverage_percent{{}} {100 * last.coverage_new:.3f}")
                lines.append(
                    f"{name}_violation_rate_percent{{}} {100 * (1 - last.coverage_new):.3f}"
                )
        # Every domain's current bundle, for comparing with what prediction servers serve
        # (their slocast_model_created_timestamp_seconds): a server behind it is not syncing.
        for domain in trainer.registry.domains():
            version = trainer.registry.current(domain)
            try:
                manifest = trainer.registry.manifest(domain, version) if version else None
            except BundleError:  # pruned by a publish since CURRENT was read: next scrape
                manifest = None
            if manifest is not None:
                lines.append(
                    f'slocast_trainer_bundle_created_timestamp_seconds{{domain="{domain}"}} '
                    f"{created_at(manifest).timestamp():.3f}"
                )
        for (domain, judged_by), count in sorted(trainer.outcomes_judged.items()):
            lines.append(
                f'slocast_trainer_outcomes_total{{domain="{domain}",judged_by="{judged_by}"}} '
                f"{count}"
            )
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        # Ready means able to acknowledge rows: the sample store answers.
        await asyncio.to_thread(trainer.store.ping)
        return json_response({"status": "ready"})

    @app.get("/")
    async def root() -> Response:
        return json_response(
            {
                "message": "slocast trainer",
                **meta(),
                "description": "durable ingest, gated retraining, bundles",
            }
        )

    @app.post("/predict")
    def predict(row: LatencyFeatures) -> Response:
        refresh_serving()
        ttft, tpot, _ = serving.predict_llm_rows([row])
        return json_response(
            {
                "ttft_ms": ttft[0],
                "tpot_ms": tpot[0],
                "ttft_uncertainty": 0.0,
                "tpot_uncertainty": 0.0,
                "ttft_prediction_bounds": [0.0, ttft[0]],
                "tpot_prediction_bounds": [0.0, tpot[0]],
                "predicted_at": datetime.now(UTC).isoformat(),
                **meta(),
            }
        )

    # -- bundles for prediction servers -----------------------------------------------------------
    def current_bundles() -> tuple[dict[str, str | None], str]:
        """Each domain's current bundle, and the ETag of that listing."""
        current = {d: trainer.registry.current(d) for d in trainer.registry.domains()}
        digest = hashlib.sha256(orjson.dumps(current, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return current, f'"{digest[:16]}"'

    @app.get("/v1/bundles")
    async def bundles(
        request: Request, wait_s: float = Query(0.0, ge=0.0, le=MAX_WATCH_S)
    ) -> Response:
        """Every domain's current bundle and the versions kept, with an ``ETag`` of the current
        ones. Sent back in ``If-None-Match`` with ``wait_s``, the answer waits until a publish
        changes them (a watch, like Consul's blocking queries), at most ``wait_s`` (and
        ``WATCH_HOLD_S``): 304 when nothing changed, so a prediction server picks up a new
        bundle as it is published instead of at its next poll."""
        known = request.headers.get("if-none-match")
        deadline = time.monotonic() + min(wait_s, WATCH_HOLD_S)
        current, etag = current_bundles()
        while etag == known and time.monotonic() < deadline:
            await asyncio.sleep(WATCH_CHECK_S)
            if await request.is_disconnected():  # a server that stopped: no one to answer
                return Response(status_code=304, headers={"ETag": etag})
            current, etag = current_bundles()
        if etag == known:
            return Response(status_code=304, headers={"ETag": etag})
        # The listing is the one the ETag names: read once, not again after the wait.
        listing = {
            d: {"current": version, "versions": trainer.registry.versions(d)}
            for d, version in current.items()
        }
        response = json_response({"bundles": listing})
        response.headers["ETag"] = etag
        return response

    @app.get("/v1/bundles/gating")
    async def gating() -> Response:
        return json_response({"decisions": [d.to_dict() for d in trainer.decisions]})

    @app.get("/v1/bundles/{domain}/{version}")
    def bundle_manifest(domain: str, version: str) -> Response:
        return Response(
            trainer.registry.manifest_bytes(domain, version), media_type="application/json"
        )

    @app.get("/v1/bundles/{domain}/{version}/download")
    def bundle_download(domain: str, version: str) -> Response:
        data = pack_bundle(trainer.registry.path(domain, version))
        return Response(
            data,
            media_type="application/gzip",
            headers={"Content-Disposition": f'attachment; filename="{version}.tar.gz"'},
        )

    return app
