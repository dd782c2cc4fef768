"""The slocast command line: the one place that wires settings, data, models and outputs.

Exit codes: 0 ok, 2 bad input (the message names the file / field), 1 internal error.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import orjson
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from slocast import __version__
from slocast.artifacts import load_bundle, save_bundle, sha256_file
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import Dataset, load_dataset, parse_dataset_arg
from slocast.errors import EmptyDataError, InputError, SlocastError
from slocast.evaluation import EvaluationResult, write_report
from slocast.evaluation.report import METRIC_COLUMNS, floor_notes
from slocast.evaluation.sweep import SweepJob, backtest
from slocast.logs import configure_logging
from slocast.models.base import GBMConfig
from slocast.models.quantile import QuantileForecaster
from slocast.schema import get_domain
from slocast.settings import Settings, cores_per_worker, load_settings

app = typer.Typer(
    name="slocast",
    help="Calibrated upper bounds for compute jobs: learn, calibrate, serve, decide.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
log = logging.getLogger("slocast.cli")
T = TypeVar("T")

DatasetOpt = Annotated[str, typer.Option("--dataset", help="KIND:PATH, e.g. swf:jobs.swf.gz")]
CoverageOpt = Annotated[
    float | None, typer.Option("--target-coverage", help="Promised coverage (default 0.9).")
]


def _settings(**overrides: object) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _params(settings: Settings) -> CalibrationParams:
    # By name: eight numbers in a row are one swapped pair away from a silent mix-up.
    return CalibrationParams(
        min_group_size=settings.min_group_size,
        window=settings.calibration_window,
        aci_step=settings.aci_step,
        overflow_gain=settings.aci_overflow_gain,
        aci_experts=settings.aci_experts,
        request_until=settings.request_until,
        request_limit_share=settings.request_limit_share,
        decay=settings.calibration_decay,
        level_bins=settings.level_bins,
        history_expert=settings.history_expert,
        under_cost_ratio=settings.under_cost_ratio,
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
    except OSError as exc:
        if exc.filename is None:
            raise
        # A path the user gave (--out, --storage, ...) that cannot be written or read.
        raise _fail(2, f"{exc.strerror or exc}: {exc.filename}") from exc


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
    return sha256_file(parse_dataset_arg(dataset_arg)[1])


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
        _params(settings),
    )


def _backtest(
    dataset: str, settings: Settings, step: Callable[[str], None]
) -> tuple[Dataset, EvaluationResult]:
    data = _load(dataset, step)
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

    with _errors():
        for arg in dataset:
            parse_dataset_arg(arg)  # a typo fails here, before any cluster starts
        settings = _settings(target_coverage=target_coverage)
        jobs = [_job(arg, settings, cores_per_worker(workers)) for arg in dataset]
        with _progress() as step:
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
    with _errors():
        settings = _settings(target_coverage=target_coverage)
        target = out or Path("reports") / parse_dataset_arg(dataset)[1].name.split(".")[0]
        with _progress() as step:
            _, result = _backtest(dataset, settings, step)
            page = _timed("writing report", step, lambda: write_report(result, target))
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
            data, result = _backtest(dataset, settings, step)
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
            grace = result.methods["slocast"].request_grace
            if grace is not None:
                console.print(_grace_line(grace, result.spec.unit, settings))
            for note in floor_notes(result):
                console.print(note)
            if data.dropped:
                console.print(f"dropped rows: {data.dropped}")
        if page:
            err.print(f"report: {page}")


def _write_bundle(
    data: Dataset,
    dataset_arg: str,
    base: QuantileForecaster,
    params: CalibrationParams,
    settings: Settings,
    out: Path,
    compile_models: bool,
    step: Callable[[str], None],
    provenance: dict[str, object] | None = None,
    metrics: dict[str, object] | None = None,
) -> str:
    """Fit on all rows (the newest calibrate), write the bundle; return its version."""
    step(f"fitting and calibrating {base.family}")
    forecaster, n_train, n_cal = fit_on_history(
        data.frame, base, params, settings.calibration_fraction
    )
    step("compiling trees and writing bundle" if compile_models else "writing bundle")
    return save_bundle(
        forecaster,
        out,
        provenance={
            "dataset": dataset_arg,
            "dataset_sha256": _file_sha256(dataset_arg),
            "rows": data.rows,
            "dropped": data.dropped,
            **(provenance or {}),
        },
        metrics={"train_rows": n_train, "calibration_rows": n_cal, **(metrics or {})},
        compile_models=compile_models,
    )


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
    with _errors():
        settings = _settings(target_coverage=target_coverage, model_family=family)
        with _progress() as step:
            data = _load(dataset, step)
            base = QuantileForecaster(
                data.spec,
                settings.target_coverage,
                settings.model_family,
                GBMConfig(seed=settings.seed, threads=settings.train_threads),
            )
            version = _write_bundle(
                data, dataset, base, _params(settings), settings, out, compile_models, step
            )
        err.print(f"bundle {version} written to {out}")


def _require(module: str, extra: str, what: str) -> None:
    """A clear exit-2 message instead of an ImportError when an optional extra is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError(f"{what} needs {module}: pip install 'slocast[{extra}]'", field=extra)


