"""What every command shares: the Typer app, option types, settings, progress and the one
mapping of slocast's errors to exit codes (0 ok, 2 bad input naming the file / field, 1 internal
error)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from slocast import __version__
from slocast.artifacts import save_bundle, sha256_file
from slocast.calibration.forecaster import CalibrationParams, fit_on_history
from slocast.datasets import Dataset, load_dataset, parse_dataset_arg
from slocast.errors import InputError, SlocastError
from slocast.models.quantile import QuantileForecaster
from slocast.settings import Settings, load_settings

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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
CoverageOpt = Annotated[
    float | None, typer.Option("--target-coverage", help="Promised coverage (default 0.9).")
]


def merged_settings(**overrides: object) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def calibration_params(settings: Settings) -> CalibrationParams:
    # By name: a dozen numbers in a row are one swapped pair away from a silent mix-up.
    return CalibrationParams(
        min_group_size=settings.min_group_size,
        window=settings.calibration_window,
        aci_step=settings.aci_step,
        overflow_gain=settings.aci_overflow_gain,
        aci_experts=settings.aci_experts,
        request_until=settings.request_until,
        request_limit_share=settings.request_limit_share,
        unseen_share=settings.unseen_share,
        decay=settings.calibration_decay,
        level_bins=settings.level_bins,
        history_expert=settings.history_expert,
        history_on_size=settings.history_on_size,
        under_cost_ratio=settings.under_cost_ratio,
        headroom=settings.headroom,
    )


def fail(code: int, message: str) -> typer.Exit:
    # Plain text, never wrapped: scripts grep these messages for the file and field.
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def exit_codes() -> Iterator[None]:
    """Map slocast's error hierarchy to exit codes in one place."""
    try:
        yield
    except InputError as exc:
        raise fail(2, str(exc)) from exc
    except SlocastError as exc:
        raise fail(1, str(exc)) from exc
    except OSError as exc:
        if exc.filename is None:
            raise
        # A path the user gave (--out, --storage, ...) that cannot be written or read.
        raise fail(2, f"{exc.strerror or exc}: {exc.filename}") from exc


@contextmanager
def progress_steps() -> Iterator[Callable[[str], None]]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("starting")
        yield lambda step: progress.update(task, description=step)


def timed(label: str, step: Callable[[str], None], work: Callable[[], T]) -> T:
    step(label)
    return work()


def read_dataset(dataset_arg: str, step: Callable[[str], None]) -> Dataset:
    parse_dataset_arg(dataset_arg)
    return timed(f"reading {dataset_arg}", step, lambda: load_dataset(dataset_arg))


def require_extra(module: str, extra: str, what: str) -> None:
    """A clear exit-2 message instead of an ImportError when an optional extra is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError(f"{what} needs {module}: pip install 'slocast[{extra}]'", field=extra)


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


def dataset_sha256(dataset_arg: str) -> str:
    return sha256_file(parse_dataset_arg(dataset_arg)[1])


def write_bundle(
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
            "dataset_sha256": dataset_sha256(dataset_arg),
            "rows": data.rows,
            "dropped": data.dropped,
            **(provenance or {}),
        },
        metrics={"train_rows": n_train, "calibration_rows": n_cal, **(metrics or {})},
        compile_models=compile_models,
    )
