"""`serve http`, `serve grpc` and `trainer`: the servers, wired from settings."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from slocast.artifacts import load_bundle
from slocast.cli._common import (
    app,
    calibration_params,
    err,
    exit_codes,
    log,
    merged_settings,
    require_extra,
)
from slocast.errors import InputError, SlocastError
from slocast.logs import access_log_shown, configure_logging
from slocast.schema import get_domain
from slocast.settings import Settings, cores_per_worker

serve_app = typer.Typer(help="Run a prediction server.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")

BundlesOpt = Annotated[
    list[Path] | None, typer.Option("--bundle", help="Bundle directory (repeat: one per domain).")
]


def _predict_threads(settings: Settings, workers: int = 1) -> int:
    """Threads per batch prediction: the setting, else the cores shared among the workers."""
    if settings.predict_threads or workers == 1:
        return settings.predict_threads
    return cores_per_worker(workers)


def _build_dataplane(bundle_dirs: list[Path], settings: Settings, threads: int = 0) -> Any:
    from slocast.serving import DataPlane, LRUCache, RedisCache

    cache = (
        RedisCache(settings.cache_url) if settings.cache_url else LRUCache(settings.cache_entries)
    )
    bundles = [load_bundle(path, threads=threads) for path in bundle_dirs]
    domains = [b.spec.name for b in bundles]
    duplicated = {d for d in domains if domains.count(d) > 1}
    if duplicated:
        raise InputError(f"two bundles for domain {sorted(duplicated)[0]}", field="--bundle")
    return DataPlane(
        bundles,
        cache,
        max_batch=settings.max_batch,
        llm_coverage=settings.target_coverage,
        cache_max_batch=settings.cache_max_batch,
    )


def _trainer_sync(url: str, settings: Settings, dataplane: Any, threads: int) -> Any:
    """The watch on the trainer at ``url`` that keeps ``dataplane`` current; synced bundles
    predict on as many threads as the bundles the server started with."""
    from slocast.serving.sync import TrainerSync

    return TrainerSync(url, settings.home / "synced", dataplane, threads=threads)


def _local_reloader(dataplane: Any, bundle_dirs: list[Path], threads: int) -> Any:
    """``/reload`` re-reads the bundle directories; a bad bundle is refused, the old one serves."""
    from slocast.serving import ReloadResult

    async def reload() -> ReloadResult:
        swapped = False
        for path in bundle_dirs:
            try:
                # Verifying hashes and loading libraries in a thread: requests keep being
                # served meanwhile, by the bundles loaded before.
                bundle = await asyncio.to_thread(load_bundle, path, threads=threads)
                swapped |= dataplane.swap(bundle)
            except SlocastError as exc:
                dataplane.metrics.bundles_refused.inc()
                log.warning(
                    "refused bundle %s: %s",
                    path,
                    exc,
                    extra={"bundle": str(path), "reason": str(exc)},
                )
                return ReloadResult(False, False, f"refused {path}: {exc}")
        return ReloadResult(True, swapped, "reloaded" if swapped else "already current")

    return reload


# `serve http --workers N` hands its arguments to each worker process in this variable.
_HTTP_SPEC = "SLOCAST_HTTP_WORKER_SPEC"


def _http_app(bundle_dirs: list[Path], settings: Settings, workers: int = 1) -> tuple[Any, Any]:
    """The prediction server's ASGI app and its data plane."""
    from slocast.serving import HTTPConfig, create_app

    threads = _predict_threads(settings, workers)
    dataplane = _build_dataplane(bundle_dirs, settings, threads)
    config = HTTPConfig(
        max_batch=settings.max_batch,
        max_body_bytes=settings.max_body_bytes,
        model_type=settings.model_family,
        training_server_url=settings.training_server_url,
        sync_interval_s=settings.model_sync_interval_s,
    )
    if settings.training_server_url:
        sync = _trainer_sync(settings.training_server_url, settings, dataplane, threads)
        interval = settings.model_sync_interval_s
        web = create_app(dataplane, config, sync.sync, lambda: sync.run(interval))
    else:
        web = create_app(dataplane, config, _local_reloader(dataplane, bundle_dirs, threads))
    # What is alive now (libraries, models) lives as long as the server: keep it out of the
    # garbage collector's full scans, which otherwise land on requests as latency spikes.
    gc.freeze()
    return web, dataplane


def http_worker_app() -> Any:
    """uvicorn factory for each worker of ``serve http --workers N``."""
    spec = json.loads(os.environ[_HTTP_SPEC])
    settings = merged_settings(**spec["overrides"])
    return _http_app([Path(p) for p in spec["bundles"]], settings, spec["workers"])[0]