def _bins_range(value: str) -> tuple[int, int]:
    low, sep, high = value.partition("-")
    try:
        return (int(low), int(high if sep else low))
    except ValueError as exc:
        raise InputError(f"--bins expects MIN-MAX, got {value!r}", field="bins") from exc


def _tune_families(families: list[str] | None, task_type: str, all_archs: bool) -> list[str]:
    from slocast.models.families import FAMILIES, available_families
    from slocast.tuning import TASK_TYPES

    if task_type not in TASK_TYPES:
        raise InputError(
            f"unknown task type {task_type!r}; known: {', '.join(TASK_TYPES)}", field="task_type"
        )
    if families:
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise InputError(
                f"unknown model family {unknown[0]!r}; known: {', '.join(FAMILIES)}",
                field="family",
            )
        return families
    chosen = [f for t in TASK_TYPES.values() for f in t] if all_archs else TASK_TYPES[task_type]
    # catboost is slow to search and has no compiled path: searched only when named.
    return [f for f in chosen if f in available_families() and f != "catboost"]


def _tune_table(result: Any) -> Table:
    from slocast.tuning.report import comparison_rows
    from slocast.tuning.workbench import metrics_summary

    request = result.baselines.get("user_request")
    table = Table(
        title=f"{result.domain}: best model per family on the latest {result.test_rows} jobs"
    )
    columns = ["model", "business score", "under %", "over %", "coverage", "cv score", "trials"]
    for column in [*columns, *(["vs request"] if request else [])]:
        table.add_column(column, justify="left" if column == "model" else "right")
    rows = comparison_rows(result)
    for name, (_, _) in result.strategies.items():
        metrics = result.backtest.methods[name].metrics
        rows.append({"model": f"strategy:{name}", **metrics_summary(metrics)})
    for row in rows:
        cells = [
            str(row["model"]),
            f"{row['business_score']:.1f}",
            f"{row['under_alloc_pct']:.2f}",
            f"{row['over_alloc_pct']:.1f}",
            f"{row['coverage']:.3f}",
            "" if row.get("cv_score") is None else f"{row['cv_score']:.1f}",
            str(row.get("trials", "")),
        ]
        if request:
            score = float(row["business_score"])  # type: ignore[arg-type]
            cells.append(f"{score / max(request.business_score, 1e-12):.2f}x")
        table.add_row(*cells, style="bold" if row["model"] == result.best else None)
    return table


