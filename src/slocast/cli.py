"""The slocast command line: the one place that wires settings, data, models and outputs.

Exit codes: 0 ok, 2 bad input (the message names the file / field), 1 internal error.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from slocast import __version__
from slocast.artifacts import load_bundle, save_bundle
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import Dataset, load_dataset, parse_dataset_arg
from slocast.errors import InputError, SlocastError
from slocast.evaluation import EvaluationResult, run_backtest, standard_methods, write_report
from slocast.evaluation.report import METRIC_COLUMNS
from slocast.models.base import GBMConfig
from slocast.models.quantile import QuantileForecaster
from slocast.schema import get_domain
from slocast.settings import Settings, load_settings

app = typer.Typer(
    name="slocast",
    help="Calibrated upper bounds for compute jobs: learn, calibrate, serve, decide.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
T = TypeVar("T")

DatasetOpt = Annotated[str, typer.Option("--dataset", help="KIND:PATH, e.g. swf:jobs.swf.gz")]
CoverageOpt = Annotated[
    float | None, typer.Option("--target-coverage", help="Promised coverage (default 0.9).")
]


def _settings(**overrides: object) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _params(settings: Settings) -> CalibrationParams:
    return CalibrationParams(
        settings.min_group_size,
        settings.calibration_window,
        settings.aci_step,
        settings.aci_overflow_gain,
    )


def _fail(code: int, message: str) -> typer.Exit:
    # Plain text, never wrapped: scripts grep these messages for the file and field.
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Map slocast's error hierarchy to exit codes in one place."""
    try:
        yield
    except InputError as exc:
        raise _fail(2, str(exc)) from exc
    except SlocastError as exc:
        raise _fail(1, str(exc)) from exc


@contextmanager
def _progress() -> Iterator[Callable[[str], None]]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("starting")
        yield lambda step: progress.update(task, description=step)


def _timed(label: str, step: Callable[[str], None], work: Callable[[], T]) -> T:
    step(label)
    return work()


def _load(dataset_arg: str, step: Callable[[str], None]) -> Dataset:
    parse_dataset_arg(dataset_arg)
    return _timed(f"reading {dataset_arg}", step, lambda: load_dataset(dataset_arg))


def _file_sha256(dataset_arg: str) -> str:
    path = parse_dataset_arg(dataset_arg)[1]
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _table(result: EvaluationResult) -> Table:
    table = Table(title=f"{result.spec.name}: {len(result.split.test)} test jobs (latest by time)")
    table.add_column("method")
    for _, label, _ in METRIC_COLUMNS:
        table.add_column(label, justify="right")
    baseline = result.methods.get("user_request")
    if baseline:
        table.add_column("score vs request", justify="right")
    for name, method in result.methods.items():
        values = method.metrics.to_dict()
        cells = [fmt.format(values[key]) for key, _, fmt in METRIC_COLUMNS]
        if baseline:
            ratio = values["business_score"] / max(baseline.metrics.business_score, 1e-12)
            cells.append(f"{ratio:.2f}x")
        table.add_row(name, *cells, style="bold" if name == "slocast" else None)
    return table


