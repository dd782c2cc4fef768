"""`sweep`, `report`, `evaluate`, `train` and `predict`: backtests, bundles and predictions
from a trace."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from slocast.artifacts import load_bundle, validate_records
from slocast.cli._common import (
    CoverageOpt,
    DatasetOpt,
    JsonOpt,
    app,
    calibration_params,
    err,
    exit_codes,
    merged_settings,
    progress_steps,
    read_dataset,
    timed,
    write_bundle,
)
from slocast.datasets import Dataset, parse_dataset_arg
from slocast.datasets._io import require_file
from slocast.errors import InputError
from slocast.evaluation import EvaluationResult, write_report
from slocast.evaluation.report import METRIC_COLUMNS, floor_notes
from slocast.evaluation.sweep import SweepJob, backtest
from slocast.models.base import GBMConfig
from slocast.models.quantile import QuantileForecaster
from slocast.settings import Settings, cores_per_worker


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


def _job(dataset: str, settings: Settings, threads: int = 2) -> SweepJob:
    return SweepJob(
        dataset,
        settings.target_coverage,
        settings.test_fraction,
        settings.calibration_fraction,
        settings.under_cost_ratio,
        settings.model_family,
        settings.seed,
        threads,
        calibration_params(settings),
    )


def _backtest(
    dataset: str, settings: Settings, step: Callable[[str], None]
) -> tuple[Dataset, EvaluationResult]:
    data = read_dataset(dataset, step)
    progress = lambda name: step(f"fitting and replaying {name}")  # noqa: E731
    return data, backtest(_job(dataset, settings), data, progress)


@app.command()
def sweep(
    dataset: Annotated[
        list[str], typer.Option("--dataset", help="KIND:PATH; repeat for every dataset.")
    ],
    workers: Annotated[int, typer.Option(min=1, help="Local Dask worker processes.")] = 2,
    scheduler: Annotated[
        str | None,
        typer.Option(help="A running Dask scheduler (tcp://host:8786) instead of a local one."),
    ] = None,
    target_coverage: CoverageOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per dataset on stdout.")
    ] = False,
) -> None:
    """The evaluate backtest over many datasets at once, on a Dask cluster (extra `dask`)."""
    from slocast.evaluation.sweep import run_sweep

    with exit_codes():
        for arg in dataset:
            parse_dataset_arg(arg)  # a typo fails here, before any cluster starts
        settings = merged_settings(target_coverage=target_coverage)
        jobs = [_job(arg, settings, cores_per_worker(workers)) for arg in dataset]
        with progress_steps() as step:
            results = run_sweep(jobs, scheduler, workers, lambda job: step(f"done {job.dataset}"))
    if as_json:
        for payload in results:
            sys.stdout.write(json.dumps(payload) + "\n")
        return
    table = Table(title=f"slocast evaluate over {len(results)} datasets (latest slice by time)")
    for column in ("dataset", "test jobs", "slocast coverage", "quantile_raw", "vs request"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for payload in results:
        methods = payload["methods"]
        request = methods.get("user_request")
        ratio = (
            f"{methods['slocast']['business_score'] / max(request['business_score'], 1e-12):.2f}x"
            if request
            else "-"
        )
        table.add_row(
            payload["argument"],
            f"{payload['test_rows']:,}",
            f"{methods['slocast']['coverage']:.3f}",
            f"{methods['quantile_raw']['coverage']:.3f}",
            ratio,
        )
    Console(width=160).print(table)


@app.command()
def report(
    dataset: DatasetOpt,
    out: Annotated[
        Path | None, typer.Option(help="Report directory (default: reports/<file name>).")
    ] = None,
    target_coverage: CoverageOpt = None,
) -> None:
    """Write a self-contained HTML report (and PNGs) of a time-ordered evaluation."""
    with exit_codes():
        settings = merged_settings(target_coverage=target_coverage)
        target = out or Path("reports") / parse_dataset_arg(dataset)[1].name.split(".")[0]
        with progress_steps() as step:
            _, result = _backtest(dataset, settings, step)
            page = timed("writing report", step, lambda: write_report(result, target))
        typer.echo(str(page))


def _grace_line(grace: float, unit: str, settings: Settings) -> str:
    if grace == 0:
        why = "no training job ran past its request"
    else:
        share = settings.request_limit_share * (1.0 - settings.target_coverage)
        why = f"at most {share:.1%} of training jobs ran further past theirs"
    return f"slocast caps bounds at the request + {grace:g} {unit}: {why}"


@app.command()
def evaluate(
    dataset: DatasetOpt,
    target_coverage: CoverageOpt = None,
    test_fraction: Annotated[
        float | None, typer.Option(help="Latest share of rows to test on.")
    ] = None,
    family: Annotated[str | None, typer.Option(help="lightgbm | xgboost | catboost")] = None,
    as_json: JsonOpt = False,
    report: Annotated[Path | None, typer.Option(help="Write an HTML/Markdown report here.")] = None,
) -> None:
    """Time-ordered backtest: slocast vs the raw quantile model and today's baselines."""
    with exit_codes():
        settings = merged_settings(
            target_coverage=target_coverage, test_fraction=test_fraction, model_family=family
        )
        with progress_steps() as step:
            data, result = _backtest(dataset, settings, step)
            page = report and timed("writing report", step, lambda: write_report(result, report))
        payload: dict[str, Any] = result.to_json()
        payload["dropped"] = data.dropped
        if as_json:
            sys.stdout.write(json.dumps(payload) + "\n")
        else:
            console = Console()
            if not console.is_terminal:  # piped into a file or CI log: room for every column
                console = Console(width=160)
            console.print(_table(result))
            grace = result.methods["slocast"].request_grace
            if grace is not None:
                console.print(_grace_line(grace, result.spec.unit, settings))
            for note in floor_notes(result):
                console.print(note)
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
        bool,
        typer.Option(
            "--compile/--no-compile", help="Also compile the trees (lleaves, or TL2cgen)."
        ),
    ] = True,
) -> None:
    """Train on all rows of a trace and write a model bundle."""
    with exit_codes():
        settings = merged_settings(target_coverage=target_coverage, model_family=family)
        with progress_steps() as step:
            data = read_dataset(dataset, step)
            base = QuantileForecaster(
                data.spec,
                settings.target_coverage,
                settings.model_family,
                GBMConfig(seed=settings.seed, threads=settings.train_threads),
            )
            version = write_bundle(
                data,
                dataset,
                base,
                calibration_params(settings),
                settings,
                out,
                compile_models,
                step,
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
    with exit_codes():
        model = load_bundle(bundle)
        if coverage is not None and not 0.5 < coverage < 1.0:
            raise InputError("coverage must be in (0.5, 1)", field="coverage")
        text = sys.stdin.read() if input_path == "-" else _read_input(Path(input_path))
        records, lines = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise InputError(
                        f"line {number} is not JSON: {exc}", field=f"line {number}"
                    ) from exc
                lines.append(number)
        # A bad job is named by its line: blank lines are skipped, so its index among the jobs
        # is not where to look in a long file.
        validate_records(records, model.spec, lines)
        predictions = model.predict_records(records, coverage, validated=True) if records else []
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


def _read_input(path: Path) -> str:
    require_file(path, "JSON lines file")
    return path.read_text()
