"""Generate the reference pages of the docs from the code (run by `make docs` before mkdocs).

HTTP from the apps' OpenAPI schemas, gRPC from proto/slocast.proto, configuration from the
Settings model, CLI from the Typer app, and the results tables from the README -- so the
docs cannot drift from what the code does.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import typer

from slocast.cli import app as cli_app
from slocast.serving import DataPlane, create_app
from slocast.settings import Settings
from slocast.store import SampleStore, sqlite_url
from slocast.trainer.http import create_trainer_app
from slocast.trainer.service import Trainer, TrainerConfig

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reference"


def _http() -> str:
    with tempfile.TemporaryDirectory() as home:
        trainer = Trainer(SampleStore(sqlite_url(Path(home))), TrainerConfig(home=Path(home)))
        apps = {
            "Prediction server (`slocast serve http`)": create_app(DataPlane()),
            "Trainer (`slocast trainer`)": create_trainer_app(trainer),
        }
        lines = [
            "# HTTP API",
            "",
            "Generated from the apps' OpenAPI schemas; live docs at `/docs`.",
            "",
            "`POST /v1/{domain}/predict` is listed once per domain the server has loaded, with",
            "that domain's item fields (here the cold-start llm-d domains; a server started",
            "with other bundles lists theirs); the trainer lists `POST /v1/{domain}/samples`",
            "once per built-in domain.",
        ]
        for title, app in apps.items():
            schema = app.openapi()
            name = "predict" if "Prediction" in title else "trainer"
            (OUT / f"openapi-{name}.json").write_text(json.dumps(schema, indent=1))
            lines += ["", f"## {title}", "", f"Schema: `openapi-{name}.json`.", ""]
            lines += ["| method | path | summary |", "|---|---|---|"]
            for path, operations in sorted(schema["paths"].items()):
                for method, operation in operations.items():
                    summary = (operation.get("summary") or "").replace("|", "\\|")
                    lines.append(f"| {method.upper()} | `{path}` | {summary} |")
    return "\n".join(lines) + "\n"


def _grpc() -> str:
    proto = (ROOT / "proto" / "slocast.proto").read_text()
    rpcs = re.findall(
        r"rpc\s+(\w+)\s*\(\s*(stream\s+)?(\w+)\s*\)\s*returns\s*\(\s*(stream\s+)?(\w+)", proto
    )
    intro = "Service `slocast.v1.Predictor` (plus `grpc.health.v1` and reflection)."
    lines = ["# gRPC API", "", intro, "", "| rpc | request | response |", "|---|---|---|"]
    for name, in_stream, request, out_stream, response in rpcs:
        lines.append(f"| `{name}` | {in_stream}`{request}` | {out_stream}`{response}` |")
    lines += ["", "```protobuf", proto.strip(), "```"]
    return "\n".join(lines) + "\n"


def _configuration() -> str:
    lines = ["# Configuration", "",
             "Every field of `slocast.settings.Settings`: set it as an environment variable, in "
             "`slocast.toml` (or the file `SLOCAST_CONFIG` names), or as a CLI option where one "
             "exists.", "", "| setting | environment | default | description |",
             "|---|---|---|---|"]  # fmt: skip
    for field, info in Settings.model_fields.items():
        names = [f"`SLOCAST_{field.upper()}`"]
        for choice in getattr(info.validation_alias, "choices", []):
            if isinstance(choice, str) and choice.isupper() and not choice.startswith("SLOCAST_"):
                names.append(f"`{choice}`")
        default = "—" if info.default is None else f"`{info.default}`"
        description = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{field}` | {', '.join(names)} | {default} | {description} |")
    return "\n".join(lines) + "\n"


def _cli() -> str:
    root: Any = typer.main.get_command(cli_app)
    lines = [
        "# Command line",
        "",
        "Exit codes: 0 ok, 2 bad input (names the file and field), 1 internal error.",
    ]

    def visit(command: Any, path: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in sorted(command.commands.items()):
                visit(sub, [*path, name])
            return
        lines.extend(["", f"## `slocast {' '.join(path)}`", "", (command.help or "").strip(), ""])
        lines.extend(["| option | help |", "|---|---|"])
        for param in command.params:
            opts = ", ".join(f"`{o}`" for o in [*param.opts, *getattr(param, "secondary_opts", [])])
            text = (getattr(param, "help", "") or "").replace("|", "\\|")
            lines.append(f"| {opts} | {text} |")

    visit(root, [])
    return "\n".join(lines) + "\n"


def _benchmarks() -> str:
    readme = (ROOT / "README.md").read_text()
    sections = re.split(r"(?m)^## ", readme)
    keep = [s for s in sections if s.startswith(("Where", "Results", "Decisions", "Sizing"))]
    body = "\n".join("## " + s.strip() for s in keep)
    return "# Benchmarks and results\n\nCopied from the README at build time.\n\n" + body + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "http.md").write_text(_http())
    (OUT / "grpc.md").write_text(_grpc())
    (OUT / "configuration.md").write_text(_configuration())
    (OUT / "cli.md").write_text(_cli())
    (ROOT / "docs" / "benchmarks.md").write_text(_benchmarks())


if __name__ == "__main__":
    main()