@app.command()
def evaluate(
    dataset: DatasetOpt,
    target_coverage: CoverageOpt = None,
    test_fraction: Annotated[
        float | None, typer.Option(help="Latest share of rows to test on.")
    ] = None,
    family: Annotated[str | None, typer.Option(help="lightgbm | xgboost | catboost")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
    report: Annotated[Path | None, typer.Option(help="Write an HTML/Markdown report here.")] = None,
) -> None:
    """Time-ordered backtest: slocast vs the raw quantile model and today's baselines."""
    with _errors():
        settings = _settings(
            target_coverage=target_coverage, test_fraction=test_fraction, model_family=family
        )
        with _progress() as step:
            data = _load(dataset, step)
            methods = standard_methods(
                data.spec,
                settings.target_coverage,
                settings.model_family,
                GBMConfig(seed=settings.seed),
                _params(settings),
            )
            result = run_backtest(
                data,
                methods,
                settings.target_coverage,
                settings.test_fraction,
                settings.calibration_fraction,
                settings.under_cost_ratio,
                progress=lambda name: step(f"fitting and replaying {name}"),
            )
            page = report and _timed("writing report", step, lambda: write_report(result, report))
        payload: dict[str, Any] = result.to_json()
        payload["dropped"] = data.dropped
        if as_json:
            sys.stdout.write(json.dumps(payload) + "\n")
        else:
            console = Console()
            if not console.is_terminal:  # piped into a file or CI log: room for every column
                console = Console(width=160)
            console.print(_table(result))
            if data.dropped:
                console.print(f"dropped rows: {data.dropped}")
        if page:
            err.print(f"report: {page}")


@app.command()
def train(
    dataset: DatasetOpt,
    out: Annotated[Path, typer.Option(help="Bundle directory to create.")],
    target_coverage: CoverageOpt = None,
    family: Annotated[str | None, typer.Option(help="lightgbm | xgboost | catboost")] = None,
    compile_models: Annotated[
        bool, typer.Option("--compile/--no-compile", help="Also compile the trees (TL2cgen).")
    ] = True,
) -> None:
    """Train on all rows of a trace and write a model bundle."""
    with _errors():
        settings = _settings(target_coverage=target_coverage, model_family=family)
        with _progress() as step:
            data = _load(dataset, step)
            base = QuantileForecaster(
                data.spec,
                settings.target_coverage,
                settings.model_family,
                GBMConfig(seed=settings.seed),
            )
            step("fitting and calibrating")
            forecaster, n_train, n_cal = fit_on_history(
                data.frame, base, _params(settings), settings.calibration_fraction
            )
            step("compiling trees and writing bundle" if compile_models else "writing bundle")
            version = save_bundle(
                forecaster,
                out,
                provenance={
                    "dataset": dataset,
                    "dataset_sha256": _file_sha256(dataset),
                    "rows": data.rows,
                    "dropped": data.dropped,
                },
                metrics={"train_rows": n_train, "calibration_rows": n_cal},
                compile_models=compile_models,
            )
        err.print(f"bundle {version} written to {out}")


@app.command()
def predict(
    bundle: Annotated[Path, typer.Option(help="Bundle directory (from `slocast train`).")],
    input_path: Annotated[
        str, typer.Option("--input", help="JSON lines file, or - for stdin.")
    ] = "-",
    coverage: Annotated[
        float | None, typer.Option(help="Coverage to bound at (default: the bundle's promise).")
    ] = None,
) -> None:
    """Read jobs as JSON lines, write one prediction per line."""
    with _errors():
        model = load_bundle(bundle)
        if coverage is not None and not 0.5 < coverage < 1.0:
            raise InputError("coverage must be in (0.5, 1)", field="coverage")
        text = sys.stdin.read() if input_path == "-" else _read_input(Path(input_path))
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise InputError(
                        f"line {number} is not JSON: {exc}", field=f"line {number}"
                    ) from exc
        predictions = model.predict_records(records, coverage) if records else []
        out = sys.stdout
        for p in predictions:
            out.write(
                json.dumps(
                    {
                        "point": p.point,
                        "upper": p.upper,
                        "coverage": p.coverage,
                        "model_version": p.model_version,
                        "domain": model.spec.name,
                    }
                )
                + "\n"
            )


serve_app = typer.Typer(help="Run a prediction server.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")

BundlesOpt = Annotated[
    list[Path] | None, typer.Option("--bundle", help="Bundle directory (repeat: one per domain).")
]


def _build_dataplane(bundle_dirs: list[Path], settings: Settings) -> Any:
    from slocast.serving import DataPlane, LRUCache, RedisCache

    cache = (
        RedisCache(settings.cache_url) if settings.cache_url else LRUCache(settings.cache_entries)
    )
    bundles = [load_bundle(path) for path in bundle_dirs]
    domains = [b.spec.name for b in bundles]
    duplicated = {d for d in domains if domains.count(d) > 1}
    if duplicated:
        raise InputError(f"two bundles for domain {sorted(duplicated)[0]}", field="--bundle")
    return DataPlane(
        bundles, cache, max_batch=settings.max_batch, llm_coverage=settings.target_coverage
    )


def _local_reloader(dataplane: Any, bundle_dirs: list[Path]) -> Any:
    """``/reload`` re-reads the bundle directories; a bad bundle is refused, the old one serves."""
    from slocast.serving import ReloadResult

    async def reload() -> ReloadResult:
        swapped = False
        for path in bundle_dirs:
            try:
                swapped |= dataplane.swap(load_bundle(path))
            except SlocastError as exc:
                dataplane.metrics.bundles_refused.inc()
                return ReloadResult(False, False, f"refused {path}: {exc}")
        return ReloadResult(True, swapped, "reloaded" if swapped else "already current")

    return reload


@serve_app.command("http")
def serve_http(
    bundle: BundlesOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (env PREDICT_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env PREDICT_PORT, default 8001).")] = None,
    training_server_url: Annotated[
        str | None,
        typer.Option(help="Pull bundles from this slocast trainer (env TRAINING_SERVER_URL)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve calibrated bounds over HTTP (llm-d prediction-server API + /v1 routes)."""
    import uvicorn

    from slocast.serving import HTTPConfig, create_app
    from slocast.serving.sync import TrainerSync

    with _errors():
        settings = _settings(
            serve_host=host, serve_port=port, training_server_url=training_server_url
        )
        bundle_dirs = list(bundle or [])
        dataplane = _build_dataplane(bundle_dirs, settings)
        config = HTTPConfig(
            max_batch=settings.max_batch,
            model_type=settings.model_family,
            training_server_url=settings.training_server_url,
            sync_interval_s=settings.model_sync_interval_s,
        )
        if settings.training_server_url:
            sync = TrainerSync(settings.training_server_url, settings.home / "synced", dataplane)
            interval = settings.model_sync_interval_s
            web = create_app(dataplane, config, sync.sync, lambda: sync.run(interval))
        else:
            web = create_app(dataplane, config, _local_reloader(dataplane, bundle_dirs))
        where = f"{settings.serve_host}:{settings.serve_port}"
        err.print(f"serving {', '.join(sorted(dataplane.models))} on {where}")
    uvicorn.run(web, host=settings.serve_host, port=settings.serve_port, log_level=log_level)


@serve_app.command("grpc")
def serve_grpc(
    bundle: BundlesOpt = None,
    port: Annotated[int, typer.Option(help="gRPC port.")] = 50051,
    host: Annotated[str, typer.Option(help="Bind address.")] = "0.0.0.0",
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this port.")
    ] = None,
) -> None:
    """Serve calibrated bounds over gRPC (slocast.v1.Predictor, health, reflection)."""
    from prometheus_client import start_http_server

    from slocast.serving.grpc import create_grpc_server

    with _errors():
        settings = _settings()
        dataplane = _build_dataplane(list(bundle or []), settings)
        server, bound = create_grpc_server(dataplane, f"{host}:{port}")
        if metrics_port is not None:
            start_http_server(metrics_port, registry=dataplane.metrics.registry)
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
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Continuous training server: durable ingest, background retraining, gated bundles."""
    import uvicorn

    from slocast.store import SampleStore, sqlite_url
    from slocast.trainer.http import create_trainer_app
    from slocast.trainer.service import Trainer, TrainerConfig

    with _errors():
        settings = _settings(trainer_port=port)
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
                min_samples=settings.min_samples_for_retrain,
                test_share=settings.test_share,
                family=settings.model_family,
                calibration=_params(settings),
            ),
        )
        web = create_trainer_app(service, settings.max_batch, settings.model_family)
        service.start(domains)
        err.print(
            f"trainer on {host}:{settings.trainer_port}, store {store.url}, domains {domains}"
        )
    try:
        uvicorn.run(web, host=host, port=settings.trainer_port, log_level=log_level)
    finally:
        service.stop()


def _read_input(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"no such file: {path}", source=str(path))
    return path.read_text()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slocast {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """slocast: calibrated upper bounds for compute jobs."""


def main() -> None:
    app()