@serve_app.command("http")
def serve_http(
    bundle: BundlesOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (env PREDICT_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env PREDICT_PORT, default 8001).")] = None,
    training_server_url: Annotated[
        str | None,
        typer.Option(help="Pull bundles from this slocast trainer (env TRAINING_SERVER_URL)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes sharing the port (each loads the models).")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve calibrated bounds over HTTP (llm-d prediction-server API + /v1 routes)."""
    with exit_codes():
        require_extra("uvicorn", "serve", "slocast serve http")
    import uvicorn

    overrides = {
        "serve_host": host,
        "serve_port": port,
        "training_server_url": training_server_url,
    }
    bundle_dirs = list(bundle or [])
    with exit_codes():
        settings = merged_settings(**overrides)
        log_config = configure_logging(settings.log_format, log_level)
        # Built here even with several workers: a bad bundle or setting fails the command.
        web, dataplane = _http_app(bundle_dirs, settings, workers)
        where = f"{settings.serve_host}:{settings.serve_port}"
        domains = ", ".join(sorted(dataplane.models))
        err.print(f"serving {domains} on {where} ({workers} worker{'s' * (workers > 1)})")
    serve = {
        "host": settings.serve_host,
        "port": settings.serve_port,
        "log_level": log_level,
        "log_config": log_config,
        "access_log": access_log_shown(log_level),
    }
    if workers == 1:
        uvicorn.run(web, **serve)  # type: ignore[arg-type]
        return
    os.environ[_HTTP_SPEC] = json.dumps(
        {"bundles": [str(b) for b in bundle_dirs], "overrides": overrides, "workers": workers}
    )
    uvicorn.run("slocast.cli.serve:http_worker_app", factory=True, workers=workers, **serve)  # type: ignore[arg-type]


@serve_app.command("grpc")
def serve_grpc(
    bundle: BundlesOpt = None,
    port: Annotated[int, typer.Option(help="gRPC port.", min=1, max=65535)] = 50051,
    host: Annotated[str, typer.Option(help="Bind address.")] = "0.0.0.0",
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this port.", min=1, max=65535)
    ] = None,
    training_server_url: Annotated[
        str | None,
        typer.Option(help="Pull bundles from this slocast trainer (env TRAINING_SERVER_URL)."),
    ] = None,
) -> None:
    """Serve calibrated bounds over gRPC (slocast.v1.Predictor, health, reflection)."""
    with exit_codes():
        require_extra("grpc", "serve", "slocast serve grpc")
    import asyncio
    import threading

    from prometheus_client import start_http_server

    from slocast.serving.grpc import create_grpc_server

    with exit_codes():
        settings = merged_settings(training_server_url=training_server_url)
        configure_logging(settings.log_format)
        threads = _predict_threads(settings)
        dataplane = _build_dataplane(list(bundle or []), settings, threads)
        server, bound = create_grpc_server(dataplane, f"{host}:{port}")
        if metrics_port is not None:
            start_http_server(metrics_port, registry=dataplane.metrics.registry)
        if settings.training_server_url:
            # The same watch as `serve http`, on a loop of its own beside grpcio's threads.
            sync = _trainer_sync(settings.training_server_url, settings, dataplane, threads)
            watch = sync.run(settings.model_sync_interval_s)
            threading.Thread(target=asyncio.run, args=(watch,), daemon=True).start()
        server.start()
        err.print(f"serving {', '.join(sorted(dataplane.models))} over gRPC on {host}:{bound}")
    server.wait_for_termination()


@app.command()
def trainer(
    host: Annotated[str, typer.Option(help="Bind address.")] = "0.0.0.0",
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    domain: Annotated[
        list[str] | None, typer.Option(help="Domains to retrain (default: llm-ttft, llm-tpot).")
    ] = None,
    compile_models: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="Publish compiled trees (env SLOCAST_TRAINER_COMPILE; default off).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Continuous training server: durable ingest, background retraining, gated bundles."""
    with exit_codes():
        require_extra("uvicorn", "serve", "slocast trainer")
        require_extra("sqlalchemy", "store", "slocast trainer")
    import uvicorn

    from slocast.store import SampleStore, sqlite_url
    from slocast.trainer.http import create_trainer_app
    from slocast.trainer.service import Trainer, TrainerConfig

    with exit_codes():
        settings = merged_settings(trainer_port=port, trainer_compile=compile_models)
        log_config = configure_logging(settings.log_format, log_level)
        domains = list(domain or ["llm-ttft", "llm-tpot"])
        for name in domains:
            get_domain(name)
        store = SampleStore(
            settings.store_url or sqlite_url(settings.home),
            per_bucket_cap=settings.max_per_bucket,
            test_cap=settings.max_test_rows,
        )
        service = Trainer(
            store,
            TrainerConfig(
                home=settings.home,
                coverage=settings.target_coverage,
                retrain_interval_s=settings.retrain_interval_s,
                recalibrate_interval_s=settings.recalibrate_interval_s,
                min_samples=settings.min_samples_for_retrain,
                test_share=settings.test_share,
                family=settings.model_family,
                calibration=calibration_params(settings),
                ensemble_mode=settings.ensemble_mode,
                compile_models=settings.trainer_compile,
                threads=settings.train_threads,
            ),
        )
        web = create_trainer_app(
            service, settings.max_batch, settings.model_family, settings.max_body_bytes
        )
        service.start(domains)
        where = f"{host}:{settings.trainer_port}"
        err.print(f"trainer on {where}, store {store.display_url}, domains {domains}")
    try:
        uvicorn.run(
            web,
            host=host,
            port=settings.trainer_port,
            log_level=log_level,
            log_config=log_config,
            access_log=access_log_shown(log_level),
        )
    finally:
        service.stop()
