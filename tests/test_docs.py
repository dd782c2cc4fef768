"""`make docs`: reference pages generated from the code, and a strict mkdocs build."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slocast.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed (extra: docs)"
)


def test_docs_build_strictly_and_cover_every_setting_and_command(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "docs/gen_reference.py"], cwd=REPO, check=True)
    reference = REPO / "docs" / "reference"
    configuration = (reference / "configuration.md").read_text()
    for field in Settings.model_fields:
        assert f"`SLOCAST_{field.upper()}`" in configuration, field
    assert "`LATENCY_RETRAINING_INTERVAL_SEC`" in configuration
    cli = (reference / "cli.md").read_text()
    for command in ("evaluate", "train", "predict", "tune", "simulate", "report", "dashboard",
                    "trainer", "serve http", "serve grpc"):  # fmt: skip
        assert f"## `slocast {command}`" in cli, command
    assert "`/predict/bulk/strict`" in (reference / "http.md").read_text()
    assert "rpc" in (reference / "grpc.md").read_text()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert build.returncode == 0, build.stderr
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").is_file()
    assert "WARNING" not in build.stderr
