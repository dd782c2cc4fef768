"""`tune`: the sizing workbench (search, strategies, retries, reports)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from slocast.cli._common import (
    CoverageOpt,
    DatasetOpt,
    JsonOpt,
    app,
    dataset_sha256,
    err,
    exit_codes,
    merged_settings,
    progress_steps,
    require_extra,
    timed,
    write_bundle,
)
from slocast.datasets import parse_dataset_arg
from slocast.errors import InputError
from slocast.evaluation.report import floor_notes
from slocast.models.quantile import QuantileForecaster


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
    from slocast.tuning.selection import RULE
    from slocast.tuning.workbench import metrics_summary

    request = result.baselines.get("user_request")
    table = Table(
        title=f"{result.domain}: best model per family on the latest {result.test_rows} jobs",
        caption=f"deployed: {RULE}",
    )
    columns = [
        "model", "business score", "under %", "over %", "coverage", "cv score", "cv folds",
        "trials",
    ]  # fmt: skip
    for column in [*columns, *(["vs request"] if request else [])]:
        table.add_column(column, justify="left" if column == "model" else "right")
    rows = comparison_rows(result)
    for name, (_, _) in result.strategies.items():
        metrics = result.backtest.methods[name].metrics
        rows.append({"model": f"strategy:{name}", **metrics_summary(metrics)})
    for row in rows:
        deployed = row["model"] == result.best
        cells = [
            f"{row['model']} (deployed)" if deployed else str(row["model"]),
            f"{row['business_score']:.1f}",
            f"{row['under_alloc_pct']:.2f}",
            f"{row['over_alloc_pct']:.1f}",
            f"{row['coverage']:.3f}",
            "" if row.get("cv_score") is None else f"{row['cv_score']:.1f}",
            str(row.get("cv_folds") or ""),
            str(row.get("trials", "")),
        ]
        if request:
            score = float(row["business_score"])  # type: ignore[arg-type]
            cells.append(f"{score / max(request.business_score, 1e-12):.2f}x")
        table.add_row(*cells, style="bold" if deployed else None)
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
    as_json: JsonOpt = False,
) -> None:
    """Search model families on business cost; compare them, pick strategies, cost retries."""
    with exit_codes():
        require_extra("optuna", "tune", "slocast tune")
    from slocast.tuning import SearchConfig, preprocess
    from slocast.tuning import tune as run_tune
    from slocast.tuning.cache import CacheMode
    from slocast.tuning.report import write_tune_report

    with exit_codes():
        settings = merged_settings(target_coverage=target_coverage, test_fraction=test_fraction)
        if skip_preprocessing and preprocess_only:
            raise InputError(
                "--skip-preprocessing and --preprocess-only exclude each other",
                field="preprocess_only",
            )
        families = _tune_families(family, task_type, evaluate_all_archs)
        kind = parse_dataset_arg(dataset)[0]
        prefix = study_name or (
            f"{kind}-{dataset_sha256(dataset)[:12]}-f{folds}-r{settings.under_cost_ratio:g}"
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
        with progress_steps() as step:
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
                page = timed("writing report", step, lambda: write_tune_report(result, target))
            for name, outcome in result.families.items() if out else ():
                assert out is not None
                candidate = outcome.candidate
                write_bundle(
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