def _retry_table(result: Any) -> Table:
    policy = result.retry_policy
    table = Table(
        title=f"allocation x runtime incl. failed attempts (retry x{policy.multiplier:g}, "
        f"at most {policy.max_attempts} attempts)"
    )
    for column in ("policy", "allocation-time", "vs exact sizing", "retried jobs", "failed jobs"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for name, outcome in result.retry.items():
        table.add_row(
            name,
            f"{outcome.allocation_time:.4g}",
            f"+{outcome.overhead_pct:.1f}%",
            str(outcome.retried_jobs),
            str(outcome.failed_jobs),
        )
    return table


@app.command()
def tune(
    dataset: DatasetOpt,
    family: Annotated[
        list[str] | None,
        typer.Option("--family", help="Family to search (repeatable); default: the task type's."),
    ] = None,
    task_type: Annotated[
        str, typer.Option("--task-type", help="regression | classification (memory bins).")
    ] = "regression",
    evaluate_all_archs: Annotated[
        bool,
        typer.Option(
            "--evaluate-all-archs",
            help="Search every family of both task types and write the comparison report.",
        ),
    ] = False,
    run_search: Annotated[
        bool,
        typer.Option(
            "--run-search/--no-run-search",
            help="Run the Optuna search (default), or score each family's defaults.",
        ),
    ] = True,
    trials: Annotated[int, typer.Option(help="Trials per family (added to a resumed study).")] = 30,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds per family's search (stops early).")
    ] = None,
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="Parallel trials.")] = 1,
    folds: Annotated[int, typer.Option(help="Time-series cross-validation folds.")] = 3,
    pruner: Annotated[str, typer.Option(help="median | hyperband | none")] = "median",
    max_under_pct: Annotated[
        float | None,
        typer.Option(help="Constraint: at most this % of under-allocated jobs (e.g. 1)."),
    ] = None,
    bins: Annotated[
        str, typer.Option(help="Bin counts searched by classification families, MIN-MAX.")
    ] = "3-15",
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna RDB URL (default: a SQLite file under SLOCAST_HOME/tuning)."),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="Study name prefix (default: from the data file's hash).")
    ] = None,
    skip_preprocessing: Annotated[
        bool, typer.Option("--skip-preprocessing", help="Use the cached preprocessed data only.")
    ] = False,
    preprocess_only: Annotated[
        bool, typer.Option("--preprocess-only", help="Build the preprocessed cache and stop.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Write each family's best model as a bundle here.")
    ] = None,
    compile_models: Annotated[
        bool,
        typer.Option("--compile/--no-compile", help="Compile bundled trees (lleaves, or TL2cgen)."),
    ] = True,
    report: Annotated[
        Path | None, typer.Option(help="Write the comparison report (PNG/HTML/MD/JSON) here.")
    ] = None,
    target_coverage: CoverageOpt = None,
    test_fraction: Annotated[
        float | None, typer.Option(help="Latest share of rows to test on.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
) -> None:
    """Search model families on business cost; compare them, pick strategies, cost retries."""
    with _errors():
        _require("optuna", "tune", "slocast tune")
    from slocast.tuning import SearchConfig, preprocess
    from slocast.tuning import tune as run_tune
    from slocast.tuning.cache import CacheMode
    from slocast.tuning.report import write_tune_report

    with _errors():
        settings = _settings(target_coverage=target_coverage, test_fraction=test_fraction)
        if skip_preprocessing and preprocess_only:
            raise InputError(
                "--skip-preprocessing and --preprocess-only exclude each other",
                field="preprocess_only",
            )
        families = _tune_families(family, task_type, evaluate_all_archs)
        kind = parse_dataset_arg(dataset)[0]
        prefix = study_name or (
            f"{kind}-{_file_sha256(dataset)[:12]}-f{folds}-r{settings.under_cost_ratio:g}"
            f"-t{settings.test_fraction:g}"
        )
        tuning_home = settings.home / "tuning"
        search = SearchConfig(
            trials=trials,
            timeout_s=timeout,
            n_jobs=n_jobs,
            folds=folds,
            storage=storage or f"sqlite:///{tuning_home / 'optuna.db'}",
            study_prefix=prefix,
            pruner=pruner,
            max_under_pct=max_under_pct,
            under_cost_ratio=settings.under_cost_ratio,
            calibration_fraction=settings.calibration_fraction,
            seed=settings.seed,
            bins=_bins_range(bins),
        )
        if search.storage and search.storage.startswith("sqlite:///"):
            tuning_home.mkdir(parents=True, exist_ok=True)
        mode: CacheMode = "only" if preprocess_only else "skip" if skip_preprocessing else "auto"
        with _progress() as step:
            step(f"preprocessing {dataset}")
            data = preprocess(dataset, settings.home / "cache", mode)
            if preprocess_only:
                err.print(f"preprocessed {data.rows} rows into {settings.home / 'cache'}")
                return
            result = run_tune(
                data,
                families,
                search if run_search else None,
                coverage=settings.target_coverage,
                test_fraction=settings.test_fraction,
                calibration_fraction=settings.calibration_fraction,
                under_cost_ratio=settings.under_cost_ratio,
                folds=folds,
                progress=step,
            )
            page = None
            if report or evaluate_all_archs:
                target = report or Path("reports") / f"tune-{Path(data.source).name.split('.')[0]}"
                page = _timed("writing report", step, lambda: write_tune_report(result, target))
            for name, outcome in result.families.items() if out else ():
                assert out is not None
                candidate = outcome.candidate
                _write_bundle(
                    data,
                    dataset,
                    QuantileForecaster(
                        data.spec,
                        candidate.coverage,
                        candidate.family,
                        candidate.config,
                        anchor=candidate.anchor,
                    ),
                    candidate.calibration,
                    settings,
                    out / name,
                    compile_models,
                    step,
                    provenance={"tuning": candidate.describe(), "cv": outcome.cv},
                    metrics={"test": result.to_json()["families"][name]["test"]},  # type: ignore[index]
                )
        if as_json:
            sys.stdout.write(json.dumps(result.to_json(), default=float) + "\n")
        else:
            console = Console()
            if not console.is_terminal:
                console = Console(width=160)
            console.print(_tune_table(result))
            for note in floor_notes(result.backtest):
                console.print(note)
            console.print(_retry_table(result))
        if page:
            err.print(f"report: {page}")
        if out:
            err.print(f"bundles: {', '.join(str(out / f) for f in result.families)}")


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


def _autoscale_policies(scenario: Any, names: list[str]) -> list[Any]:
    from slocast.decisions.autoscaler import HPA, KedaRps, PredictiveAutoscaler, ReplicaCorrector

    rate, slo, percentile = scenario.service_rate, scenario.slo_s, scenario.percentile
    startup = scenario.startup_s  # the model-based controllers know how long a pod takes
    every = {
        "hpa": lambda: HPA(),
        # Same utilisation target as the HPA, expressed as requests per replica.
        "keda-rps": lambda: KedaRps(rate * 0.6),
        "erlang-pid": lambda: ReplicaCorrector(rate, slo, percentile, startup_s=startup),
        "predictive": lambda: PredictiveAutoscaler(rate, slo, percentile, startup_s=startup),
    }
    return _pick(every, names)


def _pick(every: dict[str, Callable[[], Any]], names: list[str]) -> list[Any]:
    if names == ["all"]:
        names = list(every)
    unknown = [n for n in names if n not in every]
    if unknown:
        raise InputError(
            f"unknown policy {unknown[0]!r} for this scenario; known: {', '.join(every)}",
            field="policy",
        )
    return [every[n]() for n in names]


@app.command()
def simulate(
    scenario: Annotated[str, typer.Option(help="autoscale | route | place | pipeline")],
    trace: Annotated[
        str,
        typer.Option(help="KIND:PATH: twitter (rates), azure, mooncake, alibaba-stages (dir)."),
    ],
    policy: Annotated[
        list[str] | None, typer.Option(help="Policy to run (repeatable), or all (default).")
    ] = None,
    slo_ms: Annotated[
        float | None, typer.Option(help="Latency SLO (autoscale: response; route: TTFT).")
    ] = None,
    percentile: Annotated[float, typer.Option(help="Autoscale: SLO percentile.")] = 0.99,
    start_s: Annotated[int, typer.Option(help="Rate traces: first second to replay.")] = 0,
    history_s: Annotated[
        int,
        typer.Option(
            help="Autoscale: seconds before --start-s on record when the replay starts (up to "
            "the trace's start); the predictive scaler replays them through its forecasters, "
            "the reactive policies have no use for them."
        ),
    ] = 86_400,
    duration_s: Annotated[
        int | None, typer.Option(help="Rate traces: seconds to replay (default: 6 h).")
    ] = 6 * 3600,
    service_ms: Annotated[
        float, typer.Option(help="Autoscale: mean service time (SLO default: 10x this).")
    ] = 100.0,
    startup_s: Annotated[float, typer.Option(help="Autoscale: replica start-up time.")] = 20.0,
    requests: Annotated[
        int | None, typer.Option(help="Route: replay only the first N requests.")
    ] = None,
    replicas: Annotated[int, typer.Option(help="Route: model-server replicas.")] = 4,
    load: Annotated[
        float, typer.Option(help="Route: arrival-rate multiplier (compresses time).")
    ] = 1.0,
    retrain_every: Annotated[
        int,
        typer.Option(
            help="Route: scored requests between refits of the SLO-aware router's model on "
            "the outcomes known so far (0: never)."
        ),
    ] = 500,
    router_coverage: Annotated[
        float,
        typer.Option(
            help="Route: coverage of the TTFT bounds the SLO-aware router compares (a 0.99 "
            "bound of one request is estimated from the thin tail and ranks replicas by noise)."
        ),
    ] = 0.9,
    router_margin: Annotated[
        float,
        typer.Option(
            help="Route: replicas whose bound is within this share of the lowest (or meets the "
            "SLO) count as good enough; among them the SLO-aware router keeps the prompt where "
            "it is cached (0: the lowest bound only, unless others meet the SLO)."
        ),
    ] = 0.5,
    shed_above: Annotated[
        float,
        typer.Option(
            help="Route: slo-aware-shed turns a request away when its predicted median TTFT "
            "exceeds this multiple of the SLO on every replica (1: wherever it goes, it is "
            "likelier to miss the SLO than to meet it)."
        ),
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for every random draw.")] = 0,
    predictor_bundle: Annotated[
        Path | None,
        typer.Option(
            help="Route: the SLO-aware router predicts TTFT with this llm-ttft bundle "
            "(default: a model learned from the simulation's warm-up telemetry)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write latency CDF + replicas plot (PNG).")
    ] = None,
) -> None:
    """Replay a real trace through decision policies side by side (discrete-event, simpy)."""
    with _errors():
        _require("simpy", "sim", "slocast simulate")
        if seed < 0:  # numpy's generators take none
            raise InputError(f"--seed must be >= 0, got {seed}", field="seed")
        from slocast.sim.plots import plot_results
        from slocast.sim.traces import parse_trace_arg

        kind, path = parse_trace_arg(trace)
        names = policy or ["all"]
        with _progress() as step:
            if scenario == "autoscale":
                results = _run_autoscale(
                    kind, path, names, slo_ms, percentile, start_s, duration_s,
                    service_ms, startup_s, seed, step, history_s,
                )  # fmt: skip
            elif scenario == "route":
                results = _run_route(
                    kind, path, names, slo_ms, requests, replicas, load, seed, step,
                    predictor_bundle, retrain_every, router_coverage, router_margin, shed_above,
                )  # fmt: skip
            elif scenario == "place":
                results = _run_place(kind, path, names, slo_ms, replicas, load, seed, step)
            elif scenario == "pipeline":
                _pipeline(kind, path, trace, seed, as_json, plot)
                return
            else:
                raise InputError(
                    f"unknown scenario {scenario!r}; known: autoscale, route, place, pipeline",
                    field="scenario",
                )
        payload = {
            "scenario": scenario,
            "trace": trace,
            "policies": {name: r.summary() for name, r in results.items()},
        }
        if plot:
            plot_results(results, plot, f"slocast simulate {scenario}: {path.name}")
        if as_json:
            sys.stdout.write(json.dumps(payload, default=float) + "\n")
        else:
            table = Table(title=f"{scenario} on {path.name}")
            columns = ["slo_attainment_pct", "p50_ms", "p90_ms", "p99_ms", "replica_seconds",
                       "scale_events", "dropped"]  # fmt: skip
            table.add_column("policy")
            for column in columns:
                table.add_column(column, justify="right")
            for name, summary in payload["policies"].items():  # type: ignore[attr-defined]
                table.add_row(name, *(f"{summary[c]:,.2f}" for c in columns))
            Console(width=160).print(table)
        if plot:
            err.print(f"plot: {plot}")


def _run_place(
    kind: str,
    path: Path,
    names: list[str],
    slo_ms: float | None,
    servers: int,
    load: float,
    seed: int,
    step: Callable[[str], None],
) -> dict[str, Any]:
    from slocast.sim.place import PlacementRequests, PlaceScenario, simulate_place

    if kind != "alibaba-lora":
        raise InputError("the place scenario replays alibaba-lora:PATH requests", field="trace")
    requests = PlacementRequests.from_frame(load_dataset(f"{kind}:{path}").frame)
    scenario = PlaceScenario(
        servers=servers,
        load=load,
        slo_s=(slo_ms or PlaceScenario.slo_s * 1000.0) / 1000.0,
        seed=seed,
    )
    names_only: dict[str, Callable[[], Any]] = {
        n: partial(str, n) for n in ("round-robin", "least-loaded", "random", "cache-aware")
    }
    results = {}
    for name in _pick(names_only, names):
        step(f"replaying {name}")
        results[name] = simulate_place(requests, name, scenario)
    return results


def _pipeline(
    kind: str, path: Path, trace: str, seed: int, as_json: bool, plot: Path | None
) -> None:
    """Stage-latency forecasting for smoothing: no smoothing vs untrained vs learned blend vs
    online expert weights."""
    from slocast.sim.pipeline import compare_smoothers, load_stage_series, online_weights
    from slocast.sim.plots import plot_pipeline

    if kind != "alibaba-stages":
        raise InputError("the pipeline scenario reads alibaba-stages:DIR", field="trace")
    series = load_stage_series(path)
    errors = compare_smoothers(series, seed=seed)
    if plot:
        title = f"slocast simulate pipeline: {path.name}"
        plot_pipeline(errors, online_weights(series), plot, title)
        err.print(f"plot: {plot}")
    variants = ("no-smoothing", "untrained", "learned", "online")
    policies = {
        v: {
            "mae_log_latency": float(np.mean([e[v] for e in errors.values()])),
            **{f"mae_{stage}": e[v] for stage, e in errors.items()},
        }
        for v in variants
    }
    if as_json:
        payload = {"scenario": "pipeline", "trace": trace, "policies": policies}
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    table = Table(title="next-minute stage latency: mean absolute error (log), newer 30%")
    table.add_column("variant")
    for stage in errors:
        table.add_column(stage, justify="right")
    table.add_column("mean", justify="right")
    for v in variants:
        cells = [f"{errors[stage][v]:.4f}" for stage in errors]
        table.add_row(v, *cells, f"{policies[v]['mae_log_latency']:.4f}")
    Console(width=140).print(table)


def _run_autoscale(
    kind: str,
    path: Path,
    names: list[str],
    slo_ms: float | None,
    percentile: float,
    start_s: int,
    duration_s: int | None,
    service_ms: float,
    startup_s: float,
    seed: int,
    step: Callable[[str], None],
    history_s: int,
) -> dict[str, Any]:
    from slocast.sim import AutoscaleScenario, simulate_autoscale
    from slocast.sim.traces import load_rates

    if kind != "twitter":
        raise InputError(
            "the autoscale scenario replays a rate trace (twitter:PATH)", field="trace"
        )
    for flag, value in (("start_s", start_s), ("history_s", history_s)):
        if value < 0:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 0", field=flag)
    if duration_s is not None and duration_s < 1:
        raise InputError(f"--duration-s must be >= 1, got {duration_s}", field="duration_s")
    if not 0 < service_ms < math.inf:
        raise InputError(
            f"--service-ms must be a finite number > 0, got {service_ms}", field="service_ms"
        )
    first = max(0, start_s - history_s)
    on_record = start_s - first
    rates = load_rates(path, first, None if duration_s is None else on_record + duration_s)
    history, rates = rates[:on_record], rates[on_record:]
    if len(rates) == 0:
        raise EmptyDataError("no seconds in the selected slice", source=str(path))
    scenario = AutoscaleScenario(
        service_rate=1000.0 / service_ms,
        slo_s=(slo_ms or 10.0 * service_ms) / 1000.0,
        percentile=percentile,
        startup_s=startup_s,
        seed=seed,
    )
    results = {}
    for policy in _autoscale_policies(scenario, names):
        name = str(policy.name)

        def report(done: float, name: str = name) -> None:
            step(f"{name}: {done:.0%}")

        results[name] = simulate_autoscale(rates, policy, scenario, report, history)
        phase = getattr(policy, "phase", None)
        if phase is not None:
            results[name].extra.update(
                history_s=float(on_record),
                reservations=float(policy.reservations),
                phase_period_s=float(phase.period or 0),
            )
    return results


def _run_route(
    kind: str,
    path: Path,
    names: list[str],
    slo_ms: float | None,
    requests: int | None,
    replicas: int,
    load: float,
    seed: int,
    step: Callable[[str], None],
    predictor_bundle: Path | None = None,
    retrain_every: int = 500,
    router_coverage: float = 0.9,
    router_margin: float = 0.5,
    shed_above: float = 1.0,
) -> dict[str, Any]:
    from slocast.decisions.router import (
        LeastLoaded,
        LeastWork,
        PrefixAware,
        RoundRobin,
        SLOAwareRouter,
        check_router_options,
    )
    from slocast.sim.route import (
        RouteScenario,
        Telemetry,
        bundle_ttft_predictor,
        simulate_route,
        train_ttft_predictor,
    )
    from slocast.sim.traces import load_llm_requests

    if not 0.0 < router_coverage < 1.0:
        raise InputError("router coverage must be in (0, 1)", field="router_coverage")
    check_router_options(router_margin, shed_above)
    trace = load_llm_requests(kind, path, requests)
    scenario = RouteScenario(
        replicas=replicas,
        ttft_slo_s=(slo_ms or 2000.0) / 1000.0,
        load=load,
        retrain_every=retrain_every,
    )

    def learner(rows: Any) -> Any:
        return train_ttft_predictor(rows, router_coverage, seed)

    if predictor_bundle is not None:
        predictor = bundle_ttft_predictor(load_bundle(predictor_bundle), router_coverage)
    else:
        step("warm-up: collecting routing telemetry")
        telemetry = Telemetry()
        simulate_route(trace, LeastLoaded(), scenario, telemetry)
        rows = telemetry.frame()
        # Train only on outcomes known before the scored part of the trace begins.
        warm_end = float(trace.arrival_s[int(len(trace) * scenario.warmup_fraction)]) / load
        known = rows[rows["known_at"] <= warm_end] if len(rows) else rows
        if len(known) == 0:
            raise InputError(
                f"no request of the warm-up (the first {scenario.warmup_fraction:.0%} of "
                f"{len(trace)} requests) had its first token before scoring starts: the "
                "router's TTFT model has nothing to learn from; replay more requests "
                "(--requests)",
                field="requests",
            )
        step(f"training the TTFT model on {len(known)} rows")
        predictor = learner(known)
    every = {
        "round-robin": RoundRobin,
        "least-loaded": LeastLoaded,
        "least-work": LeastWork,
        "prefix-aware": PrefixAware,
        "slo-aware": lambda: SLOAwareRouter(predictor, scenario.ttft_slo_s, margin=router_margin),
        "slo-aware-spread": lambda: SLOAwareRouter(
            predictor, scenario.ttft_slo_s, spread=True, seed=seed, margin=router_margin
        ),
        # Admission control: a request no replica can serve within the SLO is turned away
        # (a miss in the attainment), not queued behind others it would delay.
        "slo-aware-shed": lambda: SLOAwareRouter(
            predictor, scenario.ttft_slo_s, shed=True, margin=router_margin, shed_above=shed_above
        ),
    }
    results = {}
    for router in _pick(every, names):
        step(f"replaying {router.name}")
        # A router that learned from the warm-up keeps learning from its own outcomes.
        learns = predictor_bundle is None and isinstance(router, SLOAwareRouter)
        results[router.name] = simulate_route(
            trace, router, scenario, learner=learner if learns else None
        )
    return results


@app.command()
def dashboard(
    bundle: Annotated[
        list[Path] | None, typer.Option(help="Bundle directory to show (repeatable).")
    ] = None,
    trainer_url: Annotated[
        str | None, typer.Option("--trainer", help="Trainer URL (gating history).")
    ] = None,
    trace: Annotated[
        list[str] | None, typer.Option(help="KIND:PATH trace for simulation mode (repeatable).")
    ] = None,
    sim_results: Annotated[
        Path | None, typer.Option(help="`slocast simulate --json` output for the Decisions page.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=1, max=65535)] = 8501,
) -> None:
    """Open the Streamlit dashboard: predict, replay a trace, models, decisions."""
    from slocast.dashboard import APP

    with _errors():
        _require("streamlit", "dashboard", "slocast dashboard")
        for directory in bundle or []:
            load_bundle(directory)  # a bad bundle is refused here, with its file and field
        arguments = [f"--bundle={b}" for b in bundle or []]
        arguments += [f"--trace={t}" for t in trace or []]
        if trainer_url:
            arguments.append(f"--trainer={trainer_url}")
        if sim_results:
            arguments.append(f"--sim-results={sim_results}")
        command = [
            sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.headless=true", f"--server.address={host}", f"--server.port={port}",
            "--browser.gatherUsageStats=false", "--", *arguments,
        ]  # fmt: skip
        os.execv(sys.executable, command)


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
                swapped |= dataplane.swap(load_bundle(path, threads=threads))
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
    settings = _settings(**spec["overrides"])
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
    with _errors():
        _require("uvicorn", "serve", "slocast serve http")
    import uvicorn

    overrides = {
        "serve_host": host,
        "serve_port": port,
        "training_server_url": training_server_url,
    }
    bundle_dirs = list(bundle or [])
    with _errors():
        settings = _settings(**overrides)
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
    }
    if workers == 1:
        uvicorn.run(web, **serve)  # type: ignore[arg-type]
        return
    os.environ[_HTTP_SPEC] = json.dumps(
        {"bundles": [str(b) for b in bundle_dirs], "overrides": overrides, "workers": workers}
    )
    uvicorn.run("slocast.cli:http_worker_app", factory=True, workers=workers, **serve)  # type: ignore[arg-type]


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
    with _errors():
        _require("grpc", "serve", "slocast serve grpc")
    import asyncio
    import threading

    from prometheus_client import start_http_server

    from slocast.serving.grpc import create_grpc_server

    with _errors():
        settings = _settings(training_server_url=training_server_url)
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
    with _errors():
        _require("uvicorn", "serve", "slocast trainer")
        _require("sqlalchemy", "store", "slocast trainer")
    import uvicorn

    from slocast.store import SampleStore, sqlite_url
    from slocast.trainer.http import create_trainer_app
    from slocast.trainer.service import Trainer, TrainerConfig

    with _errors():
        settings = _settings(trainer_port=port, trainer_compile=compile_models)
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
                calibration=_params(settings),
                ensemble_mode=settings.ensemble_mode,
                compile_models=settings.trainer_compile,
                threads=settings.train_threads,
            ),
        )
        web = create_trainer_app(
            service, settings.max_batch, settings.model_family, settings.max_body_bytes
        )
        service.start(domains)
        err.print(
            f"trainer on {host}:{settings.trainer_port}, store {store.url}, domains {domains}"
        )
    try:
        uvicorn.run(
            web,
            host=host,
            port=settings.trainer_port,
            log_level=log_level,
            log_config=log_config,
        )
    finally:
        service.stop()


BENCHMARKS = ("evaluate", "serve", "trainer", "tune", "sim")


def _bench_dir() -> Path:
    """``bench/`` of the slocast checkout this package runs from, or of the working directory.

    The benchmarks train on the repository's bundled data and start servers from it: they are
    scripts of the source tree, not part of an installed package."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "bench" / "bench_serve.py").is_file():
            return root / "bench"
    raise InputError(
        "the benchmarks are the bench/ scripts of a slocast checkout: run this from one",
        field="bench",
    )


@app.command()
def bench(
    names: Annotated[
        list[str] | None,
        typer.Argument(help=f"Benchmarks to run: {', '.join(BENCHMARKS)} (default: all)."),
    ] = None,
) -> None:
    """Run the speed benchmarks: each prints a table with ratios against a baseline measured
    in the same run."""
    import subprocess

    with _errors():
        unknown = [n for n in names or () if n not in BENCHMARKS]
        if unknown:
            raise InputError(
                f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}",
                field="names",
            )
        directory = _bench_dir()
        for name in names or BENCHMARKS:
            err.print(f"[bold]bench {name}[/bold]")
            done = subprocess.run([sys.executable, str(directory / f"bench_{name}.py")])
            if done.returncode != 0:
                raise SlocastError(f"benchmark {name} failed (exit {done.returncode})")


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
