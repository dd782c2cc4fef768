"""`dashboard` and `bench`: the Streamlit app and the speed benchmarks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from slocast.artifacts import load_bundle
from slocast.cli._common import (
    app,
    err,
    exit_codes,
    require_extra,
)
from slocast.datasets import parse_dataset_arg
from slocast.datasets._io import require_file
from slocast.errors import DataFormatError, InputError, SlocastError
from slocast.settings import TRAINER_SCHEMES, check_url


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

    with exit_codes():
        require_extra("streamlit", "dashboard", "slocast dashboard")
        # Refused here, each with its file and field: once Streamlit runs, a bad argument is
        # only a warning on whichever page reads it.
        for directory in bundle or []:
            load_bundle(directory)
        for argument in trace or []:
            require_file(parse_dataset_arg(argument)[1])
        if sim_results is not None:
            _check_sim_results(sim_results)
        check_url(trainer_url, TRAINER_SCHEMES, "trainer")
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


def _check_sim_results(path: Path) -> None:
    """The output of ``slocast simulate --json``: one object with its scenario and policies."""
    require_file(path, "results file")
    try:
        results = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"not JSON: {exc}", source=str(path)) from exc
    if not isinstance(results, dict) or not {"scenario", "policies"} <= results.keys():
        raise DataFormatError(
            "not the output of `slocast simulate --json` (no scenario and policies)",
            source=str(path),
        )


BENCHMARKS = ("evaluate", "serve", "trainer", "tune", "sim")


def _bench_dir() -> Path:
    """``bench/`` of the slocast checkout this package runs from, or of the working directory.

    The benchmarks train on the repository's bundled data and start servers from it: they are
    scripts of the source tree, not part of an installed package."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
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

    with exit_codes():
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
