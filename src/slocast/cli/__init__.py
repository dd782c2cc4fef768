"""The slocast command line: the one place that wires settings, data, models and outputs.

One module per group of commands, each registering its commands on the one Typer app of
``_common`` when imported: ``evaluate`` (sweep, report, evaluate, train, predict), ``tune``,
``simulate``, ``serve`` (serve http / grpc, trainer) and ``tools`` (dashboard, bench).
Exit codes: 0 ok, 2 bad input (the message names the file / field), 1 internal error.
"""

from __future__ import annotations

from slocast.cli._common import app

# isort: off
# Imported in the order `slocast --help` lists their commands.
from slocast.cli import evaluate, tune, simulate, serve, tools
# isort: on

__all__ = ["app", "evaluate", "main", "serve", "simulate", "tools", "tune"]


def main() -> None:
    app()
